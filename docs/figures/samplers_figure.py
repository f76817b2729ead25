"""Panel figure of 2-D sampler cells over the true density.

    python docs/figures/samplers_figure.py OUT.png DIR [DIR ...]

Each DIR is a sampler cell's folder, ``<store folder>/samples/<cell key>/``, as
``denoise-bench sample`` (or a run config's ``[[sampling]]`` table) writes it.
The first panel shows true samples of the first run's dataset; each DIR adds a
panel titled with its sampler, score model and a few of its metrics.
"""

from __future__ import annotations

import sys

import torch
from matplotlib.figure import Figure

from bench.sampling.figures import draw_scatter
from bench.specs import parse_spec
from bench_plugins.gmm import gmm2d, truth_of


def title(run: dict) -> str:
    metrics = run["metrics"]
    name = parse_spec(run["sampler"]).name
    return (f"{name}, score={run['score']}\nMMD {metrics['mmd']:.1e}, "
            f"weights TV {metrics['mode_weight_error']:.3f}")


def main(out: str, folders: list[str]) -> None:
    runs = [torch.load(f"{folder}/samples.pt") for folder in folders]
    dataset = runs[0]["dataset"]
    truth = truth_of(dataset)
    training = gmm2d(**{k: v for k, v in parse_spec(dataset).params.items() if k != "n"}).points
    panels = [(truth.sample(len(runs[0]["samples"]), torch.Generator().manual_seed(1)),
               f"true samples ({dataset})\n")] + [(run["samples"], title(run)) for run in runs]
    figure = Figure(figsize=(2.3 * len(panels), 2.8), dpi=100)
    for axes, (samples, label) in zip(figure.subplots(1, len(panels)), panels):
        draw_scatter(axes, samples, truth, training, label)
    figure.tight_layout()
    figure.savefig(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
