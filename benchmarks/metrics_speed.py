"""Batched torch PSNR + SSIM against a scikit-image loop over the same images.

64 gray 256x256 images (crops of scikit-image's test images with Gaussian
noise); reports the speed ratio and the largest absolute difference.
Run: python benchmarks/metrics_speed.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.data.datasets import skimage_gray
from bench.grid.metrics import psnr, ssim
from results_file import update_section

N_IMAGES, SIZE, REPEATS = 64, 256, 3


def images() -> tuple[torch.Tensor, torch.Tensor]:
    """64 distinct 256x256 crops of the gray test images, and noisy versions."""
    sources = [im for im in skimage_gray().images if min(im.shape[1:]) >= SIZE]
    crops = []
    rng = np.random.default_rng(0)
    while len(crops) < N_IMAGES:
        im = sources[len(crops) % len(sources)]
        top = rng.integers(0, im.shape[1] - SIZE + 1)
        left = rng.integers(0, im.shape[2] - SIZE + 1)
        crops.append(im[:, top:top + SIZE, left:left + SIZE])
    x = torch.stack(crops)
    g = torch.Generator().manual_seed(0)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return y, x


def skimage_loop(y: torch.Tensor, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    p, s = [], []
    for a, b in zip(y[:, 0].double().numpy(), x[:, 0].double().numpy()):
        p.append(peak_signal_noise_ratio(b, a, data_range=1))
        s.append(structural_similarity(b, a, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1))
    return np.array(p), np.array(s)


def best_time(fn, *args):
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    y, x = images()
    t_ref, (p_ref, s_ref) = best_time(skimage_loop, y, x)
    t_ours, (p_ours, s_ours) = best_time(lambda a, b: (psnr(a, b).numpy(), ssim(a, b).numpy()), y, x)
    ratio = t_ref / t_ours
    dp, ds = np.abs(p_ours - p_ref).max(), np.abs(s_ours - s_ref).max()
    body = f"""## Metrics: batched torch PSNR + SSIM vs a scikit-image loop

{N_IMAGES} gray {SIZE}x{SIZE} images, best of {REPEATS}; goal: >= 10x faster, differences <= 1e-4.

| | seconds | images/s |
|---|---|---|
| scikit-image loop (psnr + ssim per image) | {t_ref:.3f} | {N_IMAGES / t_ref:.0f} |
| bench.grid.metrics, one batch | {t_ours:.3f} | {N_IMAGES / t_ours:.0f} |

Speed ratio: **{ratio:.1f}x**. Max abs difference: PSNR {dp:.2e} dB, SSIM {ds:.2e}."""
    update_section("metrics_speed", body)
    print(body)


if __name__ == "__main__":
    main()
