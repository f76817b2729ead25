"""Degradations: seeded Gaussian and Poisson noise, drawn as deepinv's noise models draw it.

Noise for each image is drawn on the CPU with its own torch.Generator seeded
by ``bench.seeding.noise_seed``, then moved to the run's device, so every
denoiser sees identical noisy pixels whatever the batch, order or device.
(deepinv draws one batch with one generator on the input's device, which would
tie the noise to batch composition and device; we draw per image instead.)
The draws are deepinv's ``GaussianNoise`` and ``PoissonNoise`` operation for
operation (the tests check equality bit for bit), written here so that a run
does not pay deepinv's import (about 2.5 s) before its first cell.
Noisy inputs are not clipped.
"""

from __future__ import annotations

import functools

import torch

from bench.errors import UsageError
from bench.noise.levels import CAPTURED, GAUSSIAN, MAP_MEAN, POISSON, LevelScale
from bench.specs import parse_number


#: The smallest level a built-in degradation takes: float32's step at 1. Gaussian noise below it
#: rounds away in [0, 1] intensities; a Poisson peak below it has a gain (1 / peak) past 10^7.
SMALLEST_LEVEL = torch.finfo(torch.float32).eps
#: The largest Poisson peak: torch.poisson's float32 counts are exact integers up to 2**24 (past
#: 2**63 its 64-bit counts wrap: ``poisson:1e20`` scored 4.7 dB as "done"). At 2**24 the noise's
#: relative std (1 / sqrt(peak) = 2.4e-4) is already far below an 8-bit step.
LARGEST_PEAK = int(2 / SMALLEST_LEVEL)


def check_resolvable(degradation: "Degradation", text: str, value: float) -> float:
    """UsageError for a level below ``SMALLEST_LEVEL`` (it would vanish, or fail later as cell errors)."""
    if value < SMALLEST_LEVEL:
        raise UsageError(f"{degradation.name} {degradation.scale.name} {text} is below float32's "
                         f"resolution ({SMALLEST_LEVEL:.2g}): give a {degradation.scale.name} >= {SMALLEST_LEVEL:.2g}")
    return value


class Degradation:
    """A noise model with one scalar level."""

    name = ""
    #: "gaussian" or "poisson": how denoisers that only know Gaussian noise get their sigma.
    family = ""
    #: How tables and figures show a level (stored with each run).
    scale = LevelScale()
    #: Whether the std varies in space (``sigma_map``): rows that take a map are handed it.
    spatial = False
    #: Whether the input is the dataset's own noisy capture (``ImageSet.captures``): nothing is drawn.
    captured = False
    #: Whether a Gaussian noise-level estimator is meant for it (``gaussian_only`` estimators).
    gaussian_like = False
    #: The levels a bare name (``-n real``) stands for; none: a level must be given.
    default_levels: tuple[str, ...] = ()

    def parse_level(self, text: str) -> float:
        try:
            value = parse_number(text)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"{self.name} {self.scale.name} {text!r} is not a number") from None
        if value <= 0:
            raise UsageError(f"{self.name} {self.scale.name} must be > 0, got {text!r}")
        return value

    def draw(self, x: torch.Tensor, level: float, generator: torch.Generator) -> torch.Tensor:
        """Degrade one (1, C, H, W) CPU image with a seeded generator."""
        raise NotImplementedError

    def apply(self, images: list[torch.Tensor], level: float, seeds: list[int]) -> torch.Tensor:
        """Degrade (C, H, W) CPU images, one generator per image; returns a CPU batch."""
        return torch.stack([self.draw(x[None], level, torch.Generator().manual_seed(seed))[0]
                            for x, seed in zip(images, seeds)])

    def sigma(self, y: torch.Tensor, level: float) -> torch.Tensor:
        """The per-image Gaussian-equivalent noise std handed to denoisers, shape (B,)."""
        raise NotImplementedError

    def sigma_map(self, y: torch.Tensor, level: float) -> torch.Tensor | None:
        """The per-pixel noise std (B, 1, H, W) where it varies in space, for rows that take a
        noise-level map (``noise_map`` metadata); None where one level per image says it all."""
        return None


class GaussianDegradation(Degradation):
    """y = x + sigma * n, sigma in [0, 1] units."""

    name = "gaussian"
    family = "gaussian"
    scale = GAUSSIAN
    gaussian_like = True

    def draw(self, x, level, generator):
        # deepinv.physics.GaussianNoise: x + N(0, 1) * sigma, sigma a float32 tensor
        sigma = torch.tensor(level, dtype=torch.float32)
        return x + torch.empty_like(x).normal_(generator=generator) * sigma[(...,) + (None,) * (x.dim() - 1)]

    def sigma(self, y, level):
        return torch.full((y.shape[0],), float(level), device=y.device, dtype=y.dtype)

    def parse_level(self, text):
        value = super().parse_level(text)
        if value >= 1:
            raise UsageError(f"gaussian sigma {text} is on the [0, 1] scale (>= 1 buries the image); "
                             f"for {text} on the 0-255 scale write {text}/255")
        return check_resolvable(self, text, value)


