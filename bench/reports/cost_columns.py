"""Cost columns for leaderboards: parameters, GMACs, latency and peak memory beside the scores.

``gmacs``: billions of multiply-accumulates per image, what most papers call "FLOPs"
(SwinIR's ``flops()``, thop, ptflops count MACs); the store keeps torch's count of
FLOPs, two per multiply-add, and the column halves it.

Measurements come from ``run --cost`` (``bench.grid.cost``, the store's ``costs``
table). Per (dataset, denoiser) the latest device's figures are shown: at the
dataset's own shapes (averaged per image when sizes differ; memory is the
largest) and at the 256x256 reference shape. A latency taken while other cells
ran beside it is never shown; a figure that was not measured, or does not
apply (MACs of numpy code, parameters of a function), stays empty: "n/a" in
text tables, null in JSON, never zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import UsageError
from bench.grid.cost import REFERENCE_SIDE, base_name
from bench.reports.tables import latest_by
from bench.store.database import Store

#: Column -> decimals shown, in display order.
COLUMNS = {"params": 0, "gmacs": 4, "gmacs_256": 4, "latency_ms": 3, "latency_iqr_ms": 3,
           "latency_ms_256": 3, "peak_mb": 2, "cost_device": None}
#: Fewer is better for every cost figure (bold marks the cheapest in wide tables).
LOWER_IS_BETTER = {name: False for name, places in COLUMNS.items() if places is not None}
LATENCY = ("latency_ms", "latency_iqr_ms", "latency_ms_256")
#: torch's FlopCounterMode counts two FLOPs per multiply-add; GMACs = FLOPs / 2 / 1e9.
FLOPS_PER_GMAC = 2e9


def latest_costs(store: Store) -> pd.DataFrame:
    """The latest measurement per (dataset, denoiser, device, shape), on the latest device measured."""
    costs = store.query("SELECT * FROM costs")
    if costs.empty:
        return costs
    costs = latest_by(costs, ["dataset", "denoiser", "device", "shape"])
    latest_device = costs.groupby(["dataset", "denoiser"])["device"].transform("last")
    costs = costs[costs["device"] == latest_device].copy()
    isolated = costs["concurrent"].fillna(1) == 0  # latencies beside other cells are not latencies
    costs.loc[~isolated, ["latency_median", "latency_iqr"]] = np.nan
    return costs


def _weighted(values: pd.Series, weights: pd.Series) -> float:
    """Per-image mean over a dataset's shapes; NaN when any shape lacks the figure."""
    if values.isna().any() or weights.sum() == 0:
        return float("nan")
    return float((values * weights).sum() / weights.sum())


def per_dataset(store: Store) -> pd.DataFrame:
    """One row per (dataset, denoiser): the cost columns, numbers (NaN where absent)."""
    costs = latest_costs(store)
    if costs.empty:
        raise UsageError(f"no cost measurements in {store.path}; run the grid again with --cost")
    reference = costs["shape"].str.endswith(f"x{REFERENCE_SIDE}x{REFERENCE_SIDE}")
    rows = []
    for (dataset, denoiser), group in costs.groupby(["dataset", "denoiser"], sort=False):
        own, ref = group[group["images"] > 0], group[reference.loc[group.index]]
        rows.append({
            "dataset": dataset, "denoiser": denoiser,
            "params": group["parameters"].max(),
            "gmacs": _weighted(own["flops"], own["images"]) / FLOPS_PER_GMAC,
            "gmacs_256": ref["flops"].mean(skipna=False) / FLOPS_PER_GMAC if len(ref) else np.nan,
            "latency_ms": _weighted(own["latency_median"], own["images"]) * 1e3,
            "latency_iqr_ms": _weighted(own["latency_iqr"], own["images"]) * 1e3,
            "latency_ms_256": ref["latency_median"].mean(skipna=False) * 1e3 if len(ref) else np.nan,
            "peak_mb": own["peak_memory"].max(skipna=False) / 2**20,
            "cost_device": f"{group['device'].iloc[0]} ({group['device_name'].iloc[0]})",
        })
    return pd.DataFrame(rows)


