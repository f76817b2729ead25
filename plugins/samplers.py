"""Samplers that need only a denoiser D(x, sigma) (or its score, by Tweedie).

Fixed-level: gradient ascent, unadjusted Langevin. Annealed over levels: Song &
Ermon's annealed Langevin; Karras et al. (2022)'s EDM Heun sampler, deterministic
and stochastic; a DDIM-style sampler (Song et al. 2021, in the variance-exploding
form: with eta = 0 it is Euler's method on the probability-flow ODE). The
``real-data`` row draws held-out images: the floor of every sample metric.

Langevin step sizes default to a fraction of sigma^2: the noisy density p_sigma
has curvature at most 1 / sigma^2, so a step of 0.2 sigma^2 is ten times below
the stability limit 2 sigma^2 of the exact score.
"""

from __future__ import annotations

import copy
import math

import torch

import bench
from bench.sampling.samplers import Evaluations, Sampler, check_count, check_positive, noise_like
from bench.sampling.score import ScoreFn

#: Default step size, as a fraction of sigma^2 (Song & Ermon's 2e-5 at sigma = 0.01).
STEP_FRACTION = 0.2
#: ``sigma_max="model"``: the largest level the score model was trained on (its ``sigma_max``).
FROM_MODEL = "model"


def check_sigma_max(owner: str, value) -> float | str:
    """A number > 0, or ``"model"`` (filled in from the score model by ``bind``)."""
    if value == FROM_MODEL:
        return value
    return check_positive(f"{owner} sigma_max", value)


def model_sigma_max(model, owner: str) -> float:
    """The largest training level a score model carries (e.g. ``score-unet``'s ``sigma_max`` buffer)."""
    value = getattr(model, "sigma_max", None)
    value = float(value) if isinstance(value, (int, float, torch.Tensor)) else math.nan
    if not math.isfinite(value) or value <= 0:
        raise bench.UsageError(f"{owner}[sigma_max=model]: this score model records no trained noise "
                               "range; give sigma_max=NUMBER")
    return value


class FromModel:
    """Mixin: a sampler whose ``sigma_max`` may be ``"model"``; ``top`` is the value in use."""

    sigma_max: float | str

    @property
    def top(self) -> float:
        if self.sigma_max == FROM_MODEL:
            bound = getattr(self, "_top", None)
            if bound is None:
                raise bench.UsageError(f"{self.name}[sigma_max=model] needs a score model (bind it first)")
            return bound
        return self.sigma_max

    def bind(self, model) -> Sampler:
        if self.sigma_max != FROM_MODEL:
            return self
        bound = copy.copy(self)
        bound._top = model_sigma_max(model, self.name)
        return bound

    def resolved(self) -> dict:
        return {"sigma_max": self.top}


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


class AnnealedLangevin(FromModel, Langevin):
    """Song & Ermon (2019): Langevin over geometric noise levels sigma_max ... sigma.

    At level i the step is step_size * sigma_i^2 / sigma^2 (``step_size`` is
    the step at the smallest level ``sigma``: their alpha_i = eps sigma_i^2 / sigma_L^2),
    ``steps`` steps per level, then optionally one denoising step
    x <- x + sigma^2 score(x, sigma) = D(x, sigma). ``sigma_max=model``: the score
    model's largest training level (for ``score-unet``, the training set's
    largest pairwise distance, Song & Ermon 2020's technique 1).
    """

    name = "annealed-langevin"
    requires_sigma_aware = True

    def __init__(self, sigma: float = 0.01, sigma_max: float | str = 1.0, levels: int = 10,
                 steps: int = 100, step_size: float | None = None, denoise: bool = True):
        super().__init__(sigma, step_size, steps, denoise)
        self.sigma_max = check_sigma_max("annealed-langevin", sigma_max)
        if self.sigma_max != FROM_MODEL and self.sigma_max <= self.sigma:
            raise bench.UsageError(f"annealed-langevin sigma_max ({self.sigma_max:g}) must be "
                                   f"larger than sigma ({self.sigma:g})")
        self.levels = check_count("annealed-langevin levels", levels, minimum=2)

    def params(self) -> dict:
        return {**FixedLevelSampler.params(self), "sigma_max": self.sigma_max, "levels": self.levels,
                "denoise": self.denoise}

    def noise_levels(self) -> list[float]:
        """Geometric from sigma_max down to sigma."""
        top = self.top
        if top <= self.sigma:
            raise bench.UsageError(f"annealed-langevin: the model's sigma_max ({top:g}) is not above "
                                   f"sigma ({self.sigma:g})")
        ratio = self.sigma / top
        inner = [top * ratio ** (i / (self.levels - 1)) for i in range(1, self.levels - 1)]
        return [top, *inner, self.sigma]

    def schedule(self) -> list[tuple[float, float]]:
        return [(s, self.step_size * s ** 2 / self.sigma ** 2)
                for s in self.noise_levels() for _ in range(self.steps)]


