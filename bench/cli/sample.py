"""``denoise-bench sample``: draw samples with a score-based sampler and score them.

Any registered denoiser is the score model (Tweedie). The samples go to a
folder (tensor file, PNG grid or 2-D scatter, metrics JSON) and the sample
metrics into the store as one cell, so ``leaderboard --metric mmd`` ranks them.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench import sample_metrics
from bench.cli.fetch import add_data_arguments
from bench.config import DEFAULT_STORE
from bench.device import resolve_device
from bench.errors import Skip, UsageError
from bench.grid import Cell, model_spec
from bench.outputs import to_uint8
from bench.plugins import error_line, get_plugin_set, source_fingerprint
from bench.provenance import versions
from bench.registry import Registry
from bench.sampling import INITS, SampleResult, initial_state, make_generator, run_chains, stack_items
from bench.score import as_score
from bench.seeding import identity_hash
from bench.specs import Spec, parse_spec
from bench.store import CellResult, Store

#: Flags that set sampler parameters, by parameter name.
SAMPLER_FLAGS = {"steps": "steps", "step_size": "step_size", "sigma": "sigma"}
#: The one "image id" a sampler cell's metrics are stored under.
SCORE_ID = "samples"
GRID_MAX = 64


def configure(parser) -> None:
    parser.description = ("Sample with SAMPLER using DENOISER as the score model (Tweedie), write the "
                    "samples and record their metrics in the store.")
    parser.add_argument("sampler", help="gradient-ascent, langevin, annealed-langevin[...]")
    parser.add_argument("--score", required=True, metavar="DENOISER",
                        help="denoiser used as score model: name or name[key=value,...]")
    parser.add_argument("--dataset", required=True, metavar="NAME", help="e.g. gmm2d, gmm-images")
    parser.add_argument("--n", type=int, default=64, help="number of chains / samples (default 64)")
    parser.add_argument("--steps", type=int, help="steps (per noise level for annealed-langevin)")
    parser.add_argument("--step-size", type=float, help="step size (at the smallest sigma)")
    parser.add_argument("--sigma", type=float, help="noise level of the score (the smallest one)")
    parser.add_argument("--init", choices=INITS, default="noise",
                        help="start from noise or from noisy data items (default noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-n", type=int, default=1000,
                        help="true samples drawn as reference when the truth is known (default 1000)")
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")
    parser.add_argument("--output", help="folder for the samples (default results/samples/<run>)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add_data_arguments(parser)
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH",
                        help="load a local plugin file (repeatable)")
    parser.set_defaults(func=main)


def sampler_spec(text: str, args) -> Spec:
    """The sampler spec with --steps/--step-size/--sigma merged in (flags win)."""
    spec = parse_spec(text, "sampler")
    flags = {param: getattr(args, flag) for flag, param in SAMPLER_FLAGS.items()
             if getattr(args, flag) is not None}
    return Spec(spec.name, {**spec.params, **flags})


def accepts(factory, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def load_data(registry: Registry, spec: Spec, data_root: str | None):
    """The dataset as given, and the training data (its split=train when it has splits)."""
    data = registry.load_dataset(spec, data_root)
    entry = registry.get("datasets", spec.name)
    if accepts(entry.factory, "split") and spec.params.get("split") != "train":
        train_params = {k: v for k, v in spec.params.items() if k not in ("split", "n")}
        return data, registry.load_dataset(Spec(spec.name, {**train_params, "split": "train"}), data_root)
    return data, data


def save_grid(path: Path, samples: torch.Tensor) -> None:
    from skimage import io
    from skimage.util import montage

    tiles = np.stack([to_uint8(image) for image in samples[:GRID_MAX].float()])
    grid = montage(tiles, padding_width=1, fill=255, channel_axis=-1 if tiles.ndim == 4 else None)
    io.imsave(path, grid.astype(np.uint8), check_contrast=False)


def draw_scatter(axes, samples: torch.Tensor, truth, training: torch.Tensor, title: str) -> None:
    """2-D samples over the true density (or over the training points when the truth is unknown)."""
    points = samples.float().cpu().numpy()
    ref = training.float().cpu().numpy()
    low, high = ref.min(0) - 0.75, ref.max(0) + 0.75
    if truth is not None:
        gx, gy = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
        grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1))
        density = truth.log_prob(grid).exp().reshape(gx.shape).numpy()
        axes.contourf(gx, gy, density, levels=20, cmap="Blues")
    else:
        axes.scatter(ref[:, 0], ref[:, 1], s=2, c="lightgray")
    finite = np.isfinite(points).all(1)
    axes.scatter(points[finite, 0], points[finite, 1], s=4, c="crimson", linewidths=0)
    axes.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), aspect="equal", xticks=[], yticks=[])
    axes.set_title(title, fontsize=7)


def save_scatter(path: Path, samples: torch.Tensor, truth, training: torch.Tensor, title: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 4.2), dpi=110)
    draw_scatter(figure.subplots(), samples, truth, training, title)
    figure.tight_layout()
    figure.savefig(path)


def write_outputs(folder: Path, result: SampleResult, metrics: dict, meta: dict,
                  truth, training: torch.Tensor) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    samples = result.samples.cpu()
    written = [folder / "samples.pt", folder / "metrics.json"]
    torch.save({"samples": samples, **meta, "status": result.status, "metrics": metrics}, written[0])
    written[1].write_text(json.dumps({**meta, "status": result.status, "error": result.message,
                                      "metrics": metrics}, indent=2) + "\n")
    if samples.dim() == 4:
        written.append(folder / "grid.png")
        save_grid(written[-1], samples)
    elif samples.dim() == 2 and samples.shape[1] == 2:
        written.append(folder / "scatter.png")
        save_scatter(written[-1], samples, truth, training, f"{meta['sampler']}\nscore={meta['score']}")
    return written


def main(args) -> int:
    if args.n < 2:
        raise UsageError(f"--n must be >= 2 (metrics compare samples), got {args.n}")
    if args.reference_n < 2:
        raise UsageError(f"--reference-n must be >= 2, got {args.reference_n}")
    plugins = get_plugin_set(args.plugin)
    broken = plugins.broken_local()
    if broken:
        raise UsageError(f"plugin {broken[0].source} failed to load: {broken[0].error}")
    registry = Registry(plugins)

    spec = sampler_spec(args.sampler, args)
    sampler_entry = registry.get("samplers", spec.name)
    sampler = registry.build("samplers", spec)
    score_spec = parse_spec(args.score, "denoiser")
    score_entry = registry.get("denoisers", score_spec.name)
    if sampler.requires_sigma_aware and not score_entry.metadata.get("sigma_aware"):
        raise UsageError(f"{sampler.name} evaluates the score at many noise levels, but "
                         f"{score_spec.label!r} is not sigma-aware (it ignores sigma); use langevin "
                         "or gradient-ascent at one --sigma")
    dataset_spec = parse_spec(args.dataset, "dataset")
    dataset_label = dataset_spec.label
    data, training_set = load_data(registry, dataset_spec, args.data_root)
    items = stack_items(data, dataset_label)
    training = stack_items(training_set, dataset_label)
    truth = getattr(data, "truth", None)
    device = resolve_device(args.device)
    built = model_spec(score_spec, score_entry, dataset_label)
    model = build_error = None
    try:
        model = registry.build("denoisers", built)
    except Skip as exc:
        raise UsageError(f"score model {built.label!r} unavailable: {exc}") from None
    except UsageError:
        raise
    except Exception as exc:  # a crashing plugin fails this cell, recorded with its error
        build_error = f"building {built.label} failed: {error_line(exc)}"

    dataset_entry = registry.get("datasets", dataset_spec.name)
    score_label = score_spec.label
    meta = {"sampler": sampler.label, "score": score_label, "dataset": dataset_label,
            "init": args.init, "n": args.n, "seed": args.seed}
    key = identity_hash({**meta, "reference_n": args.reference_n if truth is not None else None,
                   "fingerprints": [sampler_entry.fingerprint, score_entry.fingerprint,
                                    dataset_entry.fingerprint, source_fingerprint(sample_metrics)],
                   "data_root": args.data_root if dataset_entry.metadata.get("uses_data_root") else None})
    cell = Cell(dataset_label, f"sample:{args.init}", float(args.n),
                f"{sampler.label} score={score_label}", 0, score_label, "sample", key)
    folder = Path(args.output) if args.output else Path(args.store).parent / "samples" / f"{sampler.name}-{key[:10]}"

    with Store(args.store) as store:
        for name, info in sample_metrics.METRICS.items():
            store.set_metric_info(name, info.higher_is_better)
        run_id = store.start_run({"command": "sample", **meta, "device": str(device)},
                                 versions(plugins), str(device), sys.argv)
        if build_error:
            result, metrics, cell_result = None, {}, CellResult("error", build_error)
        else:
            result, metrics, cell_result = sample_and_score(sampler, model, items, training, truth,
                                                            args, device)
        if result is not None:
            written = write_outputs(folder, result, metrics, meta, truth, training)
            print(f"samples: {', '.join(str(p) for p in written)}", file=sys.stderr)
        store.record_cell(run_id, cell, args.seed, "default", list(metrics), str(device), cell_result)
        store.finish_run(run_id, "done" if cell_result.status == "done" else "failed")

    for name, value in metrics.items():
        print(f"{name:>20}  {value:.6g}")
    if cell_result.status != "done":
        print(f"denoise-bench: {cell.denoiser} on {dataset_label}: {cell_result.status}: "
              f"{cell_result.error}; recorded in {args.store}", file=sys.stderr)
        return 1
    print(f"recorded in {args.store}: `denoise-bench leaderboard --store {args.store} --metric mmd`",
          file=sys.stderr)
    return 0


def sample_and_score(sampler, model, items: torch.Tensor, training: torch.Tensor, truth, args,
                     device: torch.device) -> tuple[SampleResult | None, dict, CellResult]:
    """Run the chains and the metrics; a crash or a NaN becomes the cell's status."""
    try:
        if isinstance(model, torch.nn.Module):
            model = model.to(device).eval()
        generator = make_generator(args.seed, device)
        x0 = initial_state(args.init, args.n, items, sampler.start_sigma, generator)
        result = run_chains(sampler, as_score(model), x0, generator)
    except Exception as exc:
        return None, {}, CellResult("error", error_line(exc))
    if result.status != "done":
        return result, {}, CellResult(result.status, result.message, seconds=result.seconds,
                                      denoise_seconds=result.seconds)
    try:
        reference = items
        if truth is not None:
            reference = truth.sample(args.reference_n, torch.Generator().manual_seed(args.seed + 1))
        metrics = sample_metrics.evaluate(result.samples.cpu(), reference, truth, training)
    except Exception as exc:
        return result, {}, CellResult("error", f"metrics: {error_line(exc)}", seconds=result.seconds)
    return result, metrics, CellResult("done", seconds=result.seconds, denoise_seconds=result.seconds,
                                       scores={SCORE_ID: metrics})
