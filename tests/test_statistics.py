"""The leaderboard's statistics: the image is the unit, ties are Holm-corrected, order does not matter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.grid.cells import Cell
from bench.reports import compare, rendering, tables
from bench.store.database import CellResult, Store

BY = ["dataset", "noise", "level", "denoiser", "protocol"]


def simulated_scores(rng, images: int, reps: int, image_sd: float, draw_sd: float,
                     mean: float = 30.0) -> pd.DataFrame:
    """Per-image scores: each image has its own difficulty; each noise draw moves it a little."""
    effect = rng.normal(mean, image_sd, images)
    return pd.DataFrame([
        {"dataset": "d", "noise": "gaussian", "level": 0.1, "denoiser": "x", "protocol": "default",
         "seed": 0, "repetition": r, "image_id": f"im{i}", "value": effect[i] + rng.normal(0, draw_sd)}
        for i in range(images) for r in range(reps)])


def test_the_interval_covers_the_true_mean_95_percent_of_the_time():
    # 8 images x 5 repetitions: pooling the 40 values as independent gave 59% coverage.
    rng = np.random.default_rng(12)
    trials, covered = 400, 0
    for _ in range(trials):
        row = tables.summary_table(simulated_scores(rng, 8, 5, image_sd=2.0, draw_sd=1.0), BY).iloc[0]
        covered += row["ci95_low"] <= 30.0 <= row["ci95_high"]
    assert 0.92 <= covered / trials <= 0.98, f"95% CI covered the true mean in {covered}/{trials} trials"


def test_n_counts_images_and_repetitions_get_their_own_spread():
    scores = simulated_scores(np.random.default_rng(3), 6, 4, image_sd=2.0, draw_sd=0.5)
    row = tables.summary_table(scores, BY).iloc[0]
    per_image = scores.groupby("image_id")["value"].mean()
    per_draw = scores.groupby("repetition")["value"].mean()
    low, high = stats.t.interval(0.95, 5, loc=per_image.mean(), scale=stats.sem(per_image))
    assert row["n"] == 6 and row["reps"] == 4
    assert row["mean"] == pytest.approx(per_image.mean())
    assert row["std"] == pytest.approx(per_image.std(ddof=1))
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((low, high))
    assert row["rep_std"] == pytest.approx(per_draw.std(ddof=1))


def test_one_repetition_has_no_repetition_spread():
    row = tables.summary_table(simulated_scores(np.random.default_rng(4), 5, 1, 2.0, 0.5), BY).iloc[0]
    assert row["reps"] == 1 and np.isnan(row["rep_std"])


def test_holm_step_down_by_hand():
    # m = 4: 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2 stops; 0.04 is not reached.
    assert compare.holm_reject(np.array([0.01, 0.04, 0.03, 0.005])).tolist() == [True, False, False, True]
    assert not compare.holm_reject(np.array([0.06, 0.001])).tolist()[0]


def test_ties_do_not_break_by_chance_among_many_equal_denoisers():
    # 12 denoisers that differ only by noise: 66 pairs, so an unadjusted 5% test calls some
    # of them different; Holm's correction keeps them all tied.
    rng = np.random.default_rng(5)
    base = rng.normal(30, 2, 10)
    scores = pd.DataFrame([{"denoiser": f"m{k:02d}", "seed": 0, "repetition": 0, "image_id": f"im{i}",
                            "value": base[i] + rng.normal(0, 0.3)} for k in range(12) for i in range(10)])
    values = compare.per_image(scores, sorted(scores["denoiser"].unique())).to_numpy()
    diffs = np.stack([values[:, i] - values[:, j] for i in range(12) for j in range(i + 1, 12)], axis=1)
    unadjusted = int((stats.ttest_1samp(diffs, 0.0).pvalue < 0.05).sum())
    assert unadjusted > 0, "the scenario should fool an unadjusted test"
    ranks = compare.tied_ranks(scores, higher_is_better=True)
    assert set(ranks) == {1}, f"ties broke by chance: {ranks.to_dict()} ({unadjusted} unadjusted hits)"


def test_a_clearly_better_denoiser_still_ranks_alone():
    rng = np.random.default_rng(6)
    base = rng.normal(30, 2, 10)
    rows = [{"denoiser": name, "seed": 0, "repetition": 0, "image_id": f"im{i}",
             "value": base[i] + shift + rng.normal(0, 0.1)}
            for name, shift in (("best", 1.0), ("a", 0.0), ("b", 0.0), ("c", 0.0)) for i in range(10)]
    ranks = compare.tied_ranks(pd.DataFrame(rows), higher_is_better=True)
    assert ranks["best"] == 1 and set(ranks.drop("best")) == {2}


def _store(path, order) -> Store:
    store = Store(path)
    store.set_metric_info("psnr", True)
    run_id = store.start_run({}, {}, "cpu", [])
    rng = np.random.default_rng(9)
    values = {(name, rep): rng.normal(30, 2, 7) for name in ("a", "b", "c") for rep in range(3)}
    for name, rep in order(list(values)):
        cell = Cell("d", "gaussian", 0.1, name, rep, name, "sigma", f"{name}-{rep}")
        scores = {f"im{i}": {"psnr": float(v)} for i, v in order(list(enumerate(values[name, rep])))}
        store.record_cell(run_id, cell, 0, "default", ["psnr"], "cpu", CellResult("done", scores=scores))
    return store


def test_tables_are_byte_identical_whatever_order_cells_finished_in(tmp_path):
    shuffle = np.random.default_rng(1).permutation
    with _store(tmp_path / "a.sqlite", lambda xs: xs) as first, \
            _store(tmp_path / "b.sqlite", lambda xs: [xs[i] for i in shuffle(len(xs))]) as second:
        assert rendering.render(tables.leaderboard(first), "csv") == rendering.render(tables.leaderboard(second), "csv")
        assert rendering.render(tables.wide(first, ["psnr"]), "csv") == rendering.render(tables.wide(second, ["psnr"]), "csv")


def group_scores(rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """One group's per-image rows from denoiser -> per-image values."""
    return pd.DataFrame([{"denoiser": name, "seed": 0, "repetition": 0, "image_id": f"im{i:02d}", "value": v}
                         for name, values in rows.items() for i, v in enumerate(values)])


