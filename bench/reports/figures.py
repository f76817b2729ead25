"""Figures from the store (matplotlib, PNG and SVG): curves, galleries, runtime vs quality.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot,
so nothing depends on (or changes) the user's backend; saving renders with Agg.
Galleries need no stored copies of clean or noisy images: the clean image is
reloaded through the registry and the noisy one regenerated from the seeds,
pixel for pixel what the denoisers saw (``bench.grid.inputs.make_batches``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from skimage import io as skio

from bench.config import RunConfig
from bench.data.datasets import ImageSet, noise_name, shown_name
from bench.errors import UsageError
from bench.grid.cells import build_degradation, load_dataset
from bench.grid.outputs import output_dir, output_name
from bench.grid.inputs import make_batches
from bench.grid.scoring import clamp_for_scoring
from bench.noise import levels
from bench.noise.levels import LevelScale
from bench.noise.sigma_in import BLIND, MEAN, RESIDUAL, parse_sigma_in
from bench.registry import Registry
from bench.reports import tables
from bench.sampling.figures import literal_text
from bench.specs import Spec, parse_spec
from bench.store.database import Store

FIGURE_FORMATS = ("png", "svg")
UNITS = {"psnr": "dB"}
PANEL_INCHES = 3.6
GALLERY_INCHES = 2.2


# saving -----------------------------------------------------------------------------------

def save_figure(fig: Figure, folder: str | Path, stem: str, formats=FIGURE_FORMATS, dpi: int = 100) -> list[Path]:
    """Write ``folder/stem.png`` and ``.svg`` (or the formats given); returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        literal_text(fig).savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for embedding in HTML)."""
    buffer = io.BytesIO()
    literal_text(fig).savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def colours(names) -> dict[str, tuple]:
    """One stable colour per denoiser name, the same in every panel."""
    cycle = [tuple(c) for c in np.array(
        [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
         [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]]) / 255]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(sorted(set(names)))}


def axis_level(scale: LevelScale, levels: pd.Series) -> tuple[pd.Series, str, bool]:
    """x values, x label and log scale of a degradation's levels, as it describes them."""
    return levels * scale.factor, scale.axis_label, scale.log_axis


def panels(keys: list[tuple], width: float = PANEL_INCHES) -> tuple[Figure, dict]:
    """A figure with one axes per (dataset, noise): datasets in rows, noises in columns."""
    datasets = list(dict.fromkeys(k[0] for k in keys))
    noises = list(dict.fromkeys(k[1] for k in keys))
    fig = Figure(figsize=(width * len(noises) + 1.5, 0.8 * width * len(datasets)), layout="constrained")
    grid = fig.subplots(len(datasets), len(noises), squeeze=False)
    axes = {}
    for r, dataset in enumerate(datasets):
        for c, noise in enumerate(noises):
            if (dataset, noise) in keys:
                axes[(dataset, noise)] = grid[r][c]
            else:
                grid[r][c].set_visible(False)
    return fig, axes


def metric_label(metric: str) -> str:
    unit = UNITS.get(metric)
    return f"{metric.upper()} ({unit})" if unit else metric.upper()


# curves -----------------------------------------------------------------------------------

def metric_vs_level(table: pd.DataFrame) -> Figure:
    """Mean metric against noise level, one line per denoiser with its 95% CI band.

    ``table`` is a long leaderboard (``bench.reports.tables.leaderboard``); one panel
    per (dataset, noise type).
    """
    metric = table["metric"].iloc[0]
    scales = table.attrs.get("level_scales", {})
    table = tables.merge_default_vst(table, ["dataset", "noise", "level"])
    table = table[table["level"].notna()]
    if table.empty:
        raise UsageError(f"no {metric} scores with a noise level to plot")
    keys = list(dict.fromkeys(zip(table["dataset"], table["noise"])))
    fig, axes = panels(keys)
    palette = colours(table["denoiser"])
    for (dataset, noise), ax in axes.items():
        part = table[(table["dataset"] == dataset) & (table["noise"] == noise)]
        for name, rows in part.groupby("denoiser", sort=False):
            rows = rows.sort_values("level")
            x, xlabel, log = axis_level(levels.scale_of(scales, noise), rows["level"])
            ax.plot(x, rows["mean"], marker="o", ms=4, color=palette[name], label=name)
            ax.fill_between(x, rows["ci95_low"], rows["ci95_high"], color=palette[name], alpha=0.2, lw=0)
        ticks = sorted(set(axis_level(levels.scale_of(scales, noise), part["level"])[0]))
        finish_panel(ax, log, [(t, f"{t:.4g}") for t in ticks], xlabel, metric_label(metric),
                     f"{dataset} · {noise}", 10)
    shared_legend(fig, axes, "mean, 95% CI band")
    return fig


