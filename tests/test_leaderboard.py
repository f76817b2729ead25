"""Leaderboards: statistics against hand computation, wide layout, ranking summary, provenance."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.cli import main as cli
from bench.grid.cells import Cell
from bench.reports import rendering, tables
from bench.store.database import CellResult, Store

RNG = np.random.default_rng(0)
#: (dataset, noise, level) -> denoiser -> per-image PSNR; SSIM is PSNR / 40.
TRUTH = {
    ("set-a", "gaussian", 15 / 255): {"good": RNG.normal(30, 2, 6), "bad": RNG.normal(25, 2, 6)},
    ("set-a", "gaussian", 50 / 255): {"good": RNG.normal(25, 2, 6), "bad": RNG.normal(19, 2, 6)},
    ("set-a", "poisson", 16.0): {"good[vst=anscombe]": RNG.normal(24, 2, 6), "bad": RNG.normal(23, 2, 6)},
    ("set-b", "gaussian", 15 / 255): {"good": RNG.normal(28, 1, 4), "bad": RNG.normal(29, 1, 4)},
}


def record(store: Store, run_id: str, dataset: str, noise: str, level: float, denoiser: str,
           result: CellResult, key: str | None = None) -> None:
    cell = Cell(dataset, noise, level, denoiser, 0, denoiser, "sigma",
                key or f"{dataset}-{noise}-{level}-{denoiser}")
    store.record_cell(run_id, cell, 7, "default", list(next(iter(result.scores.values())))
                      if result.scores else [], "cpu", result)


def done(values) -> CellResult:
    return CellResult("done", denoise_seconds=0.01 * len(values),
                      scores={f"im{i}": {"psnr": float(v), "ssim": float(v) / 40} for i, v in enumerate(values)})


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "bench.sqlite") as store:
        store.set_metric_info("psnr", True)
        store.set_metric_info("ssim", True)
        run_id = store.start_run({"seed": 7, "protocol": "default"},
                                 {"denoise-bench": "0.1.0", "torch": "9.9", "plugins": {"core": "0.1.0"}},
                                 "cpu", ["denoise-bench", "run"])
        for (dataset, noise, level), rows in TRUTH.items():
            for name, values in rows.items():
                record(store, run_id, dataset, noise, level, name, done(values))
        store.run_id = run_id
        yield store


def test_long_table_statistics_match_a_hand_computation(store):
    table = tables.leaderboard(store, "psnr")
    for (dataset, noise, level), rows in TRUTH.items():
        for name, values in rows.items():
            row = table[(table["dataset"] == dataset) & (table["noise"] == noise)
                        & np.isclose(table["level"], level) & (table["denoiser"] == name)].iloc[0]
            low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
            assert row["n"] == len(values)
            assert row["mean"] == pytest.approx(values.mean())
            assert row["std"] == pytest.approx(values.std(ddof=1))
            assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((low, high))
            best = max(rows, key=lambda n: rows[n].mean())
            assert (row["rank"] == 1) == (name == best)
    gaussian = table[table["noise"] == "gaussian"]
    assert set(gaussian["level_label"]) == {"sigma=15", "sigma=50"}
    assert table.loc[table["noise"] == "poisson", "level_label"].tolist() == ["peak=16", "peak=16"]
    assert list(table.columns) == ["metric", "dataset", "noise", "level", "level_label", "denoiser", "sigma_in",
                                   "n", "mean", "std", "ci95_low", "ci95_high", "reps", "rep_std",
                                   "rank", "rank_tied"]


def test_only_the_latest_done_attempt_of_a_cell_counts(store):
    record(store, store.run_id, "set-b", "gaussian", 15 / 255, "bad", done([40.0, 40.0, 40.0, 40.0]),
           key="rerun-after-a-code-change")
    row = tables.leaderboard(store, "psnr").query("dataset == 'set-b' and denoiser == 'bad'").iloc[0]
    assert row["n"] == 4 and row["mean"] == 40.0


def test_the_latest_attempt_is_chosen_by_time_not_by_row_order():
    attempts = pd.DataFrame({"cell": ["a", "a", "b", "a", "b"],
                             "updated": ["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-02", "2026-01-02"],
                             "attempt": [1, 2, 3, 4, 5]})
    latest = tables.latest_by(attempts, ["cell"]).set_index("cell")["attempt"]
    assert latest.to_dict() == {"a": 1, "b": 5}  # b: a tie in time keeps the later row


def test_wide_layout_has_one_row_per_denoiser_and_one_column_per_noise_level_metric(store):
    wide = tables.wide(store, ["psnr", "ssim"])
    assert list(wide.index) == [("set-a", "good"), ("set-a", "bad"), ("set-b", "bad"), ("set-b", "good")]
    assert list(wide.columns) == [("gaussian", 15 / 255, "psnr"), ("gaussian", 15 / 255, "ssim"),
                                  ("gaussian", 50 / 255, "psnr"), ("gaussian", 50 / 255, "ssim"),
                                  ("poisson", 16.0, "psnr"), ("poisson", 16.0, "ssim")]
    # the default-VST Poisson row joins its Gaussian row, as papers print them
    assert wide.loc[("set-a", "good"), ("poisson", 16.0, "psnr")] == pytest.approx(
        TRUTH[("set-a", "poisson", 16.0)]["good[vst=anscombe]"].mean())
    assert wide.loc[("set-b", "good"), ("gaussian", 15 / 255, "ssim")] == pytest.approx(
        TRUTH[("set-b", "gaussian", 15 / 255)]["good"].mean() / 40)
    assert np.isnan(wide.loc[("set-b", "good"), ("poisson", 16.0, "psnr")])
    flat = rendering.flatten(wide)
    assert list(flat.columns[:4]) == ["dataset", "denoiser", "gaussian sigma=15 psnr", "gaussian sigma=15 ssim"]


def test_best_of_each_column_is_bold_within_its_dataset(store):
    latex = rendering.render(tables.wide(store, ["psnr"]), "latex")
    rows = {line.split(" & ")[0] + "/" + line.split(" & ")[1]: line for line in latex.splitlines()
            if line.startswith("set-")}
    assert rows["set-a/good"].count(r"\textbf") == 3 and r"\textbf" not in rows["set-a/bad"]
    assert rows["set-b/bad"].count(r"\textbf") == 1 and r"\textbf" not in rows["set-b/good"]
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\cmidrule(lr){3-4}"):
        assert rule in latex


def test_ranking_summary_is_the_mean_rank_over_datasets_and_levels(store):
    summary = tables.ranking_summary(store, "psnr").set_index("denoiser")
    ranks = {"good": [], "bad": []}
    for rows in TRUTH.values():
        order = sorted(rows, key=lambda n: -rows[n].mean())
        for position, name in enumerate(order, start=1):
            ranks[name.split("[")[0]].append(position)
    for name, expected in ranks.items():
        assert summary.loc[name, "mean_rank"] == pytest.approx(np.mean(expected))
        assert summary.loc[name, "wins"] == expected.count(1)
        assert summary.loc[name, "groups"] == 4 and summary.loc[name, "datasets"] == 2
    assert summary.index[0] == "good"


def test_every_export_carries_its_provenance(store):
    table = tables.leaderboard(store, "psnr")
    prov = tables.provenance(store)
    assert prov["run_ids"] == [store.run_id] and prov["seeds"] == [7]
    assert prov["devices"] == ["cpu"] and prov["protocols"] == ["default"]
    head = [line for line in rendering.render(table, "latex", prov).splitlines() if line.startswith("% ")]
    text = "\n".join(head)
    for needed in (store.run_id, "torch 9.9", "device: cpu", "seed: 7", "protocol: default"):
        assert needed in text, f"latex header lacks {needed!r}"
    assert rendering.render(table, "latex", prov).endswith("\\end{tabular}\n")
    assert rendering.render(table, "csv", prov) == table.to_csv(index=False)  # plain: no comment lines
    markdown = rendering.render(table, "markdown", prov)
    assert markdown.startswith("<!--\n") and store.run_id in markdown.split("-->")[0]
    data = json.loads(rendering.render(table, "json", prov))
    assert data["provenance"]["run_ids"] == [store.run_id]
    assert data["provenance"]["runs"][0]["versions"]["torch"] == "9.9"
    assert len(data["rows"]) == len(table)
    assert data["rows"][0]["mean"] == table["mean"].iloc[0]  # full precision


def test_csv_is_plain_with_every_metric_and_provenance_beside_it(store, tmp_path, capsys):
    out = tmp_path / "board.csv"
    assert cli(["leaderboard", "--store", str(store.path), "--format", "csv", "--output", str(out)]) == 0
    table = pd.read_csv(out)  # a bare read: no comment lines, a header row first
    assert sorted(table["metric"].unique()) == ["psnr", "ssim"]
    assert len(table) == 2 * sum(len(rows) for rows in TRUTH.values())
    prov = json.loads((tmp_path / "board.provenance.json").read_text())
    assert prov["run_ids"] == [store.run_id] and prov["runs"][0]["versions"]["torch"] == "9.9"
    elsewhere = tmp_path / "prov" / "p.json"
    assert cli(["leaderboard", "--store", str(store.path), "--format", "csv", "--metric", "psnr",
                "--provenance", str(elsewhere)]) == 0
    assert pd.read_csv(io.StringIO(capsys.readouterr().out))["metric"].unique().tolist() == ["psnr"]
    assert json.loads(elsewhere.read_text())["cells"] == prov["cells"]


def test_filters_narrow_every_table(store, capsys):
    path = str(store.path)
    run_b = store.start_run({"seed": 7}, {}, "cpu", [])
    cell = Cell("set-c", "gaussian", 0.1, "new", 0, "new", "sigma", "run-b-cell")
    store.plan_cells(run_b, [cell], 7, "default", ["psnr"])
    store.record_cell(run_b, cell, 7, "default", ["psnr"], "cpu", done([30.0, 31.0]))

    def rows_for(*flags):
        assert cli(["leaderboard", "--store", path, "--format", "csv", "--metric", "psnr", *flags]) == 0
        return pd.read_csv(io.StringIO(capsys.readouterr().out))

    assert set(rows_for("--dataset", "set-a")["dataset"]) == {"set-a"}
    assert set(rows_for("--denoiser", "good*")["denoiser"]) == {"good", "good[vst=anscombe]"}
    assert set(rows_for("--denoiser", "good[vst=anscombe]")["denoiser"]) == {"good[vst=anscombe]"}
    assert set(rows_for("--noise", "poisson")["noise"]) == {"poisson"}
    gaussian15 = rows_for("--noise", "gaussian:15/255")
    assert set(gaussian15["level_label"]) == {"sigma=15"} and set(gaussian15["dataset"]) == {"set-a", "set-b"}
    assert rows_for("--run", "last")[["dataset", "denoiser"]].values.tolist() == [["set-c", "new"]]
    assert cli(["leaderboard", "--store", path, "--run", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert cli(["leaderboard", "--store", path, "--dataset", "nowhere"]) == 2
    assert "matching the filters" in capsys.readouterr().err


def test_run_command_rendering_keeps_working_without_provenance(store):
    text = rendering.render(tables.leaderboard(store, "psnr"), "table")
    assert "set-a" in text and "rank_tied" in text and "runs:" not in text
    assert isinstance(json.loads(rendering.render(tables.leaderboard(store, "psnr"), "json")), list)


def test_sampler_cells_with_one_item_and_their_own_metric_do_not_break_tables(store):
    store.set_metric_info("mmd", False)
    for name, value in (("langevin score=oracle", 0.01), ("gradient-ascent score=oracle", 0.3)):
        cell = Cell("gmm2d", "sample:noise", 64.0, name, 0, "oracle", "sample", f"sample-{name}")
        store.record_cell(store.run_id, cell, 0, "default", ["mmd"], "cpu",
                          CellResult("done", scores={"samples": {"mmd": value}}))
    table = tables.leaderboard(store, "mmd")
    assert table["n"].tolist() == [1, 1] and table["std"].isna().all()
    assert table["rank"].tolist() == [1, 2] and table["rank_tied"].tolist() == [1, 1]
    assert len(tables.leaderboard(store, "psnr")) == sum(len(rows) for rows in TRUTH.values())
    prov = tables.provenance(store)
    for layout in (table, tables.wide(store, ["mmd"]), tables.ranking_summary(store, "mmd")):
        for fmt in rendering.FORMATS:
            assert rendering.render(layout, fmt, prov)


def test_cli_exports_read_back_and_failed_cells_are_listed_on_request(store, capsys):
    record(store, store.run_id, "set-a", "gaussian", 15 / 255, "crashy",
           CellResult("error", error="RuntimeError: boom"))
    record(store, store.run_id, "set-a", "gaussian", 15 / 255, "bm3d", CellResult("skipped", error="no bm3d"))
    path = str(store.path)
    assert cli(["leaderboard", "--store", path, "--wide", "--format", "csv"]) == 0
    out = capsys.readouterr()
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out.out)),
                                  rendering.flatten(tables.wide(store, ["psnr", "ssim"])))
    assert "2 cell(s) not ranked (1 error, 1 skipped); --show-failed" in out.err
    assert cli(["leaderboard", "--store", path, "--summary", "--show-failed"]) == 0
    out = capsys.readouterr()
    assert "RuntimeError: boom" in out.err and "no bm3d" in out.err and "mean_rank" in out.out
    assert cli(["leaderboard", "--store", path, "--metric", "nope"]) == 2
    assert "available: psnr, ssim" in capsys.readouterr().err


def test_a_failure_fixed_by_a_later_run_is_not_listed(store):
    record(store, store.run_id, "set-b", "gaussian", 15 / 255, "flaky", CellResult("error", error="oom"),
           key="first-try")
    assert len(tables.failed_cells(store)) == 1
    record(store, store.run_id, "set-b", "gaussian", 15 / 255, "flaky", done([1.0, 2.0]), key="second-try")
    assert tables.failed_cells(store).empty


def test_wide_falls_back_to_the_metric_the_store_has_like_the_report(tmp_path, capsys):
    with Store(tmp_path / "mse.sqlite") as store:
        store.set_metric_info("mse", False)
        run_id = store.start_run({"seed": 7, "protocol": "default"}, {"denoise-bench": "0.1.0"}, "cpu", ["run"])
        result = CellResult("done", denoise_seconds=0.1, scores={"im0": {"mse": 0.01}, "im1": {"mse": 0.03}})
        record(store, run_id, "set-a", "gaussian", 15 / 255, "good", result)
        assert tables.default_metrics(store) == ["mse"]
    assert cli(["leaderboard", "--store", str(tmp_path / "mse.sqlite"), "--wide", "--format", "csv"]) == 0
    assert "gaussian sigma=15 mse" in capsys.readouterr().out  # was: "no scores for metric 'psnr'"


@pytest.mark.parametrize("protocols, kept", [(["default", "default"], False), (["default", None], False),
                                             (["paper", "paper"], True), (["default", "paper"], True)])
def test_the_protocol_column_shows_only_when_a_row_left_the_default(protocols, kept):
    table = pd.DataFrame({"denoiser": ["a", "b"], "protocol": protocols})
    assert ("protocol" in tables.without_default_protocol(table).columns) == kept