class GaussianMapDegradation(GaussianDegradation):
    """y = x + m * n: Gaussian noise whose std m varies in space, the same map on every channel.

    The level is the map's mean, so a row told one level per image receives exactly it (and
    ``sigma_in`` factors scale the whole map). ``shape``: ``ramp``, a horizontal ramp, or
    ``peaks``, MATLAB's ``peaks`` surface flipped upside down, as the FFDNet authors'
    ``Demo_AWGN_spatially_variant_noise.m`` draws it. ``low``: the smallest std over the
    largest (0, the default, as in that demo: from 0 to twice the level for the ramp).
    """

    name = "gaussian-map"
    scale = MAP_MEAN
    spatial = True
    SHAPES = ("ramp", "peaks")

    def __init__(self, shape: str = "ramp", low: float = 0.0):
        if shape not in self.SHAPES:
            raise UsageError(f"gaussian-map shape must be one of {', '.join(self.SHAPES)}, got {shape!r}")
        if not 0.0 <= low <= 1.0:
            raise UsageError(f"gaussian-map low is the smallest std over the largest, in [0, 1], got {low}")
        self.shape, self.low = shape, float(low)

    def profile(self, height: int, width: int) -> torch.Tensor:
        """The map's shape (H, W) in float64, scaled to mean 1 (made once per size: not to be changed)."""
        return map_profile(self.shape, self.low, height, width)

    def level_map(self, height: int, width: int, level: float) -> torch.Tensor:
        """The per-pixel std (1, 1, H, W), float32, whose mean is the level."""
        return (self.profile(height, width) * level).to(torch.float32)[None, None]

    def draw(self, x, level, generator):
        # the draw of GaussianDegradation, the scalar sigma replaced by the map
        return x + torch.empty_like(x).normal_(generator=generator) * self.level_map(*x.shape[-2:], level)

    def sigma_map(self, y, level):
        return self.level_map(*y.shape[-2:], level).to(y.device).expand(y.shape[0], -1, -1, -1)


@functools.lru_cache(maxsize=32)
def map_profile(shape: str, low: float, height: int, width: int) -> torch.Tensor:
    """``GaussianMapDegradation.profile``: the same for every image of a size, so made once."""
    if shape == "ramp":
        rise = torch.linspace(0.0, 1.0, width, dtype=torch.float64).expand(height, width)
    else:  # MATLAB: [x, y] = meshgrid(linspace(-3, 3, n)); z = peaks; flipud
        y, x = torch.meshgrid(torch.linspace(-3.0, 3.0, height, dtype=torch.float64),
                              torch.linspace(-3.0, 3.0, width, dtype=torch.float64), indexing="ij")
        z = (3 * (1 - x) ** 2 * torch.exp(-x ** 2 - (y + 1) ** 2)
             - 10 * (x / 5 - x ** 3 - y ** 5) * torch.exp(-x ** 2 - y ** 2)
             - torch.exp(-(x + 1) ** 2 - y ** 2) / 3).flip(0)
        rise = (z - z.min()) / (z.max() - z.min())
    stds = low + (1.0 - low) * rise
    return stds / stds.mean()


class PoissonDegradation(Degradation):
    """y = Poisson(peak * x) / peak."""

    name = "poisson"
    family = "poisson"
    scale = POISSON

    def parse_level(self, text):
        value = check_resolvable(self, text, super().parse_level(text))
        if value > LARGEST_PEAK:
            raise UsageError(f"poisson peak {text} is past 2**{LARGEST_PEAK.bit_length() - 1}, where "
                             "torch.poisson's float32 counts stop being exact (the noise is far below "
                             f"an 8-bit step there): give a peak <= {LARGEST_PEAK}")
        return value

    def draw(self, x, level, generator):
        # deepinv.physics.PoissonNoise(gain=1 / peak, normalize=True): Poisson(x / gain) * gain
        gain = torch.tensor(1.0 / level, dtype=torch.float32)[(...,) + (None,) * (x.dim() - 1)]
        if torch.any(x < 0):
            raise ValueError("Input tensor for Poisson noise must be non-negative.")
        return torch.poisson(x / gain, generator=generator) * gain

    def sigma(self, y, level):
        # Var[y | x] = x / peak; estimate the mean intensity from y itself.
        mean = y.flatten(1).mean(dim=1).clamp(min=1e-6)
        return torch.sqrt(mean / level)



class CapturedNoise(Degradation):
    """Real camera noise: the input is the dataset's own noisy capture, nothing is drawn.

    One level, ``captured`` (stored as 0). It has no true level: a row is handed the std of
    noisy - reference per image (``residual``), an estimate or a fixed level
    (``bench.noise.sigma_in``); blind estimators treat it as Gaussian, as the field does.
    """

    name = "real"
    family = "real"
    scale = CAPTURED
    captured = True
    gaussian_like = True
    LEVEL_TEXT, LEVEL = "captured", 0.0
    default_levels = (LEVEL_TEXT,)

    def parse_level(self, text):
        if text.strip() != self.LEVEL_TEXT:
            raise UsageError(f"real noise has one level, {self.LEVEL_TEXT} (the set's own noisy images), "
                             f"not {text!r}: write -n real")
        return self.LEVEL

    def draw(self, x, level, generator):
        raise TypeError("real noise is captured, not drawn: the inputs are the dataset's captures")

    def sigma(self, y, level):
        raise TypeError("real noise has no true level: the grid hands over the residual or an estimate")
