"""The no-denoising row and a sigma-aware Gaussian filter."""

import torch
import torch.nn.functional as F

import bench


def identity(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Returns the noisy input: the floor every denoiser must beat."""
    return y


def gaussian_kernel(width: float, device, dtype=torch.float32) -> torch.Tensor:
    radius = max(1, int(4 * width + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (t / width) ** 2)
    return kernel / kernel.sum()


def blur(images: torch.Tensor, width: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflect padding."""
    b, c, h, w = images.shape
    kernel = gaussian_kernel(width, images.device, images.dtype)
    radius = kernel.numel() // 2
    flat = images.reshape(b * c, 1, h, w)
    mode = "reflect" if min(h, w) > radius else "replicate"
    flat = F.pad(flat, (radius, radius, radius, radius), mode=mode)
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(b, c, h, w)


class GaussianFilter:
    """Gaussian blur whose width grows with the noise level, or a fixed ``width``.

    Default width (pixels) = 0.3 + 6 * sigma: 0.65 px at 15/255, 1.5 px at 50/255.
    """

    def __init__(self, width: float | None = None):
        if width is not None and width <= 0:
            raise bench.UsageError(f"gaussian-filter width must be > 0, got {width}")
        self.width = width

    def width_for(self, sigma: float) -> float:
        return self.width if self.width is not None else 0.3 + 6.0 * sigma

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        values = torch.unique(sigma)
        if len(values) == 1:  # the usual case: one noise level per batch, no masked copies
            return blur(y, self.width_for(float(values[0])))
        out = torch.empty_like(y)
        for value in values:
            index = sigma == value
            out[index] = blur(y[index], self.width_for(float(value)))
        return out


@bench.hookimpl
def register_denoisers(register):
    register("noisy", lambda: identity, sigma_aware=False,
             description="identity: the noisy input, the row every method must beat")
    register("gaussian-filter", GaussianFilter, sigma_aware=True,
             description="Gaussian blur, width 0.3 + 6 sigma px (or width=...)")