def finish_panel(ax, log: bool, ticks: list[tuple[float, str]], xlabel: str, ylabel: str,
                 title: str, title_size: int) -> None:
    """Axis scale, ticks at the plotted values, labels, title and grid of one panel."""
    ax.set_xscale("log" if log else "linear")
    ax.set_xticks([t for t, _ in ticks], [text for _, text in ticks])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=title_size)
    ax.grid(alpha=0.3)


def shared_legend(fig: Figure, axes: dict, title: str) -> None:
    """One legend for every panel, right of them, each label once."""
    handles = {h.get_label(): h for ax in axes.values() for h in ax.get_legend_handles_labels()[0]}
    fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8,
               title=title, title_fontsize=8)


def received_ratio(store: Store, table: pd.DataFrame) -> pd.Series:
    """sigma_in / sigma_true of each row of a long table: the factor, a fixed level over the true
    one, the mean estimate over the true one (``estimate:NAME``), 1 for the oracle; NaN for blind rows.
    On real noise the true level is the mean residual recorded beside the estimates (``residual``
    is 1; NaN where none was recorded, such as a set without a reference)."""
    means = {}
    found = store.query("SELECT e.estimator, c.dataset, c.subset, c.degradation, c.level, avg(e.value) AS value "
                        "FROM estimates e JOIN cells c ON c.key = e.cell_key "
                        "GROUP BY e.estimator, c.dataset, c.subset, c.degradation, c.level")
    for row in found.itertuples():  # keyed as the table names datasets (a subset apart)
        means[(row.estimator, shown_name(row.dataset, row.subset), row.degradation, row.level)] = row.value
    scales = store.level_scales()

    def truth(row) -> float:
        if levels.scale_of(scales, row.noise).text is None:
            return row.level
        return means.get((RESIDUAL, row.dataset, row.noise, row.level), float("nan"))

    def ratio(row) -> float:
        if row.sigma_in == BLIND:
            return float("nan")
        choice = parse_sigma_in(row.sigma_in)
        if choice.label == RESIDUAL:
            return 1.0
        if choice.estimator is not None:
            return means.get((choice.estimator, row.dataset, row.noise, row.level), float("nan")) / truth(row)
        return choice.one_level(truth(row)) / truth(row)
    return pd.Series([ratio(row) for row in table.itertuples()], index=table.index, dtype=float)


def robustness(table: pd.DataFrame, ratios: pd.Series) -> Figure:
    """The metric against sigma_in / sigma_true (log scale), one line per denoiser through the
    levels it was given, one panel per (dataset, noise, level); a blind row is a dashed line, a
    map-taking row told a noise map's mean (``mean``) a hollow square beside its line."""
    metric = table["metric"].iloc[0]
    scales = table.attrs.get("level_scales", {})
    table = table.assign(ratio=ratios, base=table["denoiser"].str.split(" @ ").str[0],
                         panel=[f"{n} {levels.label(scales, n, lv)}" for n, lv in zip(table["noise"], table["level"])])
    keys = list(dict.fromkeys(zip(table["dataset"], table["panel"])))
    fig, axes = panels(keys)
    palette = colours(table["base"])
    for (dataset, panel), ax in axes.items():
        part = table[(table["dataset"] == dataset) & (table["panel"] == panel)]
        for name, rows in part.groupby("base", sort=False):
            if rows["ratio"].isna().all():
                ax.axhline(rows["mean"].iloc[0], color=palette[name], ls="--", lw=1, label=f"{name} (blind)")
                continue
            told_mean = rows["sigma_in"] == MEAN
            for given, style in ((rows[~told_mean & rows["ratio"].notna()].sort_values("ratio"),
                                  {"marker": "o", "label": name}),
                                 (rows[told_mean], {"marker": "s", "mfc": "none", "ls": "none",
                                                    "label": f"{name}, told the map's mean"})):
                if not given.empty:
                    ax.errorbar(given["ratio"], given["mean"], yerr=[given["mean"] - given["ci95_low"],
                                given["ci95_high"] - given["mean"]], ms=4, capsize=2, color=palette[name],
                                **style)
        ax.axvline(1.0, color="0.6", lw=0.8)
        ticks = sorted(set(part["ratio"].dropna().round(3)))
        finish_panel(ax, True, [(t, f"{t:g}") for t in ticks], "sigma_in / sigma_true", metric_label(metric),
                     f"{dataset}\n{panel}", 9)
    shared_legend(fig, axes, "mean, 95% CI")
    return fig


