"""Batched chains against one chain at a time: Langevin steps per second on this CPU.

The reference is the classic example's loop: for each chain, for each step,
``x = x + h * score(x, s) + sqrt(2 h) * z`` on a single point. The batched run
advances all chains together with ``bench.sampling.samplers.run_chains``. Both use the
same score model, in the same process; the ratio is the speed-up. Chains are
independent, so the loop is timed on ``--loop-chains`` of them and reported per
chain-step. Each torch thread count given is measured in turn (default 1: on a
CPU shared with other jobs, multi-threaded timings of small ops swing tenfold).

    python benchmarks/sampler_throughput.py [--chains 256] [--steps 100] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from bench.device import synchronize
from bench.sampling.samplers import initial_state, make_generator, run_chains
from bench.sampling.score import as_score
from bench_plugins import gmm
from bench_plugins.samplers import Langevin
from results_file import update_section

SIGMA, STEP = 0.02, 5e-4


def one_at_a_time(score, x0: torch.Tensor, steps: int) -> float:
    """Seconds for the classic loop over chains, then steps, one point per score call."""
    generator = make_generator(0, x0.device)
    sigma = torch.full((1,), SIGMA, device=x0.device)
    synchronize(x0.device)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(len(x0)):
            x = x0[i:i + 1]
            for _ in range(steps):
                noise = torch.randn(x.shape, generator=generator, device=x0.device)
                x = x + STEP * score(x, sigma) + math.sqrt(2 * STEP) * noise
    synchronize(x0.device)
    return time.perf_counter() - start


def batched(score, x0: torch.Tensor, steps: int) -> float:
    sampler = Langevin(sigma=SIGMA, step_size=STEP, steps=steps)
    synchronize(x0.device)
    start = time.perf_counter()
    result = run_chains(sampler, score, x0, make_generator(0, x0.device))
    synchronize(x0.device)
    elapsed = time.perf_counter() - start
    assert result.status == "done", result.message
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--loop-chains", type=int, default=32, help="chains timed in the loop")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    models = {
        "gmm2d, oracle (exact score)": ("gmm2d", gmm.oracle("gmm2d")),
        "gmm2d, gmm-mlp (Tweedie; 200 training steps)": ("gmm2d", gmm.gmm_mlp("gmm2d", steps=200)),
        "gmm-images 16x16, oracle": ("gmm-images", gmm.oracle("gmm-images")),
    }
    lines = [f"Langevin, {args.chains} chains x {args.steps} steps; chain-steps per second "
             f"(higher is better); the loop timed on {args.loop_chains} chains.", "",
             "| score model | torch threads | one chain at a time | batched | speed-up |",
             "|---|---:|---:|---:|---:|"]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (dataset, model) in models.items():
            data = gmm.gmm2d().points if dataset == "gmm2d" else torch.stack(gmm.gmm_images().images)
            x0 = initial_state("noise", args.chains, data, SIGMA, make_generator(0, "cpu"))
            score = as_score(model)
            batched(score, x0, 5)  # warm-up
            slow = args.loop_chains * args.steps / one_at_a_time(score, x0[:args.loop_chains], args.steps)
            fast = args.chains * args.steps / batched(score, x0, args.steps)
            lines.append(f"| {name} | {threads} | {slow:,.0f} | {fast:,.0f} | {fast / slow:.0f}x |")
            print(lines[-1], flush=True)
    lines += ["", "Goal: at least 20x for 256 chains. Run: `python benchmarks/sampler_throughput.py`."]
    update_section("sampler_throughput", "## Sampler throughput\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
