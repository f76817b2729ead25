"""The level each denoiser receives as a grid axis (--sigma-in), and noise estimators as plugins."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from bench.errors import UsageError
from bench.noise.sigma_in import parse_sigma_in
from conftest import rows

DATA = "skimage-gray[crop=64]"

ECHO = '''
import bench
import torch

@bench.hookimpl
def register_denoisers(register):
    # outputs a flat image at the level it received: the scored mean reads it back
    register("echo", lambda: (lambda y, sigma: torch.ones_like(y) * sigma.view(-1, 1, 1, 1)),
             sigma_aware=True, description="returns the sigma it was given")

    def per_level(level, degradation):
        return lambda y, sigma: torch.ones_like(y) * level
    register("by-level", per_level, sigma_aware=True, per_level=True, description="one model per level")

@bench.hookimpl
def register_metrics(register):
    register("mean-out", lambda: (lambda x_hat, x: x_hat.double().flatten(1).mean(1)), higher_is_better=True,
             description="mean of the output")
'''


@pytest.mark.parametrize("text, label", [("oracle", "oracle"), ("x0.5", "x0.5"), ("x2", "x2"),
                                         ("25/255", "25/255"), ("0.1", "25.5/255"),
                                         ("estimate:skimage", "estimate:skimage")])
def test_choices_parse_to_canonical_labels(text, label):
    assert parse_sigma_in(text).label == label


@pytest.mark.parametrize("text", ["x0", "x-1", "xabc", "loud", "-3/255", "estimate:"])
def test_bad_choices_are_one_line(text):
    with pytest.raises(UsageError) as error:
        parse_sigma_in(text)
    assert len(str(error.value).splitlines()) == 1


def outputs(store) -> dict[tuple[str, str], float]:
    """(denoiser, sigma_in) -> mean over images of the output's mean."""
    found = rows(store, "SELECT c.denoiser, c.sigma_in, avg(s.value) FROM scores s JOIN cells c "
                        "ON c.key = s.cell_key WHERE s.metric = 'mean-out' GROUP BY c.key")
    return {(d, g): v for d, g, v in found}


def test_each_row_receives_the_level_its_choice_says(cli, write_plugin, store):
    plugin = write_plugin(ECHO, "echo.py")
    result = cli("run", "--plugin", plugin, "-d", DATA, "-n", "gaussian:0.2", "-m", "echo", "-m", "by-level",
                 "-m", "noisy", "--metric", "mean-out", "--sigma-in", "oracle,x0.5,x2,10/255,estimate:skimage",
                 "--limit-images", "3", "--store", store, "--quiet")
    assert result.code == 0, result.err
    got = outputs(store)
    for given, expected in (("oracle", 0.2), ("x0.5", 0.1), ("x2", 0.4), ("10/255", 10 / 255)):
        assert got[("echo", given)] == pytest.approx(expected, rel=1e-6), given
        assert got[("by-level", given)] == pytest.approx(expected, rel=1e-6), f"per-level model at {given}"
    estimated = rows(store, "SELECT value FROM estimates")
    assert len(estimated) == 3 and got[("echo", "estimate:skimage")] == pytest.approx(
        sum(v for (v,) in estimated) / 3, rel=1e-5)
    assert [k for k in got if k[0] == "noisy"] == [("noisy", "blind")]  # a blind row runs once
    skipped = rows(store, "SELECT status, error FROM cells WHERE denoiser = 'by-level' AND sigma_in LIKE 'estimate%'")
    assert skipped[0][0] == "skipped" and "one level per cell" in skipped[0][1]
    table = list(csv.DictReader(io.StringIO(cli("leaderboard", "--store", store, "--format", "csv").out)))
    assert {(r["denoiser"], r["sigma_in"]) for r in table} >= {("echo", "oracle"), ("echo @ x0.5", "x0.5"),
                                                               ("noisy", "blind")}
    # oracle cells are the cells a grid without the axis makes
    again = cli("run", "--plugin", plugin, "-d", DATA, "-n", "gaussian:0.2", "-m", "echo", "-m", "noisy",
                "--metric", "mean-out", "--limit-images", "3", "--store", store)
    assert "2 from earlier runs" in again.err


@pytest.mark.parametrize("name", ["skimage", "deepinv-wavelet", "deepinv-patch-cov"])
@pytest.mark.parametrize("sigma", [15 / 255, 25 / 255, 50 / 255])
def test_estimators_find_a_known_sigma_on_pure_noise(name, sigma):
    from bench.plugins import get_plugin_set
    from bench.registry import Registry
    from bench.specs import Spec

    estimate = Registry(get_plugin_set()).build("estimators", Spec(name))
    generator = torch.Generator().manual_seed(3)
    y = 0.5 + sigma * torch.randn((2, 1, 128, 128), generator=generator)
    found = estimate(y)
    assert found.shape == (2,)
    assert found.double() == pytest.approx(torch.full((2,), sigma, dtype=torch.float64), rel=0.1), name


def test_the_estimators_table_scores_estimates_against_the_true_level(cli, store):
    result = cli("run", "-d", DATA, "-n", "gaussian:15/255,50/255", "-m", "gaussian-filter", "--metric", "psnr",
                 "--sigma-in", "estimate:skimage", "--limit-images", "4", "--store", store, "--quiet")
    assert result.code == 0, result.err
    table = list(csv.DictReader(io.StringIO(cli("leaderboard", "--estimators", "--store", store,
                                                "--format", "csv").out)))
    assert [(r["estimator"], r["level_label"], r["n"]) for r in table] == [
        ("skimage", "sigma=15", "4"), ("skimage", "sigma=50", "4")]
    for row in table:  # in sigma x 255: the bias is the mean estimate minus the true level
        truth = float(row["level"]) * 255
        assert float(row["bias"]) == pytest.approx(float(row["mean_estimate"]) - truth, abs=1e-6)
        assert float(row["mae"]) >= abs(float(row["bias"])) - 1e-9