def runtime_table(store: Store, metric: str) -> pd.DataFrame:
    """Per (dataset, noise, denoiser): seconds per image and mean metric over levels.

    Cells that ran on Dask are left out: other cells may have run beside them,
    so their seconds are not latencies (``run --cost`` measures those alone).
    """
    scores = tables.scores_for(store, metric)
    scores = scores[~scores["device"].fillna("").str.startswith("dask:")]
    cells = scores.groupby("key").agg(
        dataset=("dataset", "first"), noise=("noise", "first"), level=("level", "first"),
        denoiser=("denoiser", "first"), value=("value", "mean"),
        seconds=("denoise_seconds", "first"), n_images=("n_images", "first")).reset_index()
    cells["seconds_per_image"] = cells["seconds"] / cells["n_images"].clip(lower=1)
    cells = tables.merge_default_vst(cells, ["dataset", "noise", "level"])
    return cells.groupby(["dataset", "noise", "denoiser"], sort=False, dropna=False).agg(
        seconds_per_image=("seconds_per_image", "mean"), mean=("value", "mean"),
        levels=("level", "nunique")).reset_index()


def runtime_vs_quality(table: pd.DataFrame, metric: str = "psnr") -> Figure:
    """Seconds per image (log) against mean metric (a ``runtime_table``), per denoiser and (dataset, noise)."""
    keys = list(dict.fromkeys(zip(table["dataset"], table["noise"])))
    fig, axes = panels(keys)
    palette = colours(table["denoiser"])
    floor = 1e-6  # the identity row takes microseconds; keep it on a log axis
    for (dataset, noise), ax in axes.items():
        part = table[(table["dataset"] == dataset) & (table["noise"] == noise)]
        for row in part.itertuples():
            ax.scatter(max(row.seconds_per_image, floor), row.mean, color=palette[row.denoiser],
                       s=36, label=row.denoiser, zorder=3)
            ax.annotate(row.denoiser, (max(row.seconds_per_image, floor), row.mean), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.15)
        ax.set_xlabel("seconds per image (log)")
        ax.set_ylabel(f"mean {metric_label(metric)} over levels")
        ax.set_title(f"{dataset} · {noise}", fontsize=10)
        ax.grid(alpha=0.3)
    return fig


# galleries --------------------------------------------------------------------------------

@dataclass
class Tile:
    """One gallery image: HxW or HxWx3 floats in [0, 1], a title and a caption."""

    title: str
    image: np.ndarray
    caption: str = ""


def saved_outputs(store: Store) -> pd.DataFrame:
    """Latest done cells with their saved output images: one row per (cell, image id)."""
    cells = tables.latest_done_cells(store)
    rows = []
    for cell in cells.itertuples():
        folder = output_dir(store.path, cell.key)
        if folder.is_dir():
            ids = store.query("SELECT image_id FROM scores WHERE cell_key = ? UNION SELECT image_id FROM "
                              "image_times WHERE cell_key = ?", (cell.key, cell.key))["image_id"]  # no scores: rni15
            files = {output_name(image_id): image_id for image_id in ids}
            rows += [{**cell._asdict(), "image_id": files[path.name], "path": path}
                     for path in sorted(folder.glob("*.png")) if path.name in files]
    columns = list(cells.columns) + ["image_id", "path"]
    return pd.DataFrame(rows, columns=columns).rename(columns={"degradation": "noise"})


def run_config(store: Store, run_id: str) -> RunConfig:
    """The parts of a run's config that loading its data needs (data root, plugins)."""
    found = store.query("SELECT config FROM runs WHERE run_id = ?", (run_id,))
    config = json.loads(found["config"].iloc[0]) if len(found) else {}
    return RunConfig(data_root=config.get("data_root"), plugins=config.get("plugins") or [])


def clean_and_noisy(registry: Registry, config: RunConfig, dataset: str, noise: str, level: float,
                    repetition: int, seed: int, image_id: str,
                    protocol: str = "default") -> tuple[torch.Tensor | None, torch.Tensor]:
    """The clean image and the very noisy image the denoisers saw (seeded as they were, handed
    over as the protocol says; a real-noise set's capture), as (C, H, W) CPU tensors; the clean
    image is None for a set without a reference (``rni15``)."""
    images = load_dataset(registry, parse_spec(dataset, "dataset"), config)
    if image_id not in images.ids:
        raise UsageError(f"image {image_id!r} is not in dataset {dataset!r}")
    index = images.ids.index(image_id)
    one = ImageSet([image_id], [images.images[index]], reference=images.reference,
                   captures=None if images.captures is None else [images.captures[index]])
    degradation = build_degradation(registry, noise)[1]
    batch = make_batches(one, noise_name(dataset, images), degradation, level,
                         repetition, seed, 1, torch.device("cpu"), protocol)[0]
    return (batch.x[0] if images.reference else None), batch.y[0]


