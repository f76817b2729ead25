"""The cost of keeping an average of the weights (``TrainOptions.ema``) while training score-unet.

The same seeded training (score-unet, 28x28 gray images, batch 64, EDM's log-normal levels)
with and without ``ema=0.2``, interleaved in this process, best of ``--repeats``; the ratio of
training images per second is the figure. The images are random (the cost does not depend on
what they show).

    .venv/bin/python benchmarks/ema_cost.py [--images 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

from bench.training.loop import TrainOptions, train  # noqa: E402
from bench_plugins.score_unet import score_unet  # noqa: E402


def images_per_second(images: torch.Tensor, options: TrainOptions) -> float:
    model = score_unet(1)
    start = time.perf_counter()
    train(model, images, options, torch.device("cpu"), quiet=True)
    return len(images) * (1 - options.val_fraction) * options.epochs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = torch.rand(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    base = TrainOptions(noise="gaussian:0.01:10:lognormal", epochs=1, batch_size=64, lr=2e-3, seed=0,
                        val_fraction=0.02, hflip=False)
    rates = {"last weights": [], "ema=0.2": []}
    for _ in range(args.repeats):
        rates["last weights"].append(images_per_second(images, base))
        rates["ema=0.2"].append(images_per_second(images, base.with_overrides(ema=0.2)))
    best = {name: max(values) for name, values in rates.items()}
    body = ("### The weight average's cost (`benchmarks/ema_cost.py`)\n\n"
            f"score-unet trained one epoch on {args.images} random 28x28 images (batch 64, log-normal levels, "
            f"CPU, {torch.get_num_threads()} threads), with and without `ema=0.2`, interleaved, best of "
            f"{args.repeats}.\n\n| weights kept | training images / s | vs last weights |\n|---|---|---|\n"
            + "\n".join(f"| {name} | {rate:.0f} | {rate / best['last weights']:.3f} |" for name, rate in best.items()))
    update_section("ema-cost", body)
    print(body)


if __name__ == "__main__":
    main()
