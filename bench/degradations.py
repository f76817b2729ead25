"""Degradations: seeded Gaussian and Poisson noise on top of deepinv's noise models.

Noise for each image is drawn on the CPU with its own torch.Generator seeded
by ``bench.seeding.noise_seed``, then moved to the run's device, so every
denoiser sees identical noisy pixels whatever the batch, order or device.
(deepinv draws one batch with one generator on the input's device, which would
tie the noise to batch composition and device; we call it per image instead.)
Noisy inputs are not clipped.
"""

from __future__ import annotations

import deepinv
import torch

from bench.errors import UsageError
from bench.specs import parse_number


class Degradation:
    """A noise model with one scalar level."""

    name = ""
    level_name = "level"
    #: "gaussian" or "poisson": how denoisers that only know Gaussian noise get their sigma.
    family = ""

    def parse_level(self, text: str) -> float:
        try:
            value = parse_number(text)
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"{self.name} {self.level_name} {text!r} is not a number") from None
        if value <= 0:
            raise UsageError(f"{self.name} {self.level_name} must be > 0, got {text!r}")
        return value

    def noise_model(self, level: float) -> deepinv.physics.NoiseModel:
        raise NotImplementedError

    def apply(self, images: list[torch.Tensor], level: float, seeds: list[int]) -> torch.Tensor:
        """Degrade (C, H, W) CPU images, one generator per image; returns a CPU batch."""
        model = self.noise_model(level)
        return torch.stack([model(x[None], seed=seed)[0] for x, seed in zip(images, seeds)])

    def sigma(self, y: torch.Tensor, level: float) -> torch.Tensor:
        """The per-image Gaussian-equivalent noise std handed to denoisers, shape (B,)."""
        raise NotImplementedError

    def columns(self, level: float) -> dict:
        """Extra leaderboard columns for a level (``level_255`` or ``peak``)."""
        return {}


class GaussianDegradation(Degradation):
    """y = x + sigma * n, sigma in [0, 1] units."""

    name = "gaussian"
    level_name = "sigma"
    family = "gaussian"

    def noise_model(self, level):
        return deepinv.physics.GaussianNoise(sigma=level, rng=torch.Generator())

    def sigma(self, y, level):
        return torch.full((y.shape[0],), float(level), device=y.device, dtype=y.dtype)

    def columns(self, level):
        return {"level_255": round(level * 255, 6)}


class PoissonDegradation(Degradation):
    """y = Poisson(peak * x) / peak."""

    name = "poisson"
    level_name = "peak"
    family = "poisson"

    def noise_model(self, level):
        return deepinv.physics.PoissonNoise(gain=1.0 / level, rng=torch.Generator())

    def sigma(self, y, level):
        # Var[y | x] = x / peak; estimate the mean intensity from y itself.
        mean = y.flatten(1).mean(dim=1).clamp(min=1e-6)
        return torch.sqrt(mean / level)

    def columns(self, level):
        return {"peak": level}

