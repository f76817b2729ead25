"""1000 MNIST-shaped Langevin chains as one batch against one chain at a time: samples per second.

Score models: the classic MLP DAE (784-128-64-10 and back) and the small conv
DAE, both through Tweedie, randomly initialised (seeded; the timing does not
depend on the weights). The reference is ``sampler_throughput.one_at_a_time``,
the classic example's loop over chains then steps, timed on ``--loop-chains``
chains; the batched run is ``bench.sampling.samplers.run_chains`` on all chains. Samples
per second are for chains of ``--chain-length`` steps (the study's 1000),
extrapolated from chain-steps per second over ``--steps`` timed steps.

    python benchmarks/mnist_chains.py [--chains 1000] [--steps 20] [--threads 1 2] [--device cuda]
"""

from __future__ import annotations

import argparse

import torch

from bench.device import resolve_device
from bench.sampling.samplers import initial_state, make_generator
from bench.sampling.score import as_score
from bench.training.loop import seeded_init
from bench_plugins.learned import ConvDAE, MLPDAE
from results_file import update_section
from sampler_throughput import SIGMA, batched, one_at_a_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20, help="steps timed per measurement")
    parser.add_argument("--loop-chains", type=int, default=10, help="chains timed one at a time")
    parser.add_argument("--chain-length", type=int, default=1000, help="steps per sample, for samples/s")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (its own RESULTS.md section)")
    parser.add_argument("--note", default="", help="a line about the machine's load, kept in RESULTS.md")
    args = parser.parse_args()
    device = resolve_device(args.device)
    models = {
        "mlp-dae (784-128-64-10, 0.2M parameters)": seeded_init(lambda: MLPDAE(1, (28, 28)), 0).eval(),
        "conv-dae-sigma (width 32)": seeded_init(lambda: ConvDAE(1, sigma_aware=True), 0).eval(),
    }
    models = {name: model.to(device) for name, model in models.items()}
    data = torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
    lines = [f"Langevin on 1x28x28 images, {args.chains} chains as one batch against one chain at a "
             f"time (the loop timed on {args.loop_chains} chains); {args.steps} steps timed; samples "
             f"per second for {args.chain_length}-step chains (higher is better).", "",
             "| score model | torch threads | one at a time: samples/s | batched: samples/s | speed-up |",
             "|---|---:|---:|---:|---:|"]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, model in models.items():
            x0 = initial_state("noise", args.chains, data, SIGMA, make_generator(0, device))
            score = as_score(model)
            batched(score, x0, 2)  # warm-up
            slow = args.loop_chains * args.steps / one_at_a_time(score, x0[:args.loop_chains], args.steps)
            fast = args.chains * args.steps / batched(score, x0, args.steps)
            lines.append(f"| {name} | {threads} | {slow / args.chain_length:,.2f} | "
                         f"{fast / args.chain_length:,.1f} | {fast / slow:.0f}x |")
            print(lines[-1], flush=True)
    lines += ["", "On a CPU batching pays where one chain underuses the hardware: the MLP's "
              "matrix-vector products become matrix products; the conv DAE already costs the same "
              "per pixel at batch 1, so only call overheads go. A GPU is where 1000 chains in one "
              "batch pay most.",
              "", "Run: `cd benchmarks && python mnist_chains.py`." + (f" {args.note}" if args.note else "")]
    on = "" if device.type == "cpu" else f" on {torch.cuda.get_device_name(device)}"
    section = "mnist_chains" if device.type == "cpu" else f"mnist_chains_{device.type}"
    update_section(section, f"## 1000 MNIST chains{on}: batched against one at a time\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
