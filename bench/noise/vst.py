"""Variance stabilisation: a Gaussian denoiser on Poisson data through Anscombe.

With y = Poisson(peak * x) / peak and gain g = 1 / peak, the generalized
Anscombe transform z = 2 sqrt(g y + 3/8 g^2) has noise std ~ g (deepinv's
convention) and the closed-form unbiased inverse of Makitalo & Foi (2011)
maps back. Same formulas as deepinv's ``AnscombeDenoiser``, written here for
per-image gains and plain callables, with one change: the denoiser sees
z / (2 sqrt(g)), which spans about [0, 1] like the images denoisers are tuned
for, at sigma = sqrt(g) / 2 = 1 / (2 sqrt(peak)).
"""

from __future__ import annotations

import math

import torch

#: Below this (in units of the gain) the unbiased inverse is 0; clamp there so
#: its negative powers cannot blow up on dark pixels.
INVERSE_FLOOR = 2 * math.sqrt(3 / 8)
_SQRT_3_2 = math.sqrt(1.5)


def _gain(peak: torch.Tensor) -> torch.Tensor:
    return (1.0 / peak).view(-1, 1, 1, 1)


def anscombe(y: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    gain = _gain(peak)
    return 2.0 * (gain * y + 3.0 / 8.0 * gain ** 2).clamp_min(0).sqrt()


def inverse_anscombe(z: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Closed-form approximation of the exact unbiased inverse."""
    gain = _gain(peak)
    u = (z / gain).clamp_min(INVERSE_FLOOR)
    return gain * (u ** 2 / 4 + _SQRT_3_2 / (4 * u) - 11 / (8 * u ** 2)
                   + 5 * _SQRT_3_2 / (8 * u ** 3) - 1 / 8)


class AnscombeDenoiser:
    """Wraps ``denoiser(y, sigma)`` into a Poisson denoiser called as ``(y, peak)``.

    ``received`` maps the transformed level 1 / (2 sqrt(peak)) to the one the denoiser is
    given (``bench.noise.sigma_in``: off by a factor, fixed); by default it is given as is.
    """

    def __init__(self, denoiser, received=None):
        self.denoiser = denoiser
        self.received = received or (lambda sigma: sigma)

    def __call__(self, y: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
        scale = 2.0 * _gain(peak).sqrt()
        z = anscombe(y, peak) / scale
        z_hat = self.denoiser(z, self.received(0.5 / peak.sqrt()))
        return inverse_anscombe(z_hat * scale, peak)
