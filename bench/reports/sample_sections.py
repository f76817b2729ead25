"""The study's report sections: the samplers' table, sample grids per score model, denoising strips.

Everything comes from the store and the files beside it (saved samples and
denoised outputs); nothing samples or denoises again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage import io as skio

from bench.data.fetching import load_checkpoint
from bench.errors import UsageError
from bench.grid.sampler_runner import samples_dir
from bench.registry import Registry
from bench.reports import figures, sample_tables
from bench.reports.html_parts import Section, image, save_figure
from bench.sampling import figures as sample_figures
from bench.store.database import Store

#: Metrics of the compact samplers' table, in this order, when present.
TABLE_METRICS = ("classifier_fd", "classes_present", "confidence", "label_kl", "mmd", "memorised",
                 "diversity", "modes_covered", "nfe")
#: The metric of the FD-against-NFE figure, by preference.
CURVE_METRICS = ("classifier_fd", "mmd")


def compact_table(board: pd.DataFrame, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, score, sampler, chains), one column per metric: mean [CI low, high];
    with ``costs`` (``sample_tables.sample_costs``), the sampling seconds per sample too.
    Rows are ordered by chain count: metrics compare only within one count."""
    board = board.assign(text=[f"{m:.4g}" if n < 2 else f"{m:.4g} [{lo:.3g}, {hi:.3g}]"
                               for m, n, lo, hi in zip(board["mean"], board["n"], board["ci95_low"],
                                                       board["ci95_high"])])
    table = board.pivot_table(index=["dataset", "chains", "score", "sampler", "n"], columns="metric",
                              values="text", aggfunc="first")
    order = [m for m in TABLE_METRICS if m in table.columns] or list(table.columns)
    table = table[order].reset_index().rename(columns={"n": "repetitions"})
    if costs is not None and not costs.empty:
        seconds = costs.set_index(["dataset", "score", "sampler", "chains"])["seconds_per_sample"]
        table["s/sample"] = [f"{seconds.get((d, sc, sa, c), float('nan')):.3g}" for d, sc, sa, c in
                             zip(table["dataset"], table["score"], table["sampler"], table["chains"])]
    return table


def sampler_family(sampler: str) -> str:
    """A sampler label without its step count: the points of one curve differ only in steps."""
    name, _, params = sampler.partition("[")
    kept = [p for p in params.rstrip("]").split(",") if p and not p.startswith("steps=")]
    return name + (f"[{','.join(kept)}]" if kept else "")


def cost_figures(board: pd.DataFrame) -> list[tuple[str, object]]:
    """Per (dataset, chains): the metric (classifier FD, else MMD) against NFE per sampler family,
    with the real-data row at that chain count as the floor."""
    means = board.pivot_table(index=["dataset", "chains", "score", "sampler"], columns="metric",
                              values="mean", aggfunc="first")
    out = []
    metric = next((m for m in CURVE_METRICS if m in means.columns), None)
    if metric is None or "nfe" not in means.columns:
        return out
    for (dataset, chains), group in means.groupby(level=["dataset", "chains"], sort=False):
        curves: dict[str, list[tuple[float, float]]] = {}
        floors: dict[str, float] = {}
        for (_, _, score, sampler), row in group.iterrows():
            if pd.isna(row[metric]):
                continue
            if row["nfe"] == 0:
                floors[f"{sampler} (NFE 0)"] = row[metric]
            else:
                curves.setdefault(f"{sampler_family(sampler)}, score={score}", []).append(
                    (row["nfe"], row[metric]))
        if any(len(points) > 1 for points in curves.values()):
            title = f"{dataset}, {chains} samples: {metric} against NFE"
            out.append((title, sample_figures.cost_curves(curves, floors, metric, title)))
    return out


def latest_sample_cells(store: Store) -> pd.DataFrame:
    """Latest done sampler cell of each identity, first repetition only."""
    cells = sample_tables.latest_done_sample_cells(store)
    return cells[cells["repetition"] == cells["repetition"].min()]


