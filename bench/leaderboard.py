"""Leaderboards from the store: one row per (dataset, noise, level, denoiser).

For each cell identity the latest done attempt counts, so a rerun after a code
change never counts an image twice. Spread is shown across images (and
repetitions): std and a t-based 95% confidence interval of the mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bench.errors import UsageError
from bench.store import Store

FORMATS = ("table", "csv", "markdown", "latex", "json")
IDENTITY = ["dataset", "degradation", "level", "denoiser", "repetition", "seed", "protocol"]
GROUP = ["dataset", "noise", "level", "denoiser"]


def latest_done_scores(store: Store, metric: str) -> pd.DataFrame:
    """Per-image scores of the latest done cell of each identity, for one metric."""
    cells = store.query("SELECT * FROM cells WHERE status = 'done'")
    if cells.empty:
        return pd.DataFrame()
    cells = cells.sort_values("updated").drop_duplicates(IDENTITY, keep="last")
    scores = store.query("SELECT cell_key, image_id, value FROM scores WHERE metric = ?", (metric,))
    return cells.merge(scores, left_on="key", right_on="cell_key")


def summarise(values: pd.Series) -> pd.Series:
    n = len(values)
    mean = values.mean()
    std = values.std(ddof=1) if n > 1 else float("nan")
    half = stats.t.ppf(0.975, n - 1) * std / np.sqrt(n) if n > 1 else float("nan")
    return pd.Series({"n": n, "mean": mean, "std": std,
                      "ci95_low": mean - half, "ci95_high": mean + half})


def leaderboard(store: Store, metric: str = "psnr") -> pd.DataFrame:
    """The ranked table for one metric; rank 1 is best within (dataset, noise, level)."""
    known = store.higher_is_better()
    if metric not in known:
        raise UsageError(f"no scores for metric {metric!r} in {store.path}; "
                         f"available: {', '.join(sorted(known)) or 'none'}")
    scores = latest_done_scores(store, metric)
    if scores.empty:
        raise UsageError(f"no finished cells in {store.path}")
    scores = scores.rename(columns={"degradation": "noise"})
    table = (scores.groupby(GROUP + ["protocol"], sort=False)["value"]
             .apply(summarise).unstack().reset_index())
    table["n"] = table["n"].astype(int)
    table.insert(3, "level_255", np.where(table["noise"] == "gaussian", table["level"] * 255, np.nan))
    table.insert(4, "peak", np.where(table["noise"] == "poisson", table["level"], np.nan))
    table["rank"] = (table.groupby(["dataset", "noise", "level", "protocol"])["mean"]
                     .rank(ascending=not known[metric], method="min").astype(int))
    table.insert(0, "metric", metric)
    table = table.sort_values(["dataset", "noise", "level", "rank", "denoiser"]).reset_index(drop=True)
    if table["protocol"].nunique() == 1 and table["protocol"].iloc[0] == "default":
        table = table.drop(columns="protocol")
    return table


def failed_cells(store: Store) -> pd.DataFrame:
    """Cells whose latest attempt failed (error or timeout), with their messages."""
    return store.query(
        "SELECT dataset, degradation AS noise, level, denoiser, repetition, status, error "
        "FROM cells WHERE status IN ('error', 'timeout') ORDER BY dataset, noise, level, denoiser")


def render(table: pd.DataFrame, fmt: str) -> str:
    """The table as text in one of FORMATS (CSV and JSON keep full precision)."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2) + "\n"
    shown = table.copy()
    for column in ("level_255", "peak"):
        if shown[column].isna().all():
            shown = shown.drop(columns=column)
    shown["level"] = shown["level"].map(lambda v: f"{v:.4g}")
    shown = shown.astype(object).where(shown.notna(), None)
    if fmt == "latex":
        return shown.to_latex(index=False, float_format="%.3f", na_rep="")
    return shown.to_markdown(index=False, floatfmt=".3f", missingval="",
                             tablefmt="github" if fmt == "markdown" else "simple") + "\n"
