"""Seconds per BSD68-sized image (481x321) for each authors' MatConvNet row, against ``dncnn-s``.

The authors' files (``../shared/datasets``) are served by a local HTTP server,
fetched into a fresh data folder (SHA-256 checked) and their converted caches
removed; then, in this process: the first load of each row (reading the .mat,
converting, writing the cache) and a second load (the cached state dict); the
denoise time ``bench.grid.runner.run_cell`` records for each row on the same
noisy images (centred 321x481 crops of scikit-image's camera and moon, gray;
astronaut and coffee, colour; Gaussian 25/255, paper protocol), repetitions
interleaved with the order alternating, median kept, ratio to ``dncnn-s`` of the
same data; beside it the same network called with its weights in PyTorch's
default layout (what every row ran before the channels-last layout), with the
largest output difference and the PSNR both ways; and where one call's time goes
(``torch.profiler``: the 64->64 convolutions, the other convolutions, the rest).

    .venv/bin/python benchmarks/authors_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from authors_rows import mirror_tree  # noqa: E402
from published_set12 import fetched_offline  # noqa: E402
from results_file import update_section  # noqa: E402

from bench.data import fetching  # noqa: E402
from bench.data.datasets import ImageSet, skimage_color, skimage_gray  # noqa: E402
from bench.grid.cells import Denoiser, model_spec  # noqa: E402
from bench.grid.inputs import make_batches  # noqa: E402
from bench.grid.metrics import psnr  # noqa: E402
from bench.grid.runner import run_cell  # noqa: E402
from bench.grid.scoring import clamp_for_scoring  # noqa: E402
from bench.noise.degradations import GaussianDegradation  # noqa: E402
from bench.plugins import get_plugin_set  # noqa: E402
from bench.registry import Registry  # noqa: E402
from bench.specs import Spec  # noqa: E402

SIGMA = 25 / 255
HEIGHT, WIDTH = 321, 481  # BSD68's landscape images
ROWS = ("dncnn-s", "dncnn-b", "fdncnn", "ffdnet")
#: data label -> (images, their channels)
SETS = {"gray": (lambda: skimage_gray(), ("camera", "moon")),
        "colour": (lambda: skimage_color(), ("astronaut", "coffee"))}
FETCHES = (["ffdnet", "fdncnn[color=false]", "fdncnn[color=true]", "dncnn-b", "dncnn-s[level=25/255]"],
           ["dncnn-s[level=25/255,color=true]"])


def bsd68_sized(images: ImageSet, names: tuple[str, ...]) -> ImageSet:
    """Centred 321x481 crops of the named images."""
    crops = []
    for name in names:
        image = images.images[images.ids.index(name)]
        top, left = (image.shape[1] - HEIGHT) // 2, (image.shape[2] - WIDTH) // 2
        crops.append(image[:, top:top + HEIGHT, left:left + WIDTH].contiguous())
    return ImageSet(list(names), crops)


def build(registry: Registry, row: str, channels: int) -> Denoiser:
    entry = registry.get("denoisers", row)
    spec = model_spec(Spec(row), entry, "bsd68-sized", "gaussian", SIGMA, channels)
    return Denoiser(Spec(row), entry, registry.build("denoisers", spec))


def loading(registry: Registry, data: Path) -> list[dict]:
    """First load (convert and cache) and second load (from the cache) of each row, gray and colour."""
    for cache in data.rglob("*.pt"):
        cache.unlink()
    rows = []
    for label, channels in (("gray", 1), ("colour", 3)):
        for row in ROWS:
            times = []
            for _ in range(2):
                start = time.perf_counter()
                build(registry, row, channels)
                times.append(time.perf_counter() - start)
            rows.append({"data": label, "row": row, "first load s (convert)": times[0],
                         "second load s (cached)": times[1]})
    return rows


def plain_layout(model: torch.nn.Module) -> torch.nn.Module:
    """The same network with its weights in PyTorch's default layout, called directly."""
    network = copy.deepcopy(model.network).to(memory_format=torch.contiguous_format)
    return lambda y, sigma: network(y, sigma)


