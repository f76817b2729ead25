"""Batched per-image metrics in torch that match scikit-image's definitions.

All take ``x_hat`` and ``x`` of shape (B, C, H, W) with data range 1 and return
a (B,) float64 tensor. MSE and PSNR are computed in float64 like scikit-image;
SSIM works in float32 (float64 is several times slower on the CPU) on
mean-centred images and averages in float64, which keeps it within 1e-6 of
scikit-image's float64.
"""

from __future__ import annotations

import torch

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
    return (kernel / kernel.sum()).float()


def _band(n: int, kernel: torch.Tensor) -> torch.Tensor:
    """(n, n - k + 1) matrix whose product with a signal is its 'valid' filtering."""
    k = kernel.numel()
    band = torch.zeros(n, n - k + 1, dtype=kernel.dtype, device=kernel.device)
    for i in range(k):
        band.diagonal(-i).copy_(kernel[i])
    return band


def _filter(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter over H and W of (N, 1, H, W).

    Written as two matrix products with banded matrices: BLAS makes this
    several times faster than a single-channel conv2d on the CPU.
    """
    h, w = images.shape[-2:]
    return _band(h, kernel).T @ images @ _band(w, kernel)


#: Pixels per SSIM chunk: large batches are split so intermediates stay in cache.
SSIM_CHUNK_PIXELS = 2 ** 18


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
    step = max(1, SSIM_CHUNK_PIXELS // (c * h * w))
    return torch.cat([_ssim(x_hat[i:i + step], x[i:i + step], kernel) for i in range(0, b, step)])


def _ssim(x_hat: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    a = x_hat.float().reshape(b * c, 1, h, w)
    r = x.float().reshape(b * c, 1, h, w)
    # Variances are shift-invariant: centring first avoids float32 cancellation.
    ma, mr = a.mean(dim=(2, 3), keepdim=True), r.mean(dim=(2, 3), keepdim=True)
    a0, r0 = a - ma, r - mr
    stacked = _filter(torch.cat([a0, r0, a0 * a0, r0 * r0, a0 * r0]), kernel)
    da, dr, uaa, urr, uar = stacked.chunk(5)
    va, vr, var = uaa - da * da, urr - dr * dr, uar - da * dr
    ua, ur = da + ma, dr + mr
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * ua * ur + c1) * (2 * var + c2)) / ((ua ** 2 + ur ** 2 + c1) * (va + vr + c2))
    return s.flatten(1).double().mean(dim=1).reshape(b, c).mean(dim=1)
