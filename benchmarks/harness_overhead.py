"""Harness overhead: `denoise-bench run` against a hand-written loop doing the same work.

Both load skimage-gray, add seeded Gaussian noise at three levels, run `noisy`
and `gaussian-filter`, and compute PSNR and SSIM, in this process. The
harness also resolves plugins, builds the grid and writes the SQLite store.
Run: python benchmarks/harness_overhead.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from bench.cli import main as cli
from bench.data.datasets import skimage_gray
from bench.grid.metrics import psnr, ssim
from bench_plugins.basic_denoisers import GaussianFilter, identity
from results_file import update_section

LEVELS = (15 / 255, 25 / 255, 50 / 255)
REPEATS = 3


def hand_loop() -> int:
    """The same degrade + denoise + metrics, written directly."""
    images = skimage_gray()
    denoisers = (identity, GaussianFilter())
    count = 0
    for level in LEVELS:
        for x in images.images:
            g = torch.Generator().manual_seed(count)
            y = x[None] + level * torch.randn(x[None].shape, generator=g)
            sigma = torch.full((1,), level)
            for denoise in denoisers:
                out = denoise(y, sigma).clamp(0, 1)
                psnr(out, x[None]), ssim(out, x[None])
                count += 1
    return count


def harness(store: Path) -> int:
    store.unlink(missing_ok=True)
    code = cli(["run", "-d", "skimage-gray", "-n", "gaussian:15/255,25/255,50/255",
                "-m", "noisy", "-m", "gaussian-filter", "--store", str(store), "--quiet"])
    assert code == 0, code
    return 2 * len(LEVELS)


def best(fn, *args) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "bench.sqlite"
        harness(store)  # warm imports and caches for both
        t_hand, t_harness = best(hand_loop), best(harness, store)
    ratio = t_harness / t_hand
    body = f"""## Harness overhead: `run` vs a hand-written loop

`noisy` and `gaussian-filter` over skimage-gray (10 images, full size) x 3 Gaussian levels,
PSNR + SSIM, in one process, best of {REPEATS}; goal: ratio <= 1.10.

| | seconds |
|---|---|
| hand-written loop | {t_hand:.3f} |
| `denoise-bench run` (plugins, grid, seeded noise, store) | {t_harness:.3f} |

Ratio harness / hand loop: **{ratio:.3f}**."""
    update_section("harness_overhead", body)
    print(body)


if __name__ == "__main__":
    main()