def timing(registry: Registry, repeats: int) -> list[dict]:
    metrics = {"psnr": (psnr, registry.get("metrics", "psnr"))}
    rows = []
    for label, (load, names) in SETS.items():
        images = bsd68_sized(load(), names)
        channels = images.images[0].shape[0]
        batches = make_batches(images, f"bsd68-sized-{label}", GaussianDegradation(), SIGMA, 0, 0, 1,
                               torch.device("cpu"), "paper")
        built = {row: build(registry, row, channels) for row in ROWS}
        plain = {row: plain_layout(d.model) for row, d in built.items()}
        harness = {row: [] for row in ROWS}
        before = {row: [] for row in ROWS}
        scores = {}

        def run_harness(row):
            result = run_cell(built[row], "sigma", batches, metrics, "paper", torch.device("cpu"))
            assert result.status == "done", result.error
            harness[row].append(result.denoise_seconds / len(images.ids))
            scores[row] = statistics.mean(s["psnr"] for s in result.scores.values())

        def run_plain(row):
            start = time.perf_counter()
            with torch.no_grad():
                for batch in batches:
                    plain[row](batch.y.clone(), batch.sigma.clone())
            before[row].append((time.perf_counter() - start) / len(images.ids))

        for row in ROWS:  # warm-up: oneDNN primitives, the layout change
            run_harness(row), run_plain(row)
        harness, before = {row: [] for row in ROWS}, {row: [] for row in ROWS}
        for repeat in range(repeats):
            order = ROWS if repeat % 2 == 0 else ROWS[::-1]
            for row in order:
                for step in ((run_harness, run_plain) if repeat % 2 == 0 else (run_plain, run_harness)):
                    step(row)
        reference = statistics.median(harness["dncnn-s"])
        for row in ROWS:
            with torch.no_grad():
                y, sigma = batches[0].y, batches[0].sigma
                out, old = built[row].model(y.clone(), sigma.clone()), plain[row](y.clone(), sigma.clone())
                old_psnr = statistics.mean(psnr(clamp_for_scoring(plain[row](b.y.clone(), b.sigma.clone()), "paper"),
                                                clamp_for_scoring(b.x, "paper")).item() for b in batches)
            median = statistics.median(harness[row])
            rows.append({"data": label, "row": row, "convs": conv_count(built[row].model),
                         "s / image": median, "vs dncnn-s": median / reference,
                         "default layout s / image": statistics.median(before[row]),
                         "speed-up": statistics.median(before[row]) / median,
                         "max |difference|": (out - old).abs().max().item(),
                         "PSNR": f"{scores[row]:.3f}", "PSNR default layout": f"{old_psnr:.3f}"})
            print(rows[-1], flush=True)
    return rows


def conv_count(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def breakdown(registry: Registry) -> list[dict]:
    """Where one gray call's self CPU time goes, by operator and convolution shape."""
    from torch.profiler import ProfilerActivity, profile

    images = bsd68_sized(skimage_gray(), ("camera",))
    batch, = make_batches(images, "bsd68-sized-gray", GaussianDegradation(), SIGMA, 0, 0, 1,
                          torch.device("cpu"), "paper")
    rows = []
    for row in ROWS:
        model = build(registry, row, 1).model
        with torch.no_grad():
            model(batch.y, batch.sigma)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                model(batch.y, batch.sigma)
        parts = {"64->64 convs": 0.0, "other convs": 0.0, "ReLU": 0.0, "rest": 0.0}
        for event in prof.key_averages(group_by_input_shape=True):
            seconds = event.self_cpu_time_total / 1e6
            if "convolution" in event.key:
                wide = len(event.input_shapes) > 1 and event.input_shapes[1][:2] in ([64, 64], [96, 96])
                parts["64->64 convs" if wide else "other convs"] += seconds
            elif "relu" in event.key or "clamp_min" in event.key:
                parts["ReLU"] += seconds
            else:
                parts["rest"] += seconds
        total = sum(parts.values())
        rows.append({"row": row, "total s": total, **{k: f"{100 * v / total:.0f}%" for k, v in parts.items()}})
    return rows


def table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows).astype(object)
    return frame.map(lambda v: f"{v:.3g}" if isinstance(v, float) else v).to_markdown(
        index=False, disable_numparse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="", help="a line added to the section (e.g. what shared the CPU)")
    args = parser.parse_args()
    registry = Registry(get_plugin_set())
    with fetched_offline(mirror_tree, *FETCHES) as data:
        with fetching.using(fetching.FetchSettings(data, offline=True, progress=False)):
            loads = loading(registry, data)
            speed = timing(registry, args.repeats)
            parts = breakdown(registry)
    body = ("### The authors' rows on BSD68-sized images (`benchmarks/authors_speed.py`)\n\n"
            f"Centred 321x481 crops (2 gray, 2 colour scikit-image images), Gaussian 25/255, paper "
            f"protocol, batch 1, CPU. `s / image` = the denoise time `run_cell` records, median of "
            f"{args.repeats} interleaved repetitions (order alternating); `vs dncnn-s` = against "
            "DnCNN-S (CDnCNN-S on colour) on the same images in the same process. `default layout` = "
            "the same network with its weights in PyTorch's default (NCHW) layout, as every row ran "
            "before; `max |difference|` = largest output difference between the two on the first "
            "image; PSNR (scored as the paper protocol scores: clamped, 8-bit) averaged over the images, both ways.\n\n" + table(speed)
            + "\n\nLoading (a new data folder, converted caches removed): the first load reads the "
              ".mat and converts it, the second loads the cached state dict.\n\n" + table(loads)
            + "\n\nWhere one gray call's self CPU time goes (`torch.profiler`, channels-last weights):\n\n"
            + table(parts) + f"\n\n{args.note}")
    update_section("authors-speed", body)
    print(body)


if __name__ == "__main__":
    main()
