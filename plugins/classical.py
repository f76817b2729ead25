"""Classical baselines: BM3D, NL-means, TV, wavelet, bilateral, median, and tuned variants.

BM3D, NL-means, TV, wavelet and median run image by image on the CPU as numpy
calls to their reference library (bm3d, scikit-image, scipy) and hand the
result back on the input's device and dtype. Gray images go in as (H, W),
colour as (H, W, C) with ``channel_axis=-1`` (or ``bm3d_rgb``). The bilateral
filter is torch (scikit-image's is broken, see ``Bilateral``) and runs on the
run's device. Images of a batch are processed one after the other: worker
pools did not pay off on a 2-core machine (benchmarks/classical_speed.py).

Defaults follow the libraries' own recommendations or held-out sweeps; see
README.md (Classical baselines) for where each comes from. ``<name>-tuned`` picks the
method's strength parameter per image with scikit-image's J-invariant
``calibrate_denoiser`` (self-supervised: it sees only the noisy image), so no
row is weak because of a guessed constant.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F

import bench
from bench_plugins.basic_denoisers import GaussianFilter, blur

#: Multipliers of the default strength that ``-tuned`` variants try: 1/4 to 4 in
#: steps of sqrt(2), so the pick is within a factor 2**0.25 of the best on the grid.
CALIBRATION_FACTORS = tuple(float(f) for f in 2.0 ** np.linspace(-2, 2, 9))
BM3D_PROFILES = ("np", "refilter", "vn", "vn_old", "high", "deb")
#: Held-out sweeps (benchmarks/classical_defaults.py) picked these; see README.md (Classical baselines).
TV_WEIGHT_FACTOR = 0.9
BILATERAL_COLOR_FACTOR = 3.0
BILATERAL_SPATIAL = 1.8


#: numpy twins of torch float types; conversions go through numpy, which is much
#: faster than torch's threaded casts on a busy CPU (see benchmarks/classical_speed.py).
NUMPY_FLOATS = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def to_arrays(y: torch.Tensor) -> list[np.ndarray]:
    """(B, C, H, W) tensor to float64 arrays: (H, W) for gray, (H, W, C) otherwise."""
    batch = y.detach().cpu().numpy().astype(np.float64)
    if batch.shape[1] == 1:
        return list(batch[:, 0])
    return [np.ascontiguousarray(image.transpose(1, 2, 0)) for image in batch]


def from_arrays(arrays: list[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_arrays``, on ``like``'s device and dtype."""
    stacked = np.stack([a.reshape(a.shape[0], a.shape[1], -1).transpose(2, 0, 1) for a in arrays])
    if like.dtype in NUMPY_FLOATS:
        out = torch.from_numpy(np.ascontiguousarray(stacked, dtype=NUMPY_FLOATS[like.dtype]))
    else:
        out = torch.from_numpy(stacked).to(like.dtype)
    return out.to(like.device).reshape(like.shape)


def restoration(name: str):
    """``skimage.restoration.<name>``, imported on first call (it pulls in scipy.stats: ~1 s)."""
    def call(*args, **kwargs):
        from skimage import restoration as module
        return getattr(module, name)(*args, **kwargs)
    call.__name__ = name
    return call


def channel_axis(image: np.ndarray) -> int | None:
    return -1 if image.ndim == 3 else None


def _positive(name: str, value) -> None:
    if value is not None and not value > 0:
        raise bench.UsageError(f"{name} must be > 0, got {value}")


class ArrayDenoiser:
    """A numpy denoiser applied image by image: ``denoise(image, sigma) -> image``."""

    def denoise(self, image: np.ndarray, sigma: float) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        images = to_arrays(y)
        out = [self.denoise(image, s) for image, s in zip(images, sigma.tolist())]
        return from_arrays(out, y)


class LibraryDenoiser(ArrayDenoiser):
    """A library function with keyword parameters, one of which (``strength``) scales with sigma."""

    #: The keyword of ``function`` that scales with sigma, and the constructor
    #: parameters that set it (a tuned variant calibrates it, so they are not allowed there).
    strength = ""
    strength_params: tuple[str, ...] = ()

    @staticmethod
    def function(image: np.ndarray, **kwargs) -> np.ndarray:
        raise NotImplementedError

    def kwargs(self, image: np.ndarray, sigma: float) -> dict:
        raise NotImplementedError

    def denoise(self, image, sigma):
        return self.function(image, **self.kwargs(image, sigma))