def karras_levels(sigma_min: float, sigma_max: float, steps: int, rho: float) -> list[float]:
    """EDM's time steps (Karras et al. 2022, eq. 5): ``steps`` levels from sigma_max to sigma_min,
    evenly spaced in sigma^(1/rho), then 0."""
    if steps == 1:
        return [sigma_max, 0.0]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    inner = [(a + i / (steps - 1) * (b - a)) ** rho for i in range(1, steps - 1)]
    return [sigma_max, *inner, sigma_min, 0.0]


class LevelSampler(FromModel, Sampler):
    """Samplers that move the chains from level t_i to t_{i+1} of EDM's schedule, ending at 0.

    ``schedule()`` gives (t_i, t_{i+1}) pairs; ``move`` makes one transition with D.
    """

    requires_sigma_aware = True

    def __init__(self, steps: int = 18, sigma_min: float = 0.01, sigma_max: float | str = FROM_MODEL,
                 rho: float = 7.0):
        self.steps = check_count(f"{self.name} steps", steps)
        self.sigma_min = check_positive(f"{self.name} sigma_min", sigma_min)
        self.sigma_max = check_sigma_max(self.name, sigma_max)
        self.rho = check_positive(f"{self.name} rho", rho)
        if self.sigma_max != FROM_MODEL and self.sigma_max <= self.sigma_min:
            raise bench.UsageError(f"{self.name} sigma_max ({self.sigma_max:g}) must be larger than "
                                   f"sigma_min ({self.sigma_min:g})")

    def params(self) -> dict:
        return {"steps": self.steps, "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                "rho": self.rho}

    def schedule(self) -> list[tuple[float, float]]:
        levels = karras_levels(self.sigma_min, self.top, self.steps, self.rho)
        return list(zip(levels[:-1], levels[1:]))

    def advance(self, x, level, score_fn: Evaluations, generator):
        return self.move(x, *level, score_fn, generator)

    def move(self, x: torch.Tensor, t: float, t_next: float, score_fn: Evaluations,
             generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


def heun(x: torch.Tensor, t: float, t_next: float, score_fn: Evaluations,
         d: torch.Tensor | None = None) -> torch.Tensor:
    """One step of the probability-flow ODE dx/dt = (x - D(x, t)) / t from t to t_next:
    Euler, corrected by the trapezoid rule unless t_next = 0 (Karras et al. 2022, algorithm 1)."""
    if d is None:
        d = (x - score_fn.denoise(x, t)) / t
    euler = x + (t_next - t) * d
    if t_next == 0:
        return euler
    d_next = (euler - score_fn.denoise(euler, t_next)) / t_next
    return x + (t_next - t) * (d + d_next) / 2


class EDMHeun(LevelSampler):
    """Karras et al. (2022), algorithm 1: Heun's method on the probability-flow ODE.

    2 steps - 1 model evaluations (the last step, to sigma = 0, is Euler's).
    """

    name = "edm-heun"

    def move(self, x, t, t_next, score_fn, generator):
        return heun(x, t, t_next, score_fn)


class EDMStochastic(LevelSampler):
    """Karras et al. (2022), algorithm 2: before each Heun step, noise raises the level from t to
    t_hat = t (1 + gamma), gamma = min(churn / steps, sqrt(2) - 1) while t is in [s_tmin, s_tmax].

    Defaults: their ImageNet churn (40), with s_tmin and s_tmax halved for [0, 1] data (theirs
    are for [-1, 1]); s_noise 1 (theirs: 1.003, a correction for their learned models).
    """

    name = "edm-stochastic"

    def __init__(self, steps: int = 18, sigma_min: float = 0.01, sigma_max: float | str = FROM_MODEL,
                 rho: float = 7.0, churn: float = 40.0, s_tmin: float = 0.025, s_tmax: float = 25.0,
                 s_noise: float = 1.0):
        super().__init__(steps, sigma_min, sigma_max, rho)
        self.churn = float(churn)
        if not math.isfinite(self.churn) or self.churn < 0:
            raise bench.UsageError(f"edm-stochastic churn must be >= 0, got {churn!r}")
        self.s_tmin, self.s_tmax = float(s_tmin), check_positive("edm-stochastic s_tmax", s_tmax)
        self.s_noise = check_positive("edm-stochastic s_noise", s_noise)

    def params(self) -> dict:
        return {**super().params(), "churn": self.churn, "s_tmin": self.s_tmin, "s_tmax": self.s_tmax,
                "s_noise": self.s_noise}

    def gamma(self, t: float) -> float:
        if self.s_tmin <= t <= self.s_tmax:
            return min(self.churn / self.steps, math.sqrt(2) - 1)
        return 0.0

    def move(self, x, t, t_next, score_fn, generator):
        t_hat = t * (1 + self.gamma(t))
        if t_hat > t:
            x = x + math.sqrt(t_hat ** 2 - t ** 2) * self.s_noise * noise_like(x, generator)
        return heun(x, t_hat, t_next, score_fn)


class DDIM(LevelSampler):
    """DDIM (Song et al. 2021) in the variance-exploding form, on EDM's levels.

    From t to t': x0 = D(x, t), eps = (x - x0) / t, c = eta t' sqrt(1 - t'^2 / t^2),
    x' = x0 + sqrt(t'^2 - c^2) eps + c z. eta = 0 is deterministic (Euler's method on the
    probability-flow ODE); eta = 1 is ancestral sampling. One model evaluation per step.
    """

    name = "ddim"

    def __init__(self, steps: int = 18, sigma_min: float = 0.01, sigma_max: float | str = FROM_MODEL,
                 rho: float = 7.0, eta: float = 0.0):
        super().__init__(steps, sigma_min, sigma_max, rho)
        self.eta = float(eta)
        if not 0 <= self.eta <= 1:
            raise bench.UsageError(f"ddim eta must be in [0, 1], got {eta!r}")

    def params(self) -> dict:
        return {**super().params(), "eta": self.eta}

    def move(self, x, t, t_next, score_fn, generator):
        x0 = score_fn.denoise(x, t)
        eps = (x - x0) / t
        c = self.eta * t_next * math.sqrt(max(0.0, 1 - t_next ** 2 / t ** 2))
        out = x0 + math.sqrt(max(0.0, t_next ** 2 - c ** 2)) * eps
        return out + c * noise_like(x, generator) if c > 0 else out


class RealData(Sampler):
    """Not a sampler: ``chains`` held-out real images (never the training split nor the reference
    images of the metrics), the floor every sample metric is read against at the same count."""

    name = "real-data"
    uses_score = False

    def params(self) -> dict:
        return {}

    def schedule(self) -> list[tuple[float, float]]:
        return []

    @property
    def start_sigma(self) -> float:
        return 0.0

    def draw(self, pool: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        if n > len(pool):
            raise bench.UsageError(f"real-data: {n} samples asked, only {len(pool)} held-out items")
        order = torch.randperm(len(pool), generator=generator, device=generator.device)[:n]
        return pool.to(generator.device)[order]


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
                         "* s_i^2 / sigma^2, steps per level, optional final denoising; "
                         "sigma_max=model: the score model's largest training level")
    register("edm-heun", EDMHeun,
             description="Karras et al. 2022 alg. 1: Heun on the probability-flow ODE over "
                         "(sigma_max^(1/rho)..sigma_min^(1/rho))^rho, then 0; NFE = 2 steps - 1")
    register("edm-stochastic", EDMStochastic,
             description="Karras et al. 2022 alg. 2: Heun with churn (noise added before each step "
                         "inside [s_tmin, s_tmax]); NFE = 2 steps - 1")
    register("ddim", DDIM,
             description="DDIM in the variance-exploding form on EDM's levels; eta=0: deterministic "
                         "(Euler on the ODE), eta=1: ancestral; NFE = steps")
    register("real-data", RealData,
             description="the floor: held-out real images (not training, not reference), as many "
                         "as the chains; needs no score model")
