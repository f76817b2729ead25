"""Score-based samplers: gradient ascent, unadjusted Langevin, annealed Langevin.

Step sizes default to a fraction of sigma^2: the noisy density p_sigma has
curvature at most 1 / sigma^2, so a step of 0.2 sigma^2 is ten times below the
stability limit 2 sigma^2 of the exact score.
"""

from __future__ import annotations

import math

import torch

import bench
from bench.sampling.samplers import Sampler, check_count, check_positive, noise_like
from bench.sampling.score import ScoreFn

#: Default step size, as a fraction of sigma^2 (Song & Ermon's 2e-5 at sigma = 0.01).
STEP_FRACTION = 0.2


class InitialNoise(Sampler):
    """No update at all: the chains' starting points, the baseline every sampler must beat.

    With the same ``sigma`` (and the same dataset, chains and repetition) it
    returns exactly the points ``langevin`` and ``gradient-ascent`` start from.
    """

    name = "initial-noise"

    def __init__(self, sigma: float = 0.01):
        self.sigma = check_positive("initial-noise sigma", sigma)

    def params(self) -> dict:
        return {"sigma": self.sigma}

    def schedule(self) -> list[tuple[float, float]]:
        return []

    @property
    def start_sigma(self) -> float:
        return self.sigma


class FixedLevelSampler(Sampler):
    """Runs ``steps`` updates with the score at one noise level ``sigma``."""

    def __init__(self, sigma: float = 0.01, step_size: float | None = None, steps: int = 1000):
        self.sigma = check_positive(f"{self.name} sigma", sigma)
        self.step_size = check_positive(
            f"{self.name} step_size",
            STEP_FRACTION * self.sigma ** 2 if step_size is None else step_size)
        self.steps = check_count(f"{self.name} steps", steps)

    def params(self) -> dict:
        return {"sigma": self.sigma, "step_size": self.step_size, "steps": self.steps}

    def schedule(self) -> list[tuple[float, float]]:
        return [(self.sigma, self.step_size)] * self.steps


class GradientAscent(FixedLevelSampler):
    """x <- x + step * score(x, sigma): climbs to a mode of p_sigma."""

    name = "gradient-ascent"

    def step(self, x, score, step_size, generator):
        return x + step_size * score


class Langevin(FixedLevelSampler):
    """Unadjusted Langevin: x <- x + step * score + sqrt(2 step) z, targeting p_sigma.

    ``denoise=true`` adds one last step x <- x + sigma^2 score(x, sigma) = D(x, sigma):
    a sample of p_sigma carries noise of std sigma, which the denoiser removes.
    """

    name = "langevin"

    def __init__(self, sigma: float = 0.01, step_size: float | None = None, steps: int = 1000,
                 denoise: bool = False):
        super().__init__(sigma, step_size, steps)
        if not isinstance(denoise, bool):
            raise bench.UsageError(f"{self.name} denoise must be true or false, got {denoise!r}")
        self.denoise = denoise

    def params(self) -> dict:
        # denoise=false is left out of the row name, which predates it
        return {**super().params(), **({"denoise": True} if self.denoise else {})}

    def final_step(self, x: torch.Tensor, score_fn: ScoreFn) -> torch.Tensor | None:
        if not self.denoise:
            return None
        return x + self.sigma ** 2 * score_fn(x, self.sigma)

    @staticmethod
    def noise_std(step_size: float) -> float:
        return math.sqrt(2.0 * step_size)

    def step(self, x, score, step_size, generator):
        return x + step_size * score + self.noise_std(step_size) * noise_like(x, generator)


class AnnealedLangevin(Langevin):
    """Song & Ermon (2019): Langevin over geometric noise levels sigma_max ... sigma.

    At level i the step is step_size * sigma_i^2 / sigma^2 (``step_size`` is
    the step at the smallest level ``sigma``), ``steps`` steps per level, then
    optionally one denoising step x <- x + sigma^2 score(x, sigma) = D(x, sigma).
    """

    name = "annealed-langevin"
    requires_sigma_aware = True

    def __init__(self, sigma: float = 0.01, sigma_max: float = 1.0, levels: int = 10,
                 steps: int = 100, step_size: float | None = None, denoise: bool = True):
        super().__init__(sigma, step_size, steps, denoise)
        self.sigma_max = check_positive("annealed-langevin sigma_max", sigma_max)
        if self.sigma_max <= self.sigma:
            raise bench.UsageError(f"annealed-langevin sigma_max ({self.sigma_max:g}) must be "
                                   f"larger than sigma ({self.sigma:g})")
        self.levels = check_count("annealed-langevin levels", levels, minimum=2)

    def params(self) -> dict:
        return {**FixedLevelSampler.params(self), "sigma_max": self.sigma_max, "levels": self.levels,
                "denoise": self.denoise}

    def noise_levels(self) -> list[float]:
        """Geometric from sigma_max down to sigma."""
        ratio = self.sigma / self.sigma_max
        inner = [self.sigma_max * ratio ** (i / (self.levels - 1)) for i in range(1, self.levels - 1)]
        return [self.sigma_max, *inner, self.sigma]

    def schedule(self) -> list[tuple[float, float]]:
        return [(s, self.step_size * s ** 2 / self.sigma ** 2)
                for s in self.noise_levels() for _ in range(self.steps)]


@bench.hookimpl
def register_samplers(register):
    register("initial-noise", InitialNoise,
             description="no step: the chains' start (noise at the data's spread), the baseline row")
    register("gradient-ascent", GradientAscent,
             description="x <- x + step * score(x, sigma); mode-seeking (sigma, step_size, steps)")
    register("langevin", Langevin,
             description="unadjusted Langevin at one sigma: x <- x + step * score + sqrt(2 step) z; "
                         "denoise=true: a final denoising step")
    register("annealed-langevin", AnnealedLangevin,
             description="Song & Ermon: geometric sigmas sigma_max..sigma, step_i = step_size "
                         "* s_i^2 / sigma^2, steps per level, optional final denoising")
