"""The samplers' table: one row per (dataset, score model, sampler, chains, init) and metric.

Each sampler cell gives one value per metric (its samples scored as a set), so
the spread is across repetitions: mean, std and a t-based 95% CI over them
(``n`` = repetitions). ``rank`` orders the means within (dataset, metric,
chains, init) by the metric's direction: distances between sample sets (Frechet,
MMD) fall as the number of samples grows, so rows are ranked only against
rows with as many samples and the same start (the one ``real-data`` row at that
count and init is their floor). The latest done attempt of each cell identity counts.
"""

from __future__ import annotations

import pandas as pd

from bench.errors import UsageError
from bench.reports.tables import latest_by, provenance, summarise
from bench.store.database import Store

IDENTITY = ["dataset", "score", "sampler", "chains", "init", "repetition", "seed"]
GROUP = ["dataset", "score", "sampler", "chains", "init"]
#: Metrics shown by default, when the store has them (classifier metrics first).
DEFAULT_METRICS = ("classifier_fd", "classes_present", "confidence", "label_kl", "mmd",
                   "sliced_wasserstein", "memorised", "diversity", "modes_covered", "mode_weight_error",
                   "nfe")
#: Rows are ranked against each other only within these (see the module docstring).
RANK_GROUP = ["metric", "dataset", "chains", "init"]


def latest_done_sample_cells(store: Store) -> pd.DataFrame:
    """The latest done sampler cell of each identity."""
    return latest_by(store.query("SELECT * FROM sample_cells WHERE status = 'done'"), IDENTITY)


def sample_scores(store: Store) -> pd.DataFrame:
    """Metric values of the latest done sampler cell of each identity."""
    cells = latest_done_sample_cells(store)
    if cells.empty:
        return pd.DataFrame(columns=IDENTITY + ["key", "metric", "value"])
    scores = store.query("SELECT cell_key, metric, value FROM sample_scores")
    return cells.merge(scores, left_on="key", right_on="cell_key")


def sample_leaderboard(store: Store, metrics: list[str] | None = None) -> pd.DataFrame:
    """The long table; UsageError when there are no done sampler cells or a metric is unknown."""
    scores = sample_scores(store)
    if scores.empty:
        raise UsageError(f"no finished sampler cells in {store.path}; run a [[sampling]] config "
                         "or `denoise-bench sample` first")
    found = list(dict.fromkeys(scores["metric"]))
    if metrics:
        unknown = [m for m in metrics if m not in found]
        if unknown:
            raise UsageError(f"no sampler scores for metric {unknown[0]!r} in {store.path}; "
                             f"available: {', '.join(sorted(found))}")
    else:
        metrics = [m for m in DEFAULT_METRICS if m in found] or sorted(found)
    higher = store.higher_is_better()
    scores = scores[scores["metric"].isin(metrics)]
    table = (scores.groupby(["metric"] + GROUP, sort=False)["value"].apply(summarise)
             .unstack().reset_index())
    table["n"] = table["n"].astype(int)
    table["rank"] = 0
    for (metric, *_), index in table.groupby(RANK_GROUP).groups.items():
        ascending = not higher.get(metric, False)
        table.loc[index, "rank"] = table.loc[index, "mean"].rank(ascending=ascending, method="min")
    table["rank"] = table["rank"].astype(int)
    order = {m: i for i, m in enumerate(metrics)}
    table = table.sort_values(["metric", "dataset", "chains", "rank", "score", "sampler"],
                              key=lambda c: c.map(order) if c.name == "metric" else c).reset_index(drop=True)
    table.attrs["higher_is_better"] = {m: higher.get(m, False) for m in metrics}
    return table


def sample_costs(store: Store) -> pd.DataFrame:
    """Per row (GROUP): mean sampling seconds per sample over its repetitions (cell wall time
    of the chains / chains; scoring excluded)."""
    cells = latest_done_sample_cells(store)
    if cells.empty:
        return pd.DataFrame(columns=GROUP + ["seconds_per_sample"])
    cells = cells.assign(seconds_per_sample=cells["sample_seconds"] / cells["chains"])
    return cells.groupby(GROUP, sort=False, as_index=False)["seconds_per_sample"].mean()


def sample_provenance(store: Store) -> dict:
    """The provenance (see ``bench.reports.tables.provenance``) of the sampler cells in the table."""
    cells = sample_scores(store).drop_duplicates("key")
    return provenance(store, cells.assign(protocol="default"))


def failed_sample_cells(store: Store) -> pd.DataFrame:
    """Sampler cells whose latest attempt did not finish, with the reason."""
    columns = ["dataset", "score", "sampler", "chains", "repetition", "status", "error"]
    cells = store.query("SELECT * FROM sample_cells")
    if cells.empty:
        return pd.DataFrame(columns=columns)
    latest = latest_by(cells, IDENTITY)
    return latest[latest["status"] != "done"][columns].reset_index(drop=True)
