"""Paired comparisons: two denoisers on the same noisy images.

Every denoiser of a (dataset, noise, level, seed, repetition) saw identical
noisy pixels, so the honest test of "A beats B" is on per-image differences,
not on two overlapping CIs. The resampling unit is the image: differences are
averaged over seeds and repetitions of one image, then images are resampled
(percentile bootstrap, a fixed seed so tables are reproducible). With fewer
than two images nothing is called significant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

#: Pairs are matched on these columns (together with the group columns).
PAIR = ["seed", "repetition", "image_id"]
#: One comparison per group: the same noisy inputs up to seed, repetition and image.
COMPARE_GROUP = ["dataset", "noise", "level", "protocol"]
N_BOOT = 10_000
CONFIDENCE = 0.95
#: Resampling counts held in memory at once (resamples x units).
CHUNK_CELLS = 2_000_000


def bootstrap_counts(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) resampling counts: each stratum resampled with replacement to its own size."""
    counts = np.zeros((n_boot, len(strata)))
    for label in np.unique(strata):
        where = np.flatnonzero(strata == label)
        counts[:, where] = rng.multinomial(len(where), np.full(len(where), 1 / len(where)), size=n_boot)
    return counts


def bootstrap_mean_ci(values: np.ndarray, strata: np.ndarray | None = None, n_boot: int = N_BOOT,
                      seed: int = 0, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile-bootstrap CI of each column of ``values`` (n units x P; NaN = missing).

    All columns share the same resamples, so differences between columns stay paired.
    Returns (mean, low, high), each of shape (P,); NaN where a column has < 2 units.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    strata = np.zeros(len(values), dtype=int) if strata is None else np.asarray(strata)
    present = ~np.isnan(values)
    mean = np.array([col[ok].mean() if ok.any() else np.nan for col, ok in zip(values.T, present.T)])
    rng = np.random.default_rng(seed)
    filled = np.where(present, values, 0.0)
    chunk = max(1, CHUNK_CELLS // len(values))  # resample in blocks to bound memory on big datasets
    boot = np.empty((n_boot, values.shape[1]))
    for start in range(0, n_boot, chunk):
        counts = bootstrap_counts(strata, min(chunk, n_boot - start), rng)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot[start:start + len(counts)] = (counts @ filled) / (counts @ present)
    tail = (1 - confidence) / 2
    low, high = np.full(len(mean), np.nan), np.full(len(mean), np.nan)
    enough = present.sum(axis=0) >= 2
    if enough.any():
        low[enough], high[enough] = np.nanquantile(boot[:, enough], [tail, 1 - tail], axis=0)
    return mean, low, high


def holm_reject(p_values: np.ndarray, alpha: float = 1 - CONFIDENCE) -> np.ndarray:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level alpha."""
    order = np.argsort(p_values, kind="stable")
    reject = np.zeros(len(p_values), dtype=bool)
    for step, index in enumerate(order):
        if p_values[index] > alpha / (len(p_values) - step):
            break
        reject[index] = True
    return reject


def per_image(scores: pd.DataFrame, denoisers: list[str]) -> pd.DataFrame:
    """Image x denoiser table of values, averaged over seeds and repetitions of each image."""
    table = scores.pivot_table(index=PAIR, columns="denoiser", values="value", aggfunc="mean")
    return table.reindex(columns=denoisers).groupby(level="image_id", sort=True).mean()


def tied_ranks(scores: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    """Rank per denoiser in one group: rows in order of their means, tied in maximal runs of
    neighbours that a Holm-corrected paired test cannot tell apart.

    Neighbours (adjacent in the order of means) are compared by a paired t-test on per-image
    differences (the image is the unit); Holm corrects over those k - 1 neighbour tests of the
    group (family-wise 5%). A run of rows with no significant break between neighbours shares
    the rank of its first row, so ``rank_tied`` never contradicts the means, and a row added
    far from two neighbours changes their verdict only through the family's size. Differences
    with zero spread are exact: a difference on every image is a break, none is a tie.
    ``scores`` holds one group's per-image rows (denoiser, seed, repetition, image_id, value).
    """
    names = sorted(set(scores["denoiser"]))  # a fixed order, whatever the row order
    values = per_image(scores.sort_values(["denoiser"] + PAIR, kind="stable"), names)
    sign = 1 if higher_is_better else -1
    means = values.mean()
    order = sorted(names, key=lambda name: (-sign * means[name], name))
    p_values = np.array([paired_p_value((values[a] - values[b]).dropna().to_numpy())
                         for a, b in zip(order, order[1:])])
    breaks = [True, *holm_reject(p_values)]  # the first row starts a run
    ranks, rank = {}, 1
    for position, (name, broken) in enumerate(zip(order, breaks), start=1):
        rank = position if broken else rank
        ranks[name] = rank
    return pd.Series(ranks).reindex(names)


def paired_p_value(differences: np.ndarray) -> float:
    """Two-sided paired t-test p-value of "no difference"; exact when the differences do not vary
    (0 for a constant non-zero difference, 1 for none), 1 with fewer than two images."""
    if len(differences) < 2:
        return 1.0
    if np.ptp(differences) == 0:
        return 0.0 if differences[0] != 0 else 1.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def paired(scores: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Matched rows of A and B: group columns, pair columns, value_a, value_b."""
    keys = [c for c in COMPARE_GROUP + PAIR if c in scores.columns]
    left = scores[scores["denoiser"] == a][keys + ["value"]]
    right = scores[scores["denoiser"] == b][keys + ["value"]]
    return left.merge(right, on=keys, suffixes=("_a", "_b"))


def compare(pairs: pd.DataFrame, higher_is_better: bool, n_boot: int = N_BOOT,
            seed: int = 0) -> pd.DataFrame:
    """One row per group, and a pooled ``all`` row.

    diff = A - B; wins count pairs where A is better; verdict reads the CI. The pooled
    row keeps the pairing of images: one image at several levels is one unit (its
    differences averaged over levels), never several independent ones; the bootstrap
    is stratified by dataset.
    """
    group = [c for c in COMPARE_GROUP if c in pairs.columns]
    pairs = pairs.assign(diff=pairs["value_a"] - pairs["value_b"])
    sign = 1 if higher_is_better else -1
    rows = [_row(dict(zip(group, key)), _images(matched, group), matched, None, sign, n_boot, seed)
            for key, matched in pairs.groupby(group, sort=False, dropna=False)]
    if len(rows) > 1:
        by_dataset = [c for c in ("dataset",) if c in pairs.columns]
        units = _images(pairs, by_dataset)
        strata = units.groupby(by_dataset, sort=False).ngroup().to_numpy() if by_dataset else None
        rows.append(_row({c: "all" if c == "dataset" else None for c in group}, units, pairs,
                         strata, sign, n_boot, seed))
    return pd.DataFrame(rows)


def _images(pairs: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """The resampling units: one row per image, values averaged over seeds and repetitions."""
    return pairs.groupby(group + ["image_id"], sort=False, dropna=False).agg(
        diff=("diff", "mean"), value_a=("value_a", "mean"), value_b=("value_b", "mean")).reset_index()


def _row(head: dict, units: pd.DataFrame, matched: pd.DataFrame, strata, sign: int,
         n_boot: int, seed: int) -> dict:
    mean, low, high = bootstrap_mean_ci(units["diff"].to_numpy(), strata, n_boot, seed)
    better = sign * matched["diff"]
    wins, losses = int((better > 0).sum()), int((better < 0).sum())
    n = len(matched)
    return {**head, "images": len(units), "pairs": n,
            "mean_a": units["value_a"].mean(), "mean_b": units["value_b"].mean(),
            "diff": mean[0], "ci95_low": low[0], "ci95_high": high[0],
            "wins": wins, "ties": n - wins - losses, "losses": losses,
            "win_rate": wins / n if n else np.nan, "verdict": verdict(low[0], high[0], sign)}


def verdict(low: float, high: float, sign: int) -> str:
    """What the CI of A - B says, in words."""
    if np.isnan(low):
        return "too few images"
    if sign * low > 0 and sign * high > 0:
        return "A better"
    if sign * low < 0 and sign * high < 0:
        return "B better"
    return "tie (CI contains 0)"