def load_samples(store: Store, key: str) -> torch.Tensor | None:
    """A cell's saved samples, read with ``weights_only=True`` (a crafted file cannot run code)."""
    path = samples_dir(store.path, key) / "samples.pt"
    if not path.is_file():
        return None
    saved = load_checkpoint(path, what="samples file", advice="delete it and rerun its cell")
    samples = saved.get("samples") if isinstance(saved, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise UsageError(f"samples file {path} holds no 'samples' tensor; delete it and rerun its cell")
    return samples


def sample_grid_figures(store: Store) -> list[tuple[str, object]]:
    """(title, Figure or PNG path) per row: a 10x10 grid of image samples, or a 2-D scatter."""
    out = []
    cells = latest_sample_cells(store)
    for dataset, group in cells.groupby("dataset", sort=False):
        for row in group.sort_values(["chains", "score", "sampler"]).itertuples():
            samples = load_samples(store, row.key)
            if samples is None:
                continue
            title = f"{dataset}: {row.sampler}, score={row.score} ({row.chains} chains)"
            if samples.dim() == 4 and samples.shape[1] == 1:
                out.append((f"{title}: the first 100 samples (repetition 0)",
                            sample_figures.sample_grids([(title, samples)], size=4.2)))
            elif (samples_dir(store.path, row.key) / "scatter.png").is_file():
                out.append((title, samples_dir(store.path, row.key) / "scatter.png"))
    return out


def denoising_strips(store: Store, registry: Registry) -> list[tuple[str, object]]:
    """Per dataset with saved outputs at two or more Gaussian levels: clean, noisy and outputs per sigma."""
    saved = figures.saved_outputs(store)
    out = []
    if saved.empty:
        return out
    saved = saved[(saved["noise"] == "gaussian") & (saved["repetition"] == saved["repetition"].min())]
    for dataset, group in saved.groupby("dataset", sort=False):
        levels = sorted(group["level"].astype(float).unique())
        image_id = group["image_id"].iloc[0]
        group = group[group["image_id"] == image_id]
        if len(levels) < 2:
            continue
        first = group.iloc[0]
        config = figures.run_config(store, first["run_id"])
        noisy_row, clean = [], None
        for level in levels:
            clean, noisy = figures.clean_and_noisy(registry, config, dataset, "gaussian", level,
                                                   int(first["repetition"]), int(first["seed"]), image_id,
                                                   first["protocol"])
            noisy_row.append(noisy)
        rows = [("noisy", noisy_row)]
        for denoiser, outputs in group.groupby("denoiser", sort=True):
            if denoiser == "noisy":
                continue
            by_level = {float(r.level): r.path for r in outputs.itertuples()}
            rows.append((denoiser, [torch.from_numpy(skio.imread(by_level[level]).astype(np.float32) / 255)[None]
                                    if level in by_level else torch.zeros_like(clean) for level in levels]))
        out.append((f"{dataset}, image {image_id}: denoising at several sigma (top: noisy input)",
                    sample_figures.denoising_strip(clean, rows, levels)))
    return out


def sections(store: Store, registry: Registry, figures_dir: str | Path | None) -> list[Section]:
    """The report's study sections: denoising strips, the samplers' table, sample grids."""
    parts = []
    try:
        board = sample_tables.sample_leaderboard(store)
    except UsageError:
        board = None
    strips = denoising_strips(store, registry)
    if strips:
        strip_section = Section("Denoising at several noise levels")
        for i, (title, fig) in enumerate(strips):
            strip_section.parts.append(image(figures.to_png(fig), title, title))
            save_figure(fig, figures_dir, f"denoising_strip_{i}")
        parts.append(strip_section)
    if board is None:
        return parts
    table = Section("Samplers", [
        '<p class="note">One row per (dataset, score model, sampler, chains): mean over repetitions '
        "[95% CI]. <code>classifier_fd</code>: Frechet distance of the dataset's LeNet features to "
        "the reference half of the test split (lower is better; it falls with the number of samples, "
        "so compare rows of one chain count, against the <code>real-data</code> row of that count: "
        "held-out real images, the floor); <code>classes_present</code> of 10; <code>label_kl</code>: "
        "KL of the predicted-label histogram from uniform; MMD against the test split; "
        "<code>memorised</code>: share of samples much nearer one training image than any other; "
        "<code>nfe</code>: model evaluations per sample; <code>s/sample</code>: sampling seconds per "
        "sample, all chains as one batch.</p>"])
    shown = compact_table(board, sample_tables.sample_costs(store))
    table.parts.append(shown.to_html(index=False, escape=True, border=0))
    for i, (title, fig) in enumerate(cost_figures(board)):
        table.parts.append(image(figures.to_png(fig), title, title))
        save_figure(fig, figures_dir, f"fd_vs_nfe_{i}")
    parts.append(table)
    grids = Section("Samples")
    for i, (title, fig) in enumerate(sample_grid_figures(store)):
        if isinstance(fig, Path):
            grids.parts.append(image(fig.read_bytes(), title, title))
            continue
        grids.parts.append(image(figures.to_png(fig), title, title))
        save_figure(fig, figures_dir, f"samples_{i}")
    parts.append(grids)
    return parts
