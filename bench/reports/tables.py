"""Leaderboards from the store: long, wide (as papers print them) and a ranking summary.

For each cell identity the latest done attempt counts, so a rerun after a code
change never counts an image twice. The image is the statistical unit: an
image's noise draws (repetitions, seeds) are averaged first, then ``n`` (images),
std and a t-based 95% confidence interval of the mean are taken over images;
``rep_std`` is the spread of the dataset mean across draws. ``rank`` orders the
means; ``rank_tied`` is 1 + the number of rows significantly better on paired
images (``bench.reports.compare.tied_ranks``: Holm-corrected), so indistinguishable ones
tie. Rows are aggregated in a fixed order, so tables are byte-identical however
cells finished.

Rendering them as text is ``bench.reports.rendering``."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from scipy import stats

from bench.data.datasets import shown_name
from bench.errors import UsageError
from bench.noise import levels
from bench.noise.levels import LevelScale
from bench.noise.sigma_in import BLIND, ORACLE
from bench.reports import compare
from bench.specs import Spec, parse_spec
from bench.store.database import Store

IDENTITY = ["dataset", "degradation", "level", "denoiser", "repetition", "seed", "protocol", "subset", "given"]
#: What tells one noise draw of an image from another.
DRAW = ["seed", "repetition"]
GROUP = ["dataset", "noise", "level", "denoiser", "sigma_in"]
#: Columns of the wide layout's index.
WIDE_INDEX = ["dataset", "denoiser"]
WIDE_METRICS = ("psnr", "ssim")


# loading ----------------------------------------------------------------------------------

def selected(store: Store, cells: pd.DataFrame) -> pd.DataFrame:
    """The cells the store's selection (``Store.selection``, see ``bench.store.selection``) covers."""
    return store.selection.apply(cells, store) if store.selection and not cells.empty else cells


def latest_by(cells: pd.DataFrame, identity: list[str], order: tuple[str, ...] = ("updated",)) -> pd.DataFrame:
    """The latest attempt (by ``order``, default ``updated``) of each identity; ties keep the later row."""
    return cells.sort_values(list(order), kind="stable").drop_duplicates(identity, keep="last")


def current_attempts(store: Store) -> pd.DataFrame:
    """The attempt of each identity that the code as it is now made: the cell the latest run
    planning that identity computed or reused (``run_cells``), among the selected cells.

    So after a plugin edit is reverted, the rerun's reused cells count again, not the
    reverted code's newer ones. Pending cells were never attempted; cells made on a dataset
    content that has since changed (a user's folder) do not count. A subset of a dataset
    (``--limit-images``, column ``subset``) is another identity (``with_subset_labels``).
    """
    cells = selected(store, store.query(
        "SELECT c.*, coalesce(max(r.rowid), own.rowid, -1) AS last_run FROM cells c "
        "LEFT JOIN run_cells rc ON rc.cell_key = c.key LEFT JOIN runs r ON r.run_id = rc.run_id "
        "LEFT JOIN runs own ON own.run_id = c.run_id "
        "WHERE c.status != 'pending' GROUP BY c.key ORDER BY c.rowid"))
    cells = cells[~cells["key"].isin(set(store.superseded_cells()["key"]))]
    # cells made before the sigma_in axis received the true level; a blind row's one cell stands for every choice
    cells = cells.assign(sigma_in=cells["sigma_in"].fillna(ORACLE))
    cells = cells.assign(given=cells["sigma_in"].replace(BLIND, ORACLE))
    return latest_by(cells, IDENTITY, order=("last_run", "updated")).drop(columns=["last_run", "given"])


def row_name(denoiser: str, sigma_in: str) -> str:
    """A table row: the denoiser, with the level it received where that is not the true one
    (``bm3d @ x0.5``); a blind row reads the same for every choice."""
    return denoiser if sigma_in in (ORACLE, BLIND) else f"{denoiser} @ {sigma_in}"


def base_row(row: str, sigma_in: str) -> str:
    """``row_name`` read back: the denoiser of a row (``bm3d @ x0.5`` -> ``bm3d``)."""
    suffix = f" @ {sigma_in}"
    return row[:-len(suffix)] if row.endswith(suffix) else row


def with_subset_labels(cells: pd.DataFrame) -> pd.DataFrame:
    """``dataset`` of subset cells read ``set12 (first 3 of 12)``: a table ranks and shows them
    apart from the whole set, never against it."""
    if cells["subset"].isna().all():
        return cells
    return cells.assign(dataset=[shown_name(d, None if pd.isna(s) else s)
                                 for d, s in zip(cells["dataset"], cells["subset"])])