def assert_monotone(rows: dict[str, np.ndarray], ranks: pd.Series) -> None:
    by_mean = sorted(rows, key=lambda name: -rows[name].mean())
    shown = [int(ranks[name]) for name in by_mean]
    assert shown == sorted(shown), f"rank_tied contradicts the means: {dict(zip(by_mean, shown))}"


def test_rank_tied_never_contradicts_the_means():
    # C beats B on every image; A, noisy, beats neither significantly. The old count
    # "1 + rows significantly better" put A (lower mean) ahead of B.
    rng = np.random.default_rng(4)
    base = rng.normal(30, 3, 10)
    rows = {"C": base + 2.0 + rng.normal(0, 0.1, 10), "B": base + 1.0, "A": base + rng.normal(0.5, 4, 10)}
    assert rows["B"].mean() > rows["A"].mean()
    ranks = compare.tied_ranks(group_scores(rows), higher_is_better=True)
    assert_monotone(rows, ranks)
    for seed in range(30):  # and on random groups of every size
        rng = np.random.default_rng(seed)
        base = rng.normal(30, 3, 8)
        rows = {f"r{k}": base + rng.normal(0.3 * k, rng.uniform(0, 2), 8) for k in range(rng.integers(2, 9))}
        assert_monotone(rows, compare.tied_ranks(group_scores(rows), higher_is_better=True))


def test_an_exact_gain_on_every_image_is_not_a_tie_and_unrelated_rows_do_not_move_ranks():
    base = np.random.default_rng(5).normal(30, 3, 6)
    rows = {"better": base + 0.5, "worse": base}  # zero spread of the differences
    assert compare.tied_ranks(group_scores(rows), True).to_dict() == {"better": 1, "worse": 2}
    widened = {**rows, "far-behind": base - 10 + np.random.default_rng(6).normal(0, 1, 6)}
    ranks = compare.tied_ranks(group_scores(widened), True)
    assert (ranks["better"], ranks["worse"], ranks["far-behind"]) == (1, 2, 3)


def test_the_pooled_comparison_counts_an_image_once_across_levels():
    rng = np.random.default_rng(7)
    frames = []
    for level in (0.1, 0.2, 0.3):
        base = rng.normal(28, 2, 5)
        frames += [{"dataset": "d", "noise": "gaussian", "level": level, "protocol": "default", "seed": 0,
                    "repetition": 0, "image_id": f"im{i}", "value_a": b + 1 + rng.normal(0, 1),
                    "value_b": b} for i, b in enumerate(base)]
    table = compare.compare(pd.DataFrame(frames), higher_is_better=True, n_boot=2000)
    pooled = table[table["dataset"] == "all"].iloc[0]
    assert pooled["images"] == 5 and pooled["pairs"] == 15


def test_intervals_of_a_bounded_metric_stay_in_its_range():
    values = pd.Series([0.99, 0.60])  # two SSIMs: the t interval runs far above 1
    row = tables.summarise(values, bounds=(-1.0, 1.0))
    assert row["ci95_high"] == 1.0 and row["ci95_low"] >= -1.0
    assert tables.summarise(values)["ci95_high"] > 1.0


def test_values_that_round_to_zero_keep_enough_digits():
    shown = rendering.float_text(pd.Series([-0.00002, 0.0, 0.1234, np.nan]), 3).tolist()
    assert shown == ["-2e-05", "0.000", "0.123", ""]