class BM3D(ArrayDenoiser):
    """``bm3d.bm3d`` (gray) or ``bm3d.bm3d_rgb`` (colour) with sigma_psd = sigma, nothing else."""

    def __init__(self, profile: str = "np"):
        try:
            import bm3d
        except ImportError:
            raise bench.Skip("the bm3d package is not installed (non-commercial licence, "
                             "an optional extra): pip install 'denoise-bench[bm3d]'") from None
        if profile not in BM3D_PROFILES:
            raise bench.UsageError(f"bm3d profile must be one of {', '.join(BM3D_PROFILES)}, "
                                   f"got {profile!r}")
        self.bm3d = bm3d
        self.profile = profile

    def denoise(self, image, sigma):
        if image.ndim == 3 and image.shape[2] == 3:
            return self.bm3d.bm3d_rgb(image, sigma, profile=self.profile)
        return self.bm3d.bm3d(image, sigma, profile=self.profile)


class NLMeans(LibraryDenoiser):
    """skimage NL-means, fast mode, noise sigma given; h = 0.8 sigma unless h is set."""

    strength = "h"
    strength_params = ("h", "h_factor")
    function = staticmethod(restoration("denoise_nl_means"))

    def __init__(self, h: float | None = None, h_factor: float = 0.8, patch_size: int = 5,
                 patch_distance: int = 6, fast_mode: bool = True):
        for name, value in (("h", h), ("h_factor", h_factor), ("patch_size", patch_size),
                            ("patch_distance", patch_distance)):
            _positive(f"nlm {name}", value)
        self.h, self.h_factor = h, h_factor
        self.patch_size, self.patch_distance, self.fast_mode = patch_size, patch_distance, fast_mode

    def kwargs(self, image, sigma):
        return dict(h=self.h if self.h is not None else self.h_factor * sigma, sigma=sigma,
                    patch_size=self.patch_size, patch_distance=self.patch_distance,
                    fast_mode=self.fast_mode, channel_axis=channel_axis(image))


class TV(LibraryDenoiser):
    """skimage Chambolle TV; weight = 0.9 sigma unless weight is set."""

    strength = "weight"
    strength_params = ("weight", "weight_factor")
    function = staticmethod(restoration("denoise_tv_chambolle"))

    def __init__(self, weight: float | None = None, weight_factor: float = TV_WEIGHT_FACTOR,
                 eps: float = 2e-4, max_num_iter: int = 200):
        for name, value in (("weight", weight), ("weight_factor", weight_factor), ("eps", eps),
                            ("max_num_iter", max_num_iter)):
            _positive(f"tv {name}", value)
        self.weight, self.weight_factor, self.eps, self.max_num_iter = weight, weight_factor, eps, max_num_iter

    def kwargs(self, image, sigma):
        return dict(weight=self.weight if self.weight is not None else self.weight_factor * sigma,
                    eps=self.eps, max_num_iter=self.max_num_iter, channel_axis=channel_axis(image))


class Wavelet(LibraryDenoiser):
    """skimage wavelet shrinkage, BayesShrink, soft, db2, sigma given (YCbCr for colour)."""

    strength = "sigma"
    strength_params = ("sigma_factor",)
    function = staticmethod(restoration("denoise_wavelet"))

    def __init__(self, wavelet: str = "db2", method: str = "BayesShrink", mode: str = "soft",
                 wavelet_levels: int | None = None, sigma_factor: float = 1.0):
        import pywt

        if wavelet not in pywt.wavelist(kind="discrete"):
            raise bench.UsageError(f"wavelet {wavelet!r} is not a discrete pywt wavelet "
                                   "(e.g. db1, db2, sym8, coif1)")
        if method not in ("BayesShrink", "VisuShrink"):
            raise bench.UsageError(f"wavelet method must be BayesShrink or VisuShrink, got {method!r}")
        if mode not in ("soft", "hard"):
            raise bench.UsageError(f"wavelet mode must be soft or hard, got {mode!r}")
        _positive("wavelet wavelet_levels", wavelet_levels)
        _positive("wavelet sigma_factor", sigma_factor)
        self.wavelet, self.method, self.mode = wavelet, method, mode
        self.wavelet_levels, self.sigma_factor = wavelet_levels, sigma_factor

    def kwargs(self, image, sigma):
        axis = channel_axis(image)
        return dict(sigma=self.sigma_factor * sigma, wavelet=self.wavelet, method=self.method,
                    mode=self.mode, wavelet_levels=self.wavelet_levels, rescale_sigma=True,
                    convert2ycbcr=axis is not None and image.shape[2] == 3, channel_axis=axis)