def latest_done_cells(store: Store) -> pd.DataFrame:
    """The current attempt of each identity (``current_attempts``) where it is done."""
    cells = current_attempts(store)
    return cells[cells["status"] == "done"]


def latest_done_scores(store: Store, metric: str) -> pd.DataFrame:
    """Per-image scores of the latest done cell of each identity, for one metric."""
    cells = latest_done_cells(store)
    if cells.empty:
        return pd.DataFrame()
    scores = store.query("SELECT cell_key, image_id, value FROM scores WHERE metric = ?", (metric,))
    return cells.merge(scores, left_on="key", right_on="cell_key")


def check_metric(store: Store, metric: str) -> bool:
    """higher_is_better of a metric the store has; UsageError listing the known ones otherwise."""
    known = store.higher_is_better()
    if metric not in known:
        raise UsageError(f"no scores for metric {metric!r} in {store.path}; "
                         f"available: {', '.join(sorted(known)) or 'none'}")
    return known[metric]


def scored_metrics(store: Store) -> list[str]:
    """Metrics with scores of done cells in the store, in name order."""
    found = store.query("SELECT DISTINCT s.metric FROM scores s JOIN cells c ON c.key = s.cell_key "
                        "WHERE c.status = 'done'")["metric"]
    return sorted(set(found) & set(store.higher_is_better()))


def default_metrics(store: Store) -> list[str]:
    """What a wide table or a report shows unless told: PSNR and SSIM where scored, else the first metric."""
    scored = scored_metrics(store)
    return [m for m in WIDE_METRICS if m in scored] or scored[:1]


def scores_for(store: Store, metric: str) -> pd.DataFrame:
    """Per-image scores with the degradation column named ``noise``; UsageError when empty."""
    check_metric(store, metric)
    scores = latest_done_scores(store, metric)
    if scores.empty:
        what = " matching the filters" if store.selection else ""
        raise UsageError(f"no finished denoiser cells{what} with {metric} scores in {store.path} "
                         "(sampler metrics: `leaderboard --samples`)")
    scores = scores.assign(base=scores["denoiser"],
                           denoiser=[row_name(d, g) for d, g in zip(scores["denoiser"], scores["sigma_in"])])
    return with_subset_labels(scores).rename(columns={"degradation": "noise"})


# long -------------------------------------------------------------------------------------

def summarise(values: pd.Series, bounds: tuple[float | None, float | None] = (None, None)) -> pd.Series:
    """n, mean, std and t-based 95% CI of the mean of independent values (one per image),
    the CI clipped to the values the metric can take (``bounds``)."""
    n = len(values)
    mean = values.mean()
    std = values.std(ddof=1) if n > 1 else float("nan")
    half = stats.t.ppf(0.975, n - 1) * std / np.sqrt(n) if n > 1 else float("nan")
    low, high = bounds
    return pd.Series({"n": n, "mean": mean, "std": std,
                      "ci95_low": mean - half if low is None else max(mean - half, low),
                      "ci95_high": mean + half if high is None else min(mean + half, high)})


