"""The noise estimators' table: how far each one's per-image estimate is from the true level.

Estimates are those the denoisers were given (``--sigma-in estimate:NAME``), on the very
noisy inputs they saw; an image's estimate is averaged over its noise draws first, then
``n`` (images), the mean estimate, the mean truth, the bias (estimate - truth) and the mean
absolute error with t-based 95% CIs over images, and the relative error |estimate - truth| /
truth, all in the level's own units (sigma x 255 for Gaussian noise). The truth is the drawn
level; on real noise, which has none, each image's residual level (the std of noisy -
reference, recorded beside the estimates), and nothing on a set without a reference (RNI15:
the estimates alone).
"""

from __future__ import annotations

import pandas as pd

from bench.errors import UsageError
from bench.noise.levels import scale_of
from bench.noise.sigma_in import RESIDUAL
from bench.reports import tables
from bench.store.database import Store

#: One estimate per image and draw, whichever denoiser cell carried it; the protocol decides the
#: noisy input the estimate was made on (``uint8`` rounds it), so each protocol is its own row.
DRAWN = ["estimator", "dataset", "noise", "level", "protocol", "seed", "repetition", "image_id"]
BY = ["estimator", "dataset", "noise", "level", "protocol"]


def estimates(store: Store) -> pd.DataFrame:
    """Per image and draw: estimator, dataset, noise, level, value and the truth (in [0, 1] units)."""
    cells = tables.with_subset_labels(tables.latest_done_cells(store))
    found = store.query("SELECT cell_key, image_id, estimator, value FROM estimates")
    merged = cells.merge(found, left_on="key", right_on="cell_key").rename(columns={"degradation": "noise"})
    if merged.empty:
        raise UsageError(f"no noise estimates in {store.path}: run a Gaussian grid with "
                         "--sigma-in estimate:NAME (`denoise-bench list estimators`)")
    truth = merged.loc[merged["estimator"] == RESIDUAL, ["cell_key", "image_id", "value"]].rename(
        columns={"value": "truth"})
    merged = merged[merged["estimator"] != RESIDUAL].merge(truth, on=["cell_key", "image_id"], how="left")
    scales = store.level_scales()
    numbered = merged["noise"].map(lambda noise: scale_of(scales, noise).text is None)
    merged["truth"] = merged["truth"].fillna(merged["level"].where(numbered))
    return merged.drop_duplicates(DRAWN)


def estimator_table(store: Store) -> pd.DataFrame:
    """One row per (estimator, dataset, noise, level, protocol): n, mean estimate, bias, MAE (with CIs), relative error."""
    drawn = estimates(store)
    scales = store.level_scales()
    factor = drawn["noise"].map(lambda noise: scales[noise].factor if noise in scales else 1.0)
    drawn = drawn.assign(estimate=drawn["value"] * factor, truth=drawn["truth"] * factor,
                         error=(drawn["value"] - drawn["truth"]) * factor,
                         relative=(drawn["value"] - drawn["truth"]).abs() / drawn["truth"])
    per_image = drawn.groupby(BY + ["image_id"], sort=True)[
        ["estimate", "truth", "error", "relative"]].mean().reset_index()
    rows = []
    for key, group in per_image.groupby(BY, sort=True):
        bias, mae = tables.summarise(group["error"]), tables.summarise(group["error"].abs(), bounds=(0.0, None))
        rows.append({**dict(zip(BY, key)), "n": int(bias["n"]), "mean_estimate": group["estimate"].mean(),
                     "mean_truth": group["truth"].mean(),
                     "bias": bias["mean"], "bias_ci95_low": bias["ci95_low"], "bias_ci95_high": bias["ci95_high"],
                     "mae": mae["mean"], "mae_ci95_low": mae["ci95_low"], "mae_ci95_high": mae["ci95_high"],
                     "relative_error": group["relative"].mean()})
    table = tables.without_default_protocol(tables.add_level_label(pd.DataFrame(rows), scales))
    table.attrs["higher_is_better"] = {}
    return table