def bilateral(images: torch.Tensor, sigma_color: torch.Tensor, sigma_spatial: float,
              radius: int) -> torch.Tensor:
    """Tomasi & Manduchi's bilateral filter on (B, C, H, W), reflected edges.

    Weights exp(-d^2 / 2 sigma_spatial^2) * exp(-|y_i - y_j|^2 / 2 sigma_color^2)
    over a (2 radius + 1)^2 window, |.| the distance over all channels jointly
    (as scikit-image's ``denoise_bilateral``); ``sigma_color`` is per image, (B,).
    """
    b, _, h, w = images.shape
    scale = (-0.5 / sigma_color.to(images) ** 2).view(b, 1, 1, 1)
    padded = F.pad(images, (radius,) * 4, mode="reflect" if min(h, w) > radius else "replicate")
    total = torch.zeros_like(images)
    weight_sum = torch.zeros_like(images[:, :1])
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            shifted = padded[:, :, radius + dr:radius + dr + h, radius + dc:radius + dc + w]
            weight = (shifted - images).square_().sum(dim=1, keepdim=True)
            weight.mul_(scale).add_(-(dr * dr + dc * dc) / (2 * sigma_spatial ** 2)).exp_()
            total.addcmul_(weight, shifted)
            weight_sum += weight
    return total / weight_sum


def bilateral_radius(sigma_spatial: float) -> int:
    """scikit-image's window rule: win_size = max(5, 2 ceil(3 sigma_spatial) + 1)."""
    return max(2, math.ceil(3 * sigma_spatial))


def on_tensor(function, image: np.ndarray, channel_axis: int | None, **kwargs) -> np.ndarray:
    """Run a (B, C, H, W) torch filter on one numpy image (for ``calibrate_denoiser``)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    tensor = tensor.permute(2, 0, 1) if channel_axis is not None else tensor[None]
    out = function(tensor[None], **kwargs)[0]
    return (out.permute(1, 2, 0) if channel_axis is not None else out[0]).numpy()


def bilateral_array(image: np.ndarray, sigma_color: float, sigma_spatial: float,
                    channel_axis: int | None = None) -> np.ndarray:
    return on_tensor(bilateral, image, channel_axis, sigma_color=torch.tensor([sigma_color]),
                     sigma_spatial=sigma_spatial, radius=bilateral_radius(sigma_spatial))


def blur_array(image: np.ndarray, width: float, channel_axis: int | None = None) -> np.ndarray:
    """``gaussian-filter``'s blur on one numpy image."""
    return on_tensor(blur, image, channel_axis, width=width)


class Bilateral(LibraryDenoiser):
    """Bilateral filter (torch, on the run's device); sigma_color = 3 sigma, sigma_spatial = 1.8 px.

    Not scikit-image's ``denoise_bilateral``: in scikit-image 0.26 its spatial
    lookup table has (w + 1)^2 entries but is read as w x w, which scrambles the
    spatial kernel (see README.md (Classical baselines)).
    """

    strength = "sigma_color"
    strength_params = ("sigma_color", "sigma_color_factor")
    function = staticmethod(bilateral_array)

    def __init__(self, sigma_color: float | None = None,
                 sigma_color_factor: float = BILATERAL_COLOR_FACTOR,
                 sigma_spatial: float = BILATERAL_SPATIAL):
        for name, value in (("sigma_color", sigma_color), ("sigma_color_factor", sigma_color_factor),
                            ("sigma_spatial", sigma_spatial)):
            _positive(f"bilateral {name}", value)
        self.sigma_color, self.sigma_color_factor = sigma_color, sigma_color_factor
        self.sigma_spatial = sigma_spatial

    def color(self, sigma):
        return self.sigma_color if self.sigma_color is not None else self.sigma_color_factor * sigma

    def kwargs(self, image, sigma):
        return dict(sigma_color=self.color(sigma), sigma_spatial=self.sigma_spatial,
                    channel_axis=channel_axis(image))

    def __call__(self, y, sigma):
        color = self.color(sigma) * torch.ones_like(sigma)
        return bilateral(y, color, self.sigma_spatial, bilateral_radius(self.sigma_spatial))