def image_values(scores: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One value per image of each group: the mean over its noise draws (seeds x repetitions).

    Draws of one image are not independent samples of the dataset mean; the image is
    the unit. Rows are put in a fixed order first, so sums do not depend on the
    order cells finished in.
    """
    ordered = scores.sort_values(by + ["image_id"] + DRAW, kind="stable")
    return ordered.groupby(by + ["image_id"], sort=True, dropna=False)["value"].mean().reset_index()


def draw_spread(scores: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``reps`` (noise draws: seeds x repetitions) and ``rep_std``, the std of the dataset mean across draws."""
    ordered = scores.sort_values(by + DRAW + ["image_id"], kind="stable")
    means = ordered.groupby(by + DRAW, sort=True, dropna=False)["value"].mean()
    grouped = means.groupby(level=list(range(len(by))), sort=True, dropna=False)
    return pd.DataFrame({"reps": grouped.size(), "rep_std": grouped.std(ddof=1)}).reset_index()


def summary_table(scores: pd.DataFrame, by: list[str],
                  bounds: tuple[float | None, float | None] = (None, None)) -> pd.DataFrame:
    """Per group: images (n), mean, std and 95% CI over image means (clipped to ``bounds``),
    then reps and rep_std."""
    images = image_values(scores, by)
    table = (images.groupby(by, sort=True, dropna=False)["value"]
             .apply(summarise, bounds=bounds).unstack().reset_index())
    table["n"] = table["n"].astype(int)
    table = table.merge(draw_spread(scores, by), on=by, how="left")
    table["reps"] = table["reps"].astype(int)
    return table


def add_level_label(table: pd.DataFrame, scales: dict[str, LevelScale]) -> pd.DataFrame:
    """``level_label`` after ``level``: the level as its degradation shows it (``sigma=15``, ``peak=16``)."""
    table = table.copy()
    table.insert(list(table.columns).index("level") + 1, "level_label",
                 [levels.label(scales, noise, level) for noise, level in zip(table["noise"], table["level"])])
    return table


def without_default_protocol(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its protocol column when every row used the default protocol."""
    if set(table["protocol"].dropna()) <= {"default"}:
        return table.drop(columns="protocol")
    return table


def leaderboard(store: Store, metric: str = "psnr") -> pd.DataFrame:
    """The ranked table for one metric; rank 1 is best within (dataset, noise, level)."""
    higher = check_metric(store, metric)
    scores = scores_for(store, metric)
    scales = store.level_scales()
    bounds = store.metric_bounds().get(metric, (None, None))
    table = add_level_label(summary_table(scores, GROUP + ["protocol"], bounds), scales)
    within = ["dataset", "noise", "level", "protocol"]
    table["rank"] = (table.groupby(within, dropna=False)["mean"]
                     .rank(ascending=not higher, method="min").astype(int))
    tied = pd.concat([compare.tied_ranks(group, higher).rename_axis("denoiser").reset_index(name="rank_tied")
                      .assign(**dict(zip(within, key)))
                      for key, group in scores.groupby(within, sort=True, dropna=False)])
    table = table.merge(tied, on=["denoiser"] + within, how="left")
    if not set(table["sigma_in"]) <= {ORACLE, BLIND}:
        table = table.merge(deltas_vs_oracle(scores, within), on=["denoiser"] + within, how="left")
    table.insert(0, "metric", metric)
    table = table.sort_values(["dataset", "noise", "level", "rank", "denoiser"]).reset_index(drop=True)
    table = without_default_protocol(table)
    table.attrs["higher_is_better"] = {metric: higher}
    table.attrs["level_scales"] = scales
    return table


def deltas_vs_oracle(scores: pd.DataFrame, within: list[str]) -> pd.DataFrame:
    """Per row given another level than the true one: its mean difference from the same denoiser
    given the true level, paired over images (``delta_vs_oracle``, t-based 95% CI), NaN elsewhere."""
    images = image_values(scores, within + ["base", "sigma_in", "denoiser"])
    oracle = images[images["sigma_in"] == ORACLE].drop(columns=["sigma_in", "denoiser"])
    paired = images[~images["sigma_in"].isin([ORACLE, BLIND])].merge(
        oracle, on=within + ["base", "image_id"], suffixes=("", "_oracle"))
    rows = []
    for key, group in paired.groupby(within + ["denoiser"], sort=True, dropna=False):
        summary = summarise(group["value"] - group["value_oracle"])
        rows.append({**dict(zip(within + ["denoiser"], key)), "delta_vs_oracle": summary["mean"],
                     "delta_ci95_low": summary["ci95_low"], "delta_ci95_high": summary["ci95_high"]})
    return pd.DataFrame(rows, columns=within + ["denoiser", "delta_vs_oracle", "delta_ci95_low", "delta_ci95_high"])


def failed_cells(store: Store) -> pd.DataFrame:
    """Cells whose latest attempt did not finish (error, timeout, skipped...), with the reason."""
    latest = current_attempts(store)
    columns = ["dataset", "noise", "level", "denoiser", "repetition", "status", "error"]
    if latest.empty:
        return pd.DataFrame(columns=columns)
    failed = with_subset_labels(latest[latest["status"] != "done"]).rename(columns={"degradation": "noise"})
    return failed.sort_values(["status", "dataset", "noise", "level", "denoiser"])[columns] \
        .reset_index(drop=True)


# wide and summary ---------------------------------------------------------------------------

def paper_name(name: str) -> str:
    """A row name without the default Poisson VST (``x[vst=anscombe]`` -> ``x``)."""
    try:
        spec = parse_spec(name)
    except UsageError:
        return name
    if spec.params.get("vst") != "anscombe":
        return name
    return Spec(spec.name, {k: v for k, v in spec.params.items() if k != "vst"}).label


def merge_default_vst(table: pd.DataFrame, within: list[str]) -> pd.DataFrame:
    """Rename ``x[vst=anscombe]`` rows to ``x`` where no other ``x`` row is in the same group."""
    renamed = table["denoiser"].map(paper_name)
    clash = renamed.groupby([table[c] for c in within], dropna=False).transform(lambda s: s.duplicated(keep=False))
    return table.assign(denoiser=renamed.where(~clash, table["denoiser"]))


def wide(store: Store, metrics: tuple[str, ...] | list[str] = WIDE_METRICS) -> pd.DataFrame:
    """One row per (dataset, denoiser), one column per (noise, level, metric): means.

    Rows that differ only by the default Poisson VST share a row, as papers print them.
    """
    longs = [leaderboard(store, metric) for metric in metrics]
    table = pd.concat(longs, ignore_index=True)
    labels = table["dataset"] + " (" + table["protocol"] + ")" if "protocol" in table.columns else table["dataset"]
    dataset_of = dict(zip(labels, table["dataset"]))  # row label -> dataset (cost columns join by it)
    table["dataset"] = labels
    table = merge_default_vst(table, ["metric", "dataset", "noise", "level"])
    table = table.assign(noise=table["noise"].fillna("-"), level=table["level"].fillna(-1.0))  # sampler cells
    out = table.pivot_table(index=WIDE_INDEX, columns=["noise", "level", "metric"], values="mean",
                            aggfunc="first", dropna=False, sort=False)
    noises = list(dict.fromkeys(table["noise"]))
    order = sorted(out.columns, key=lambda c: (noises.index(c[0]), c[1], list(metrics).index(c[2])))
    out = out[order].dropna(axis=1, how="all").dropna(axis=0, how="all")
    rank = table.groupby(["dataset", "denoiser"])["rank"].mean()
    datasets = list(dict.fromkeys(table["dataset"]))
    out = out.reindex(sorted(out.index, key=lambda k: (datasets.index(k[0]), rank[k], k[1])))
    out.attrs["higher_is_better"] = {m: t.attrs["higher_is_better"][m] for m, t in zip(metrics, longs)}
    out.attrs["level_scales"] = longs[0].attrs["level_scales"]
    out.attrs["dataset_of"] = dataset_of
    return out


def ranking_summary(store: Store, metric: str = "psnr") -> pd.DataFrame:
    """Mean rank of each denoiser over every (dataset, noise, level) it ran, best first."""
    table = merge_default_vst(leaderboard(store, metric), ["dataset", "noise", "level"])
    summary = table.groupby("denoiser").agg(
        mean_rank=("rank", "mean"), mean_rank_tied=("rank_tied", "mean"),
        wins=("rank", lambda r: int((r == 1).sum())), groups=("rank", "size"),
        datasets=("dataset", "nunique"), mean=("mean", "mean")).reset_index()
    summary.insert(0, "metric", metric)
    summary = summary.sort_values(["mean_rank", "mean_rank_tied", "denoiser"]).reset_index(drop=True)
    summary.attrs["higher_is_better"] = table.attrs["higher_is_better"]
    return summary


# provenance -------------------------------------------------------------------------------

def provenance(store: Store, cells: pd.DataFrame | None = None) -> dict:
    """What produced the numbers: runs, versions, devices, seeds, protocols of the ranked cells
    (by default the denoiser cells; the samplers' table passes its own)."""
    cells = latest_done_cells(store) if cells is None else cells
    runs = store.query("SELECT * FROM runs")
    used = runs[runs["run_id"].isin(set(cells["run_id"]))]
    described = []
    for run in used.sort_values("started").itertuples():
        config = json.loads(run.config or "{}")
        described.append({"run_id": run.run_id, "started": run.started, "finished": run.finished,
                          "status": run.status, "device": run.device,
                          "seed": config.get("seed"), "protocol": config.get("protocol"),
                          "versions": json.loads(run.versions or "{}"),
                          "argv": json.loads(run.argv or "[]")})
    return {
        "store": str(store.path),
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_ids": [r["run_id"] for r in described],
        "devices": sorted(set(cells["device"].dropna())),
        "seeds": sorted(int(s) for s in set(cells["seed"].dropna())),
        "protocols": sorted(set(cells["protocol"].dropna())),
        "cells": int(len(cells)),
        "runs": described,
    }