def as_array(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor to HxW or HxWx3 floats in [0, 1] for display."""
    array = image.detach().clamp(0, 1).cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def gallery_tiles(store: Store, registry: Registry, dataset: str, noise: str, level: float,
                  image_id: str, repetition: int = 0, metric: str = "psnr") -> list[Tile]:
    """clean | noisy | each saved denoiser output (best first), captions with the metric."""
    saved = saved_outputs(store)
    chosen = saved[(saved["dataset"] == dataset) & (saved["noise"] == noise)
                   & np.isclose(saved["level"].astype(float), level) & (saved["repetition"] == repetition)
                   & (saved["image_id"] == image_id)]
    if chosen.empty:
        raise UsageError(f"no saved outputs for image {image_id!r} of {dataset} {noise}:{level:.4g} "
                         f"rep {repetition}; run with --save-images N first")
    chosen = chosen[chosen["seed"] == chosen["seed"].iloc[0]]
    first = chosen.iloc[0]
    clean, noisy = clean_and_noisy(registry, run_config(store, first["run_id"]), dataset, noise,
                                   float(first["level"]), repetition, int(first["seed"]), image_id,
                                   first["protocol"])
    scores = store.query(
        f"SELECT cell_key, value FROM scores WHERE metric = ? AND image_id = ? "
        f"AND cell_key IN ({','.join('?' * len(chosen))})", (metric, image_id, *chosen["key"]))
    value = dict(zip(scores["cell_key"], scores["value"]))
    higher = store.higher_is_better().get(metric, True)
    chosen = chosen.assign(value=chosen["key"].map(value)).sort_values(
        "value", ascending=not higher, na_position="last")
    unit = f" {UNITS[metric]}" if metric in UNITS else ""
    if clean is None:  # real noisy images alone: nothing to score against
        tiles = [Tile("noisy input", as_array(noisy))]
    else:
        protocol = first["protocol"]
        measure = registry.build("metrics", Spec(metric))
        score = measure(clamp_for_scoring(noisy[None], protocol), clamp_for_scoring(clean[None], protocol))
        caption = f"{metric.upper()} {float(score[0]):.2f}{unit}"
        tiles = [Tile("clean", as_array(clean)), Tile("noisy input", as_array(noisy), caption)]
    for row in chosen.itertuples():
        image = skio.imread(row.path).astype(np.float64) / 255.0
        text = "" if pd.isna(row.value) else f"{metric.upper()} {row.value:.2f}{unit}"
        tiles.append(Tile(row.denoiser, image, text))
    return tiles


def detail_box(image: np.ndarray, size: int | None = None) -> tuple[int, int, int]:
    """(top, left, size) of the square with the most detail (highest std) in an image."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    h, w = gray.shape
    size = size or max(8, min(h, w) // 4)
    size = min(size, h, w)
    stride = max(1, size // 2)
    best, where = -1.0, (0, 0)
    for top in range(0, h - size + 1, stride):
        for left in range(0, w - size + 1, stride):
            spread = float(gray[top:top + size, left:left + size].std())
            if spread > best:
                best, where = spread, (top, left)
    return where[0], where[1], size


def draw_gallery(tiles: list[Tile], title: str = "", box: tuple[int, int, int] | None = None) -> Figure:
    """Tiles in a row with captions, and beneath each the zoomed crop marked on the image."""
    top, left, size = box or detail_box(tiles[0].image)
    fig = Figure(figsize=(GALLERY_INCHES * len(tiles), 2 * GALLERY_INCHES + 0.9), layout="constrained")
    axes = fig.subplots(2, len(tiles), squeeze=False)
    for column, tile in enumerate(tiles):
        style = {"cmap": "gray"} if tile.image.ndim == 2 else {}
        full, zoom = axes[0][column], axes[1][column]
        full.imshow(tile.image, vmin=0, vmax=1, interpolation="nearest", **style)
        full.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, ec="yellow", lw=1.2))
        full.set_title(tile.title, fontsize=8)
        full.set_xlabel(tile.caption, fontsize=8)
        zoom.imshow(tile.image[top:top + size, left:left + size], vmin=0, vmax=1,
                    interpolation="nearest", **style)
        zoom.set_xlabel(f"zoom {size}x{size}", fontsize=7)
        for ax in (full, zoom):
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def gallery(store: Store, registry: Registry, dataset: str, noise: str, level: float, image_id: str,
            repetition: int = 0, metric: str = "psnr") -> Figure:
    """The gallery figure of one image at one level (see ``gallery_tiles``)."""
    tiles = gallery_tiles(store, registry, dataset, noise, level, image_id, repetition, metric)
    title = f"{dataset} · {image_id} · {noise} {levels.label(store.level_scales(), noise, level, 'unicode')}"
    return draw_gallery(tiles, title)
