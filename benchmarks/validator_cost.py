"""``bench.validator`` against a hand-written validation loop over the same tensors.

A DnCNN-sized network (deepinv's DnCNN, 17 layers, 64 channels, random weights: the cost is
the point) on scikit-image's ten gray images (128x128 crops) at sigma = 25/255. The hand loop
is what a training script would write: denoise each batch, clamp, PSNR. Calls alternate
(validator, hand, ...) so a busy machine slows both alike; medians of 7 calls each.
Goal (issue 28): the validator costs no more than 1.1x the hand loop.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import bench  # noqa: E402
from results_file import update_section  # noqa: E402

DATASET, SIGMA, REPEATS = "skimage-gray[crop=128]", 25 / 255, 7


def hand_loop(model, batches) -> float:
    """Mean PSNR of a model over the validator's own batches, written out by hand."""
    values = []
    with torch.no_grad():
        for batch in batches:
            out = model(batch.y, batch.sigma).clamp(0, 1)
            mse = ((out - batch.x.clamp(0, 1)) ** 2).mean(dim=(1, 2, 3))
            values += (10 * torch.log10(1 / mse)).tolist()
    return sum(values) / len(values)


def main() -> None:
    from deepinv.models import DnCNN

    torch.manual_seed(0)
    model = DnCNN(in_channels=1, out_channels=1, pretrained=None).eval()
    validate = bench.validator(DATASET, sigma=SIGMA)
    times = {"validator": [], "hand": []}
    for _ in range(REPEATS + 1):  # the first round warms up, untimed
        for name, call in (("validator", lambda: validate(model)), ("hand", lambda: hand_loop(model, validate.batches))):
            start = time.perf_counter()
            value = call()
            times[name].append((time.perf_counter() - start, value))
    median = {name: statistics.median(t for t, _ in runs[1:]) for name, runs in times.items()}
    values = {name: runs[-1][1] for name, runs in times.items()}
    ratio = median["validator"] / median["hand"]
    body = (f"## Validator cost: `bench.validator` vs a hand-written loop (`benchmarks/validator_cost.py`)\n\n"
            f"deepinv DnCNN (17 layers, random weights) on {validate.images} images of `{DATASET}` at "
            f"sigma = 25/255, medians of {REPEATS} alternating calls; goal (issue 28): <= 1.1x.\n\n"
            f"| | seconds per call | mean PSNR (dB) |\n|---|---|---|\n"
            f"| hand loop (denoise, clamp, PSNR) | {median['hand']:.3f} | {values['hand']:.6f} |\n"
            f"| `v(model)` (the grid's cell code: copies, output checks, 8-bit-aware clamp, metric) | "
            f"{median['validator']:.3f} | {values['validator']:.6f} |\n\n"
            f"Ratio: **{ratio:.3f}x**. The two means differ by {abs(values['hand'] - values['validator']):.2e} dB.")
    update_section("validator_cost", body)
    print(body)


if __name__ == "__main__":
    main()