def _present(frame: pd.DataFrame) -> list[str]:
    """Cost columns to show: latency columns only where some latency was measured."""
    return [c for c in COLUMNS if c in frame.columns and not (c in LATENCY and frame[c].isna().all())]


def _hints(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rendering hints (see ``bench.reports.rendering.formatted``): decimals, "n/a" for missing figures."""
    table.attrs["decimals"] = {**table.attrs.get("decimals", {}),
                               **{c: COLUMNS[c] for c in columns if COLUMNS[c] is not None}}
    table.attrs["na_text"] = {**table.attrs.get("na_text", {}),
                              **{c: "n/a" for c in columns if COLUMNS[c] is not None}}
    return table


def measured(store: Store) -> bool:
    return store.db.execute("SELECT 1 FROM costs LIMIT 1").fetchone() is not None


def table(store: Store) -> pd.DataFrame:
    """The cost columns alone, one row per (dataset, denoiser), ready to render."""
    costs = per_dataset(store)
    return _hints(costs.drop(columns=[c for c in COLUMNS if c not in _present(costs)]), _present(costs))


def add_to_long(table: pd.DataFrame, store: Store) -> pd.DataFrame:
    """The long leaderboard with cost columns (joined by dataset and denoiser, ``vst`` ignored)."""
    costs = per_dataset(store)
    keyed = table.assign(_base=table["denoiser"].map(base_name))
    merged = keyed.merge(costs.rename(columns={"denoiser": "_base"}), on=["dataset", "_base"], how="left")
    merged = merged.drop(columns="_base")
    columns = _present(merged)
    merged = merged.drop(columns=[c for c in COLUMNS if c in merged.columns and c not in columns])
    merged.attrs = dict(table.attrs)
    return _hints(merged, columns)


def add_to_wide(table: pd.DataFrame, store: Store) -> pd.DataFrame:
    """The wide table with one more group of columns, ``cost``, after the scores (joined by dataset,
    whatever the protocol, and denoiser, ``vst`` ignored)."""
    costs = per_dataset(store)
    index = table.index.to_frame(index=False)
    keyed = index.assign(dataset=index["dataset"].map(table.attrs["dataset_of"]),
                         _base=index["denoiser"].map(base_name))
    found = keyed.merge(costs.rename(columns={"denoiser": "_base"}), on=["dataset", "_base"], how="left")
    columns = _present(found)
    out = table.copy()
    for column in columns:
        out[("cost", -1.0, column)] = found[column].to_numpy()
    out.attrs = dict(table.attrs)
    out.attrs["higher_is_better"] = {**table.attrs.get("higher_is_better", {}), **LOWER_IS_BETTER}
    return _hints(out, columns)


def add_to_summary(table: pd.DataFrame, store: Store) -> pd.DataFrame:
    """The cross-dataset ranking with each denoiser's cost at 256x256, averaged over datasets."""
    costs = per_dataset(store)
    reference = ["params", "gmacs_256", "latency_ms_256"]
    by_denoiser = costs.groupby("denoiser")[reference].mean().reset_index()
    keyed = table.assign(_base=table["denoiser"].map(base_name))
    merged = keyed.merge(by_denoiser.rename(columns={"denoiser": "_base"}), on="_base", how="left")
    merged = merged.drop(columns="_base")
    columns = _present(merged)
    merged = merged.drop(columns=[c for c in reference if c not in columns])
    merged.attrs = dict(table.attrs)
    return _hints(merged, columns)


def add(table: pd.DataFrame, store: Store, layout: str) -> pd.DataFrame:
    """Cost columns for a ``long``, ``wide`` or ``summary`` table; UsageError when nothing was measured."""
    return {"long": add_to_long, "wide": add_to_wide, "summary": add_to_summary}[layout](table, store)