def test_the_estimators_table_has_a_row_per_protocol(cli, store):
    """uint8 rounds the noisy input the estimator sees: its estimates are their own row, not merged
    into the default protocol's (where the first row won)."""
    for protocol in ("default", "uint8"):
        result = cli("run", "-d", DATA, "-n", "gaussian:15/255", "-m", "gaussian-filter", "--metric", "psnr",
                     "--sigma-in", "estimate:skimage", "--limit-images", "4", "--store", store, "--quiet",
                     "--protocol", protocol)
        assert result.code == 0, result.err
    table = list(csv.DictReader(io.StringIO(cli("leaderboard", "--estimators", "--store", store,
                                                "--format", "csv").out)))
    assert [(r["estimator"], r["level_label"], r["protocol"], r["n"]) for r in table] == [
        ("skimage", "sigma=15", "default", "4"), ("skimage", "sigma=15", "uint8", "4")]
    assert table[0]["mean_estimate"] != table[1]["mean_estimate"]


@pytest.mark.parametrize("args, message", [
    (["--sigma-in", "x0"], "a factor of the true level must be a number > 0"),
    (["--sigma-in", "x-1"], "a factor of the true level must be a number > 0"),
    (["--sigma-in", "estimate:skimag"], "did you mean 'skimage'"),
    (["--sigma-in", "estimate:skimage", "-n", "poisson:16"], "assumes Gaussian noise"),
    (["--sigma-in", "x2", "-m", "noisy"], "no row of the grid is sigma-aware"),
])
def test_bad_sigma_in_is_one_line_exit_2_and_nothing_written(cli, store, args, message):
    base = ["run", "-d", DATA, "--limit-images", "1", "--store", store, "--quiet"]
    if "-n" not in args:
        base += ["-n", "gaussian:0.1"]
    if "-m" not in args:
        base += ["-m", "gaussian-filter"]
    result = cli(*base, *args)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not store.exists()


def test_the_report_draws_the_robustness_figure_and_the_table_pairs_deltas(cli, store, tmp_path):
    result = cli("run", "-d", DATA, "-n", "gaussian:25/255", "-m", "gaussian-filter", "-m", "noisy",
                 "--metric", "psnr", "--sigma-in", "oracle,x0.5,x2", "--limit-images", "3", "--store", store,
                 "--quiet")
    assert result.code == 0, result.err
    table = {r["denoiser"]: r for r in csv.DictReader(io.StringIO(
        cli("leaderboard", "--store", store, "--format", "csv").out))}
    half, oracle = table["gaussian-filter @ x0.5"], table["gaussian-filter"]
    assert float(half["delta_vs_oracle"]) == pytest.approx(float(half["mean"]) - float(oracle["mean"]), abs=1e-9)
    assert float(half["delta_ci95_low"]) <= float(half["delta_vs_oracle"]) <= float(half["delta_ci95_high"])
    assert oracle["delta_vs_oracle"] == "" and table["noisy"]["sigma_in"] == "blind"
    figures = tmp_path / "figures"
    report = cli("report", "--store", store, "--output", tmp_path / "r.html", "--figures", figures)
    assert report.code == 0, report.err
    assert (figures / "psnr_vs_sigma_in.png").is_file()
    assert "robustness to the level given" in (tmp_path / "r.html").read_text()


def test_an_estimate_sits_at_its_mean_estimate_over_the_truth_on_a_subset_too(cli, store):
    from bench.reports import figures, tables
    from bench.store.database import open_existing

    result = cli("run", "-d", DATA, "-n", "gaussian:25/255", "-m", "gaussian-filter", "--metric", "psnr",
                 "--sigma-in", "oracle,x2,estimate:skimage", "--limit-images", "2", "--store", store, "--quiet")
    assert result.code == 0, result.err
    (mean,), = rows(store, "SELECT avg(value) FROM estimates")
    with open_existing(store) as opened:
        table = tables.leaderboard(opened, "psnr")
        ratios = dict(zip(table["sigma_in"], figures.received_ratio(opened, table)))
    assert ratios["oracle"] == 1.0 and ratios["x2"] == pytest.approx(2.0)
    assert ratios["estimate:skimage"] == pytest.approx(mean / (25 / 255))


def test_a_blind_member_of_a_sigma_aware_family_is_one_row_across_choices():
    """deepinv's DnCNN ignores sigma (its forward says so): one blind cell, not a copy per choice;
    DRUNet, of the same family, takes every choice."""
    from bench.config import RunConfig
    from bench.grid.planning import build_grid
    from bench.plugins import get_plugin_set
    from bench.registry import Registry

    registry = Registry(get_plugin_set())
    assert registry.get("denoisers", "deepinv:DRUNet").metadata["sigma_aware"] is True
    config = RunConfig(datasets=[DATA], noise=["gaussian:25/255"], limit_images=1, sigma_in=["oracle", "x2"],
                       denoisers=["deepinv:DnCNN[in_channels=1,out_channels=1,depth=3,nf=8,pretrained=none]",
                                  "gaussian-filter"])
    cells = build_grid(config, registry, quiet=True).cells
    assert sorted((c.denoiser.partition("[")[0], c.sigma_in) for c in cells) == [
        ("deepinv:DnCNN", "blind"), ("gaussian-filter", "oracle"), ("gaussian-filter", "x2")]
