"""Seconds per 256x256 gray image for each classical method: harness against a direct call.

The harness time is ``bench.grid.runner.run_cell`` (tensor to numpy and back, clamp,
PSNR) over the plugin built by the registry; the reference is a plain loop of
the library call over the same noisy numpy images. Both run interleaved in this
process, several times, and the best of each is kept, so a busy machine hurts
both alike. A second table asks whether spreading the images of a batch over
worker threads or processes would pay off on this machine.

    /work/venv/bin/python benchmarks/classical_speed.py [--images 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import bm3d
import numpy as np
import torch
from scipy import ndimage
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

from bench.data.datasets import ImageSet, skimage_gray  # noqa: E402
from bench.grid.cells import Denoiser  # noqa: E402
from bench.grid.metrics import psnr  # noqa: E402
from bench.grid.inputs import make_batches  # noqa: E402
from bench.grid.runner import run_cell  # noqa: E402
from bench.noise.degradations import GaussianDegradation  # noqa: E402
from bench.plugins import get_plugin_set  # noqa: E402
from bench.registry import Registry  # noqa: E402
from bench.specs import Spec  # noqa: E402
from bench_plugins.basic_denoisers import blur  # noqa: E402
from bench_plugins.classical import bilateral, bilateral_radius  # noqa: E402

SIGMA = 25 / 255


def _tensor_call(function, image: np.ndarray, **kwargs) -> np.ndarray:
    """A torch filter on one image, in float32 as the harness hands it over."""
    return function(torch.from_numpy(image.astype(np.float32))[None, None], **kwargs)[0, 0].numpy()


#: name -> the library call the plugin makes, on one (H, W) float64 image, with its defaults.
DIRECT = {
    "bm3d": lambda im: bm3d.bm3d(im, SIGMA, profile="np"),
    "nlm": lambda im: denoise_nl_means(im, h=0.8 * SIGMA, sigma=SIGMA, patch_size=5,
                                       patch_distance=6, fast_mode=True),
    "tv": lambda im: denoise_tv_chambolle(im, weight=0.9 * SIGMA),
    "wavelet": lambda im: denoise_wavelet(im, sigma=SIGMA, wavelet="db2", method="BayesShrink",
                                          mode="soft", rescale_sigma=True),
    "bilateral": lambda im: _tensor_call(bilateral, im, sigma_color=torch.tensor([3 * SIGMA]),
                                         sigma_spatial=1.8, radius=bilateral_radius(1.8)),
    "median": lambda im: ndimage.median_filter(im, size=3, mode="reflect"),
    "gaussian-filter": lambda im: _tensor_call(blur, im, width=0.3 + 6 * SIGMA),
}
#: Per-image numpy methods whose images could go to worker pools, and whether threads may
#: share them: bm3d's native thread pool aborts when two Python threads call it at once
#: (it already runs its own threads, num_threads=0 = all cores).
POOLED = {"bm3d": False, "nlm": True, "tv": True, "wavelet": True}


def _direct(name: str, image: np.ndarray) -> np.ndarray:
    return DIRECT[name](image)


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def harness_vs_direct(registry: Registry, batches, arrays, repeats: int) -> list[dict]:
    """Per image: the runner's timed denoise call, the whole cell, and the plain library loop."""
    metrics = {"psnr": (psnr, registry.get("metrics", "psnr"))}
    rows = []
    n = len(arrays)
    for name in DIRECT:
        spec = Spec(name)
        denoiser = Denoiser(spec, registry.get("denoisers", name), registry.build("denoisers", spec))
        harness, cell, direct = [], [], []

        def run_harness():
            result = run_cell(denoiser, "sigma", batches, metrics, "default", torch.device("cpu"))
            assert result.status == "done", result.error
            harness.append(result.denoise_seconds / n)
            cell.append(result.seconds / n)

        def run_direct():
            direct.append(best_of(1, lambda: [DIRECT[name](a) for a in arrays]) / n)

        for repeat in range(repeats):  # interleaved, order alternating, so load changes hit both
            for step in ((run_harness, run_direct) if repeat % 2 == 0 else (run_direct, run_harness)):
                step()
        rows.append({"method": name, "harness s/image": min(harness), "direct s/image": min(direct),
                     "ratio": min(harness) / min(direct), "whole cell s/image": min(cell)})
        print(rows[-1], flush=True)
    return rows


def pools(arrays, repeats: int) -> list[dict]:
    workers = os.cpu_count() or 1
    rows = []
    # spawn, not fork: bm3d's native thread pool does not survive a fork.
    spawn = multiprocessing.get_context("spawn")
    with ThreadPoolExecutor(workers) as threads, ProcessPoolExecutor(workers, spawn) as processes:
        for name, thread_safe in POOLED.items():
            work = partial(_direct, name)
            list(processes.map(work, arrays))  # warm the workers (imports, bm3d setup)
            serial, threaded, forked = [], [], []
            for _ in range(repeats):
                serial.append(best_of(1, lambda: [work(a) for a in arrays]))
                if thread_safe:
                    threaded.append(best_of(1, lambda: list(threads.map(work, arrays))))
                forked.append(best_of(1, lambda: list(processes.map(work, arrays))))
            s = min(serial)
            rows.append({"method": name, "serial s/image": s / len(arrays),
                         f"threads x{workers} speed-up": s / min(threaded) if threaded else None,
                         f"processes x{workers} speed-up": s / min(forked)})
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows).astype(object)
    cells = frame.map(lambda v: "n/a" if v is None or v != v else f"{v:.3f}" if isinstance(v, float) else v)
    return cells.to_markdown(index=False, disable_numparse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    registry = Registry(get_plugin_set())
    gray = skimage_gray(crop=256)
    square = [i for i, image in enumerate(gray.images) if image.shape == (1, 256, 256)][:args.images]
    images = ImageSet([gray.ids[i] for i in square], [gray.images[i] for i in square])
    batches = make_batches(images, "skimage-gray[crop=256]", GaussianDegradation(), SIGMA, 0, 0,
                           len(images), torch.device("cpu"))
    arrays = list(batches[0].y.numpy().astype(np.float64)[:, 0])
    speed = harness_vs_direct(registry, batches, arrays, args.repeats)
    pooled = pools(arrays, args.repeats)
    body = ("## Classical methods: harness vs direct call (`benchmarks/classical_speed.py`)\n\n"
            f"{len(arrays)} skimage gray images, centre 256x256, Gaussian sigma 25/255; best of "
            f"{args.repeats} interleaved runs. Harness = the denoise time `run_cell` records for "
            "the registered plugin (tensor to numpy and back included); direct = the library call "
            "in a loop over the same noisy arrays. Goal: ratio <= 1.05. The last column is the "
            "whole cell (denoise, clamp, PSNR) per image.\n\n"
            + table(speed)
            + "\n\nWould spreading a batch's images over workers pay off? Speed-up of a warm "
              "pool over the serial loop (direct calls; > 1 means faster; bm3d is not "
              "thread-safe and already runs its own threads).\n\n"
            + table(pooled))
    print(body)
    update_section("classical-speed", body)


if __name__ == "__main__":
    main()