class GaussianBlur(LibraryDenoiser):
    """``gaussian-filter`` as a numpy denoiser, with the same width rule; for ``-tuned``."""

    strength = "width"
    strength_params = ("width",)
    function = staticmethod(blur_array)

    def __init__(self, width: float | None = None):
        self.rule = GaussianFilter(width)

    def kwargs(self, image, sigma):
        return dict(width=self.rule.width_for(sigma), channel_axis=channel_axis(image))


class Median(ArrayDenoiser):
    """scipy median filter over size x size pixels, per channel, reflected edges."""

    def __init__(self, size: int = 3):
        if not isinstance(size, int) or size < 1:
            raise bench.UsageError(f"median size must be a positive integer, got {size!r}")
        self.size = size

    def denoise(self, image, sigma):
        from scipy import ndimage

        footprint = (self.size, self.size) + (1,) * (image.ndim - 2)
        return ndimage.median_filter(image, size=footprint, mode="reflect")


class Calibrated(ArrayDenoiser):
    """Picks ``method.strength`` per image by J-invariant self-supervised loss (Batson & Royer 2019).

    The candidates are the method's default strength times CALIBRATION_FACTORS.
    The winner is applied as the plain method, not as the J-invariant version
    ``calibrate_denoiser`` returns: that costs 16 calls instead of one and, on
    128x128 skimage gray crops, scored lower in 5 of 6 (method, sigma) settings
    we tried (by 0.4 to 2 dB; README.md (Classical baselines)).
    """

    def __init__(self, method: LibraryDenoiser, factors: tuple[float, ...] = CALIBRATION_FACTORS):
        self.method, self.factors = method, factors

    def choose(self, image: np.ndarray, sigma: float) -> dict:
        """The method's keyword arguments with the calibrated strength."""
        kwargs = self.method.kwargs(image, sigma)
        grid = {name: [value] for name, value in kwargs.items()}
        grid[self.method.strength] = [kwargs[self.method.strength] * f for f in self.factors]
        from skimage.restoration import calibrate_denoiser

        _, (tested, losses) = calibrate_denoiser(image, self.method.function, grid, extra_output=True)
        return tested[int(np.argmin(losses))]

    def denoise(self, image, sigma):
        return self.method.function(image, **self.choose(image, sigma))


def tuned(cls: type[LibraryDenoiser]):
    """Factory for ``<name>-tuned``: the method's parameters, minus the one it calibrates."""
    signature = inspect.signature(cls)

    @functools.wraps(cls, assigned=("__doc__",), updated=())
    def factory(**params):
        fixed = [p for p in params if p in cls.strength_params]
        if fixed:
            raise bench.UsageError(f"the tuned variant calibrates {cls.strength}; "
                                   f"do not set {', '.join(fixed)}")
        return Calibrated(cls(**params))

    factory.__signature__ = signature
    return factory


#: name -> (factory, sigma_aware, description)
METHODS = {
    "bm3d": (BM3D, True, "BM3D (bm3d package; bm3d_rgb for colour), sigma_psd = sigma"),
    "nlm": (NLMeans, True, "skimage NL-means, fast mode, h = 0.8 sigma, patch 5, distance 6"),
    "tv": (TV, True, "skimage Chambolle TV, weight = 0.9 sigma"),
    "wavelet": (Wavelet, True, "skimage wavelet, BayesShrink soft, db2, sigma given"),
    "bilateral": (Bilateral, True, "bilateral filter, sigma_color = 3 sigma, sigma_spatial = 1.8 px"),
    "median": (Median, False, "scipy median filter, 3x3"),
}
TUNED = {"nlm": NLMeans, "tv": TV, "wavelet": Wavelet, "bilateral": Bilateral,
         "gaussian-filter": GaussianBlur}


@bench.hookimpl
def register_denoisers(register):
    for name, (factory, sigma_aware, description) in METHODS.items():
        register(name, factory, sigma_aware=sigma_aware, description=description,
                 **({"published_as": "BM3D"} if name == "bm3d" else {}))
    for name, cls in TUNED.items():
        register(f"{name}-tuned", tuned(cls), sigma_aware=True,
                 description=f"{name} with its {cls.strength} picked per image by "
                             "J-invariant calibration (skimage calibrate_denoiser)")
