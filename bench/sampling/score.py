"""Denoisers as score models, through Tweedie's formula.

A denoiser trained with MSE estimates the posterior mean D(y, s) = E[x | y] for
y = x + s * n, and Tweedie's formula turns it into the score of the noisy
density: grad log p_s(y) = (D(y, s) - y) / s^2. Works for images (B, C, H, W)
and point data (B, D) alike.
"""

from __future__ import annotations

from typing import Callable

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sigma_batch(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sigma as a (B,) tensor on x's device and dtype (a float or 0-d tensor is broadcast)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.dim() == 0:
        return sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma has shape {tuple(sigma.shape)}, expected a scalar or ({x.shape[0]},)")
    return sigma


def per_item(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) values reshaped to broadcast against x: (B, 1, ...)."""
    return values.view(-1, *([1] * (x.dim() - 1)))


class TweedieScore:
    """score(x, s) = (D(x, s) - x) / s^2 for any denoiser ``D(y, sigma)``."""

    def __init__(self, denoiser: Callable):
        self.denoiser = denoiser

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        s = sigma_batch(sigma, x)
        return (self.denoiser(x, s) - x) / per_item(s, x) ** 2


def as_score(denoiser: Callable) -> ScoreFn:
    """The denoiser's exact score when it offers one (``denoiser.score``), Tweedie otherwise."""
    exact = getattr(denoiser, "score", None)
    if callable(exact):
        return lambda x, sigma: exact(x, sigma_batch(sigma, x))
    return TweedieScore(denoiser)
