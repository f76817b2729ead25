"""score-unet on this CPU: training images per second, and samples per second per sampler,
all chains as one batch against one chain at a time.

Training: ``bench.training.loop.train`` on the same 28x28 images for score-unet and, as
the reference in the same process, the seed's conv-dae-sigma (same batch size); the
ratio says how much dearer the score model is per image. Sampling: each sampler
that needs only D (with score-unet as D; speed does not depend on the weights)
runs ``--chains`` chains as one batch, then ``--loop-chains`` chains one at a
time through the same ``run_chains``; samples per second and NFE per sample. One
torch thread by default (on a CPU shared with other jobs, two threads swing
tenfold).

    python benchmarks/score_sampling.py [--data-root DIR] [--chains 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

from bench.sampling.samplers import initial_state, make_generator, run_chains  # noqa: E402
from bench.sampling.score import as_score  # noqa: E402
from bench.training.loop import TrainOptions, seeded_init, train  # noqa: E402
from bench_plugins.learned import ConvDAE  # noqa: E402
from bench_plugins.samplers import DDIM, AnnealedLangevin, EDMHeun, EDMStochastic  # noqa: E402
from bench_plugins.score_unet import score_unet  # noqa: E402

SIGMA_MAX = 20.0
NOTE = ("On a CPU one 28x28 image through the U-Net already keeps a thread busy, so batching "
        "chains gains little here (1-3x; the MLP DAE gains 13x, `benchmarks/mnist_chains.py`); on a "
        "GPU it is the whole speed-up. Rates measured on a shared CPU swing up to 2x between runs "
        "(compare `edm-heun` and `edm-stochastic`, equal NFE): read the ratios, loosely.")
SAMPLERS = {
    "edm-heun[steps=18]": EDMHeun(steps=18, sigma_max=SIGMA_MAX),
    "edm-stochastic[steps=18]": EDMStochastic(steps=18, sigma_max=SIGMA_MAX),
    "ddim[steps=18]": DDIM(steps=18, sigma_max=SIGMA_MAX),
    "annealed-langevin[levels=20,steps=5]": AnnealedLangevin(sigma=0.01, sigma_max=SIGMA_MAX, levels=20,
                                                             steps=5),
}


def images(data_root: str | None, n: int) -> tuple[torch.Tensor, str]:
    if data_root:
        from bench.data.labelled import load_labelled

        return load_labelled("fashion-mnist", data_root, "train")[0][:n], f"Fashion-MNIST train[:{n}]"
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)), f"{n} uniform 28x28"


def training_rate(model, x: torch.Tensor, noise: str, batch: int) -> float:
    options = TrainOptions(epochs=1, batch_size=batch, noise=noise, val_fraction=0)
    return train(model, x, options, torch.device("cpu"), quiet=True).images_per_second


def sampling_rate(sampler, model, data: torch.Tensor, chains: int) -> tuple[float, int]:
    """(samples per second, NFE per sample) for ``chains`` chains advanced together."""
    generator = make_generator(0, "cpu")
    x0 = initial_state("noise", chains, data, sampler.start_sigma, generator)
    start = time.perf_counter()
    result = run_chains(sampler, as_score(model), x0, generator)
    return chains / (time.perf_counter() - start), result.nfe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="folder with FashionMNIST/raw/*-ubyte (else random images)")
    parser.add_argument("--train-images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--loop-chains", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, what = images(args.data_root, args.train_images)
    model = seeded_init(lambda: score_unet(1), 0)
    unet = training_rate(model, x, "gaussian:0.01:diameter:log", args.batch)
    conv = training_rate(seeded_init(lambda: ConvDAE(1, sigma_aware=True), 0), x, "gaussian:0:0.25", args.batch)
    lines = [f"Training on {what}, batch {args.batch}, {args.threads} torch thread(s), one epoch each "
             "(images per second, higher is better):", "",
             "| model | parameters | images/s | relative to conv-dae-sigma |", "|---|---:|---:|---:|",
             f"| score-unet | {sum(p.numel() for p in model.parameters()):,} | {unet:,.0f} | {unet / conv:.2f}x |",
             f"| conv-dae-sigma (reference) | "
             f"{sum(p.numel() for p in ConvDAE(1, sigma_aware=True).parameters()):,} | {conv:,.0f} | 1x |",
             "", f"Sampling with score-unet as D, sigma_max = {SIGMA_MAX:g}: samples per second, "
             f"{args.chains} chains as one batch against {args.loop_chains} chains one at a time:", "",
             "| sampler | NFE | one chain at a time | batched | speed-up |", "|---|---:|---:|---:|---:|"]
    print("\n".join(lines), flush=True)
    model.eval()
    for name, sampler in SAMPLERS.items():
        fast, nfe = sampling_rate(sampler, model, x, args.chains)
        slow = args.loop_chains / sum(1 / sampling_rate(sampler, model, x, 1)[0]
                                      for _ in range(args.loop_chains))
        lines.append(f"| {name} | {nfe} | {slow:.2f} | {fast:.2f} | {fast / slow:.0f}x |")
        print(lines[-1], flush=True)
    lines += ["", NOTE, "", "Run: `python benchmarks/score_sampling.py --data-root DIR`."]
    update_section("score_sampling", "## score-unet: training and sampling throughput "
                                     "(`benchmarks/score_sampling.py`)\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
