"""The tables a store gives, by name: leaderboards, comparisons, reports, per-image scores.

``denoise-bench leaderboard``, ``compare`` and ``report`` and the Python ``Results`` call these,
so a table read from Python is the table the command line prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import UsageError
from bench.files import output_target, provenance_beside, write_texts
from bench.registry import Registry
from bench.reports import compare as comparing
from bench.reports import cost_columns, estimators, published, rendering, sample_tables, tables
from bench.specs import Spec, parse_spec
from bench.store.database import Store

LAYOUTS = ("long", "wide", "summary", "samples", "estimators")


@dataclass(frozen=True)
class Board:
    """A table with its provenance, the rows it could not rank, and notes for under it."""

    table: pd.DataFrame
    provenance: dict
    failed: pd.DataFrame
    notes: tuple[str, ...] = ()


def leaderboard(store: Store, metrics: list[str] | None = None, layout: str = "long",
                published_files: list[str] | None = None, registry: Registry | None = None,
                with_source: bool = True, cost: bool = False) -> Board:
    """The table a layout asks for; ``published_files`` (``[]``: the shipped table only; None: no
    published columns) adds the papers' numbers beside long rows; UsageError for an unknown metric."""
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose {', '.join(LAYOUTS)}")
    if layout == "samples":
        table = sample_tables.sample_leaderboard(store, metrics)
    elif layout == "estimators":
        table = estimators.estimator_table(store)
    elif published_files is not None and layout != "long":
        raise UsageError("--published adds columns to the long layout; drop --wide and --summary")
    elif layout == "wide":
        table = tables.wide(store, list(dict.fromkeys(metrics or tables.default_metrics(store) or ["psnr"])))
    else:
        boards = [tables.ranking_summary(store, m) if layout == "summary" else tables.leaderboard(store, m)
                  for m in dict.fromkeys(metrics or tables.scored_metrics(store) or ["psnr"])]
        table = pd.concat(boards, ignore_index=True) if len(boards) > 1 else boards[0]
    notes = []
    if published_files is not None and layout == "long":
        table = published.add_published(table, published.references(published_files), registry)
        notes = table.attrs.get("published_notes", [])
        if not with_source:
            table = table.drop(columns="source")
    if cost:
        table = cost_columns.add(table, store, layout if layout in ("wide", "summary") else "long")
    samples = layout == "samples"
    provenance = sample_tables.sample_provenance(store) if samples else tables.provenance(store)
    failed = sample_tables.failed_sample_cells(store) if samples else tables.failed_cells(store)
    return Board(table, provenance, failed, tuple(notes))


def render(board: Board, fmt: str) -> str:
    """The table as text; CSV without its provenance (``provenance_text`` gives the sidecar)."""
    return rendering.render(board.table, fmt, None if fmt == "csv" else board.provenance)


def provenance_text(board: Board) -> str:
    return json.dumps(board.provenance, indent=2) + "\n"


def write_csv(board: Board, path: str | Path, provenance: str | Path | None = None) -> Path:
    """The table as CSV and its provenance beside it (``NAME.provenance.json``), written atomically."""
    path = Path(path)
    sidecar = Path(provenance) if provenance else provenance_beside(path)
    files = {path: render(board, "csv")}
    if sidecar:
        files[sidecar] = provenance_text(board)
    write_texts(files)
    return path


def rows_of(scores: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one denoiser: its exact name, or its default-VST row on Poisson groups."""
    try:
        spec = parse_spec(name, "denoiser")
    except UsageError:
        spec = None
    names = {name}
    if spec is not None and "vst" not in spec.params:
        names.add(Spec(spec.name, {**spec.params, "vst": "anscombe"}).label)
    found = scores[scores["denoiser"].isin(names)]
    exact = found.groupby(comparing.COMPARE_GROUP, dropna=False)["denoiser"].transform(lambda s: (s == name).any())
    return found[(found["denoiser"] == name) | ~exact].assign(denoiser=name)


def comparison(store: Store, a: str, b: str, metric: str = "psnr",
               n_boot: int = comparing.N_BOOT) -> tuple[pd.DataFrame, bool]:
    """Paired differences A - B on the same noisy images with a bootstrap CI over images, and
    whether higher is better; UsageError for rows that never met."""
    if a == b:
        raise UsageError("A and B are the same denoiser; name two different rows")
    if n_boot < 100:
        raise UsageError(f"--bootstrap must be >= 100, got {n_boot}")
    higher = tables.check_metric(store, metric)
    scores = tables.scores_for(store, metric)
    rows = {name: rows_of(scores, name) for name in (a, b)}
    for name, found in rows.items():
        if found.empty:
            known = ", ".join(sorted(scores["denoiser"].unique()))
            raise UsageError(f"no {metric} scores for denoiser {name!r}; rows: {known}")
    pairs = comparing.paired(pd.concat(rows.values()), a, b)
    if pairs.empty:
        raise UsageError(f"{a!r} and {b!r} never ran on the same noisy images")
    table = tables.add_level_label(comparing.compare(pairs, higher, n_boot=n_boot), store.level_scales())
    return tables.without_default_protocol(table), higher


def per_image(store: Store, metric: str | None = None) -> pd.DataFrame:
    """One row per (cell, image) and metric: the numbers every table is made from."""
    metrics = [metric] if metric else tables.scored_metrics(store)
    frames = [tables.scores_for(store, m).assign(metric=m) for m in metrics]
    if not frames:
        raise UsageError(f"no scores in {store.path}")
    return pd.concat(frames, ignore_index=True)


def report(store: Store, registry: Registry, output: str | Path, metrics: list[str] | None = None,
           galleries: int = 1, figures_dir: str | Path | None = None) -> tuple[Path, int]:
    """The HTML report written to ``output``: (its path, its size in bytes)."""
    from bench.reports import html

    if galleries < 0:
        raise UsageError(f"--galleries must be >= 0, got {galleries}")
    output_target(output)  # a folder or socket is refused before any figure is written
    text = html.build(store, registry, metrics, galleries, figures_dir)
    return html.write(text, output), len(text)
