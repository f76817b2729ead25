"""Batched per-image metrics in torch that match scikit-image's definitions.

All take ``x_hat`` and ``x`` of shape (B, C, H, W) with data range 1 and return
a (B,) float64 tensor. Arithmetic is float64, like scikit-image's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Wang et al. (2004) settings, as skimage's ``structural_similarity`` with
#: gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    diff = x_hat.double() - x.double()
    return diff.pow(2).flatten(1).mean(dim=1)


def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """10 log10(1 / MSE), as ``skimage.metrics.peak_signal_noise_ratio(data_range=1)``."""
    return 10 * torch.log10(1.0 / mse(x_hat, x))


def _gaussian_kernel(device) -> torch.Tensor:
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # scipy.ndimage's radius
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    kernel = torch.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return kernel / kernel.sum()


def _filter(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter over H and W of (N, 1, H, W)."""
    k = kernel.numel()
    out = F.conv2d(images, kernel.view(1, 1, 1, k))
    return F.conv2d(out, kernel.view(1, 1, k, 1))


def ssim(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image, averaged over channels, as skimage computes it.

    skimage filters with reflect padding and then crops (win_size - 1) // 2
    pixels from each border before averaging; that crop equals the kernel
    radius, so a 'valid' convolution gives the same numbers without padding.
    """
    b, c, h, w = x.shape
    kernel = _gaussian_kernel(x.device)
    if min(h, w) < kernel.numel():
        raise ValueError(f"SSIM needs images of at least {kernel.numel()}x{kernel.numel()}, got {h}x{w}")
    a = x_hat.double().reshape(b * c, 1, h, w)
    r = x.double().reshape(b * c, 1, h, w)
    stacked = _filter(torch.cat([a, r, a * a, r * r, a * r]), kernel)
    ua, ur, uaa, urr, uar = stacked.chunk(5)
    va, vr, var = uaa - ua * ua, urr - ur * ur, uar - ua * ur
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * ua * ur + c1) * (2 * var + c2)) / ((ua ** 2 + ur ** 2 + c1) * (va + vr + c2))
    return s.flatten(1).mean(dim=1).reshape(b, c).mean(dim=1)
