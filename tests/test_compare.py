"""Paired comparisons: the bootstrap CI against cases whose answer is known, win rates, ties."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.cli import main as cli
from bench.grid.cells import Cell
from bench.reports import compare, tables
from bench.store.database import CellResult, Store


def test_bootstrap_of_a_two_valued_sample_follows_the_exact_binomial_law():
    # Resampling n values of which k are 1 and the rest 0 gives a mean distributed
    # exactly as Binomial(n, k/n) / n, so the percentile CI is known in closed form.
    n, k = 40, 28
    values = np.array([1.0] * k + [0.0] * (n - k))
    mean, low, high = compare.bootstrap_mean_ci(values, n_boot=40_000, seed=1)
    law = stats.binom(n, k / n)
    assert mean[0] == pytest.approx(k / n)
    assert low[0] == pytest.approx(law.ppf(0.025) / n, abs=1 / n), "lower bound off the binomial quantile"
    assert high[0] == pytest.approx(law.ppf(0.975) / n, abs=1 / n), "upper bound off the binomial quantile"


def test_bootstrap_ci_of_a_large_sample_matches_normal_theory():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, size=400)
    mean, low, high = compare.bootstrap_mean_ci(values, n_boot=8000, seed=2)
    half = stats.norm.ppf(0.975) * values.std(ddof=0) / np.sqrt(len(values))  # plug-in standard error
    assert mean[0] == pytest.approx(values.mean())
    assert low[0] == pytest.approx(values.mean() - half, abs=0.06 * half)
    assert high[0] == pytest.approx(values.mean() + half, abs=0.06 * half)


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    truth, trials = 0.4, 300
    covered = 0
    for trial in range(trials):
        sample = rng.normal(truth, 1.0, size=30)
        _, low, high = compare.bootstrap_mean_ci(sample, n_boot=1000, seed=trial)
        covered += low[0] <= truth <= high[0]
    assert 0.90 <= covered / trials <= 0.98, f"coverage {covered / trials:.3f}, expected about 0.95"


def test_stratified_bootstrap_keeps_each_group_at_its_size():
    # Constant within each stratum: resampling inside strata cannot move the pooled mean,
    # so the CI collapses to the point; pooled resampling would not.
    values = np.array([1.0] * 10 + [3.0] * 10)
    strata = np.array([0] * 10 + [1] * 10)
    mean, low, high = compare.bootstrap_mean_ci(values, strata, n_boot=2000)
    assert (mean[0], low[0], high[0]) == pytest.approx((2.0, 2.0, 2.0))
    _, low, high = compare.bootstrap_mean_ci(values, n_boot=2000)
    assert high[0] - low[0] > 0.5


def test_fewer_than_two_images_give_no_interval():
    mean, low, high = compare.bootstrap_mean_ci(np.array([0.7]))
    assert mean[0] == 0.7 and np.isnan(low[0]) and np.isnan(high[0])
    assert compare.verdict(low[0], high[0], 1) == "too few images"


def group_scores(values: dict[str, list[float]], repetitions: int = 1) -> pd.DataFrame:
    """Per-image rows of one (dataset, noise, level) group, the shape the store gives."""
    rows = []
    for name, series in values.items():
        for i, value in enumerate(series):
            rows.append({"dataset": "d", "noise": "gaussian", "level": 0.1, "protocol": "default",
                         "denoiser": name, "seed": 0, "repetition": i % repetitions,
                         "image_id": f"im{i // repetitions}", "value": value})
    return pd.DataFrame(rows)


def test_pairing_separates_what_overlapping_unpaired_intervals_cannot():
    rng = np.random.default_rng(4)
    base = rng.uniform(20, 35, size=12)  # images differ a lot in difficulty
    a = base + 0.3 + rng.normal(0, 0.05, size=12)  # A is a little better on every image
    scores = group_scores({"A": a.tolist(), "B": base.tolist()})
    ci = {name: tables.summarise(pd.Series(v)) for name, v in (("A", a), ("B", base))}
    assert ci["A"]["ci95_low"] < ci["B"]["ci95_high"], "the unpaired intervals should overlap here"
    ranks = compare.tied_ranks(scores, higher_is_better=True)
    assert ranks.to_dict() == {"A": 1, "B": 2}
    table = compare.compare(compare.paired(scores, "A", "B"), higher_is_better=True)
    row = table.iloc[0]
    assert row["verdict"] == "A better" and row["win_rate"] == 1.0
    assert row["diff"] == pytest.approx(np.mean(a - base))


def test_indistinguishable_denoisers_share_a_rank():
    rng = np.random.default_rng(5)
    base = rng.uniform(20, 30, size=10)
    noise = rng.normal(0, 0.5, size=10)
    scores = group_scores({"A": (base + noise).tolist(), "B": (base - noise).tolist(),
                           "C": (base - 5).tolist()})
    ranks = compare.tied_ranks(scores, higher_is_better=True)
    assert ranks.to_dict() == {"A": 1, "B": 1, "C": 3}
    lower = compare.tied_ranks(scores, higher_is_better=False)  # e.g. MSE: C is now best
    assert lower.to_dict() == {"A": 2, "B": 2, "C": 1}


def test_win_rate_and_direction_are_counted_per_noisy_image():
    scores = group_scores({"A": [5, 5, 5, 5, 5], "B": [4, 4, 4, 5, 6]})
    table = compare.compare(compare.paired(scores, "A", "B"), higher_is_better=True)
    assert table.loc[0, ["wins", "ties", "losses"]].tolist() == [3, 1, 1]
    assert table.loc[0, "win_rate"] == pytest.approx(0.6)
    flipped = compare.compare(compare.paired(scores, "A", "B"), higher_is_better=False)
    assert flipped.loc[0, ["wins", "ties", "losses"]].tolist() == [1, 1, 3]


def test_repetitions_of_one_image_are_averaged_before_resampling():
    scores = group_scores({"A": [2, 4, 6, 8], "B": [1, 1, 1, 1]}, repetitions=2)
    table = compare.compare(compare.paired(scores, "A", "B"), higher_is_better=True)
    assert table.loc[0, "images"] == 2 and table.loc[0, "pairs"] == 4
    # per image differences: (1+3)/2 = 2 and (5+7)/2 = 6; two-point bootstrap support {2, 4, 6}
    assert table.loc[0, "diff"] == pytest.approx(4.0)
    assert table.loc[0, "ci95_low"] == pytest.approx(2.0) and table.loc[0, "ci95_high"] == pytest.approx(6.0)


def record(store: Store, run_id: str, level: float, denoiser: str, scores: dict[str, float]) -> None:
    cell = Cell("d", "gaussian", level, denoiser, 0, denoiser, "sigma", f"{denoiser}-{level}")
    store.record_cell(run_id, cell, 0, "default", ["psnr"], "cpu",
                      CellResult("done", scores={k: {"psnr": v} for k, v in scores.items()}))


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "bench.sqlite"
    rng = np.random.default_rng(6)
    with Store(path) as store:
        store.set_metric_info("psnr", True)
        run_id = store.start_run({"seed": 0, "protocol": "default"}, {}, "cpu", [])
        for level in (0.1, 0.2):
            base = rng.uniform(20, 30, size=8)
            record(store, run_id, level, "A", {f"im{i}": v + 1 for i, v in enumerate(base)})
            record(store, run_id, level, "B", {f"im{i}": v for i, v in enumerate(base)})
            record(store, run_id, level, "B[vst=anscombe]", {"im0": 0.0})  # never matched: exact name wins
    return path


def test_compare_command_reads_paired_differences_from_the_store(store_path, capsys):
    assert cli(["compare", "A", "B", "--store", str(store_path), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table["dataset"].tolist() == ["d", "d", "all"]
    assert table["diff"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert table["pairs"].tolist() == [8, 8, 16]
    assert (table["win_rate"] == 1.0).all() and (table["verdict"] == "A better").all()


def test_compare_command_refuses_unknown_names_in_one_line(store_path, capsys):
    assert cli(["compare", "A", "nope", "--store", str(store_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope" in err and "A, B" in err and len(err.splitlines()) == 1
