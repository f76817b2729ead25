"""Sampler cells as grid rows: config tables, resume, isolation, references, the samplers' table."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from bench.config import RunConfig
from bench.grid.sampler_cells import load_sampling_data
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.specs import parse_spec
from bench.store.database import SCHEMA_VERSION, Store
from bench.training.model_store import ModelContext, using_context
from bench_plugins import gmm
from conftest import rows, sigkill_mid_grid, write_labelled_blocks

pytestmark = pytest.mark.usefixtures("one_thread")

PLUGIN = '''
import time
import bench
from bench_plugins.samplers import Langevin

class Slow(Langevin):
    """Langevin that sleeps at every step (to be killed mid-grid)."""
    name = "slow-langevin"
    def __init__(self, delay=0.0, **params):
        super().__init__(**params)
        self.delay = delay
    def params(self):
        return {**super().params(), "delay": self.delay}
    def step(self, x, score, step_size, generator):
        time.sleep(self.delay)
        return super().step(x, score, step_size, generator)

class NaNs(Langevin):
    """One chain turns NaN at every step."""
    name = "nan-langevin"
    def step(self, x, score, step_size, generator):
        out = super().step(x, score, step_size, generator)
        out[0] = float("nan")
        return out

class Shrinks(Langevin):
    """Returns samples of the wrong shape."""
    name = "shrinking"
    def final_step(self, x, score_fn):
        return x[:, :1]

@bench.hookimpl
def register_samplers(register):
    register("slow-langevin", Slow)
    register("nan-langevin", NaNs)
    register("shrinking", Shrinks)
'''


@pytest.fixture
def plugin(write_plugin):
    return write_plugin(PLUGIN, "test_samplers_plugin.py")


def write_config(path, tables: list[str], plugin=None) -> str:
    lines = [f'plugins = ["{plugin}"]'] if plugin else []
    for table in tables:
        lines += ["[[sampling]]", table]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def bench_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "bench", *map(str, args)]


def sample_board(store) -> pd.DataFrame:
    out = subprocess.run(bench_cmd("leaderboard", "--samples", "--store", store, "--format", "csv"),
                         capture_output=True, text=True, check=True).stdout
    return pd.read_csv(io.StringIO(out), comment="#")


# --- the grid from a config -----------------------------------------------------------------------

def test_a_sampling_table_becomes_keyed_cells_with_their_own_table(cli, store, tmp_path):
    config = write_config(tmp_path / "s.toml", [
        'dataset = "gmm2d"\nscores = ["oracle", "noisy"]\n'
        'samplers = ["langevin[sigma=0.05,steps=30]", "gradient-ascent[sigma=0.05,steps=30]", '
        '"annealed-langevin[sigma=0.05,sigma_max=1,levels=3,steps=10]"]\nn = 50\nrepetitions = 3'])
    result = cli("run", config, "--store", store, "--device", "cpu", "--quiet")
    assert result.code == 0, result.err
    statuses = rows(store, "SELECT score, sampler, status, error FROM sample_cells")
    assert len(statuses) == 2 * 3 * 3 and len({r[:2] for r in statuses}) == 6
    skipped = {(score, sampler.split("[")[0]) for score, sampler, status, error in statuses
               if status == "skipped"}
    assert skipped == {("noisy", "annealed-langevin")}, "a blind score model cannot anneal"
    assert all("not sigma-aware" in error for *_, status, error in statuses if status == "skipped")
    assert rows(store, "SELECT count(*) FROM cells") == [(0,)]

    board = sample_board(store)
    mmd = board[(board["metric"] == "mmd") & (board["score"] == "oracle")
                & board["sampler"].str.startswith("langevin")].iloc[0]
    values = [v for (v,) in rows(store, "SELECT s.value FROM sample_scores s JOIN sample_cells c "
                                        "ON c.key = s.cell_key WHERE s.metric = 'mmd' AND c.score = 'oracle' "
                                        "AND c.sampler LIKE 'langevin%'")]
    assert mmd["n"] == 3 and mmd["mean"] == pytest.approx(np.mean(values))
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert mmd["ci95_high"] - mmd["mean"] == pytest.approx(half), "CI over repetitions"
    assert len(set(values)) == 3, "each repetition draws new chains"

    again = cli("run", config, "--store", store, "--device", "cpu", "--quiet")
    assert again.code == 0 and "(15 from earlier runs)" in again.err


@pytest.mark.parametrize("table, message", [
    ('dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = ["langevin[step_size=-0.1]"]', "step_size must be > 0"),
    ('dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = ["langevin"]\nn = 0', "n (chains) must be an integer >= 2"),
    ('dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = ["langevin"]\nrepetitions = 0', "repetitions must be"),
    ('dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = ["langevin"]\nchain = 3', "unknown key(s) chain"),
    ('dataset = "gmm2d"\nscores = []\nsamplers = ["langevin"]', "langevin needs a score model"),
    ('dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = ["nope"]', "unknown sampler 'nope'"),
    ('dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = ["edm-heun[sigma_max=model]"]',
     "edm-heun[sigma_max=model]: this score model records no trained noise range"),
])
def test_bad_sampling_tables_are_one_line_and_write_nothing(cli, store, tmp_path, table, message):
    result = cli("run", write_config(tmp_path / "bad.toml", [table]), "--store", store, "--quiet")
    assert result.code == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert not store.exists()


@pytest.mark.parametrize("args, message", [
    (["langevin[step_size=-1]"], "step_size must be > 0"),
    (["langevin", "--n", "0"], "--n must be >= 2"),
    (["gradient-ascent", "--steps", "-5"], "steps must be an integer >= 1"),
    (["langevin", "--n", str(10**12)], "GB for the samples alone, more than this machine's"),
    (["langevin", "--steps", str(10**12)], "steps need a schedule of 8e+03 GB"),
])
def test_bad_sampler_flags_are_one_line(cli, store, args, message):
    result = cli("sample", *args, "--score", "oracle", "--dataset", "gmm2d", "--store", store)
    assert result.code == 2 and message in result.err
    assert len(result.err.strip().splitlines()) == 1 and not store.exists()


def test_nan_and_wrong_shape_samplers_are_error_cells_and_the_grid_goes_on(cli, store, plugin):
    result = cli("sample", "nan-langevin[steps=5]", "shrinking[steps=5]", "langevin[steps=5]",
                 "--score", "oracle", "--dataset", "gmm2d", "--n", "20", "--plugin", plugin,
                 "--store", store, "--device", "cpu", "--quiet")
    assert result.code == 1
    found = {sampler.split("[")[0]: (status, error) for sampler, status, error in
             rows(store, "SELECT sampler, status, error FROM sample_cells")}
    assert found["nan-langevin"][0] == "error" and found["nan-langevin"][1].startswith("diverged at step 1")
    assert found["shrinking"] == ("error", "ValueError: sampler returned samples of shape (20, 1), "
                                           "expected (20, 2)")
    assert found["langevin"] == ("done", None)


# --- resume, Dask -------------------------------------------------------------------------------

def test_sampler_cells_resume_after_a_kill_of_the_driver(plugin, tmp_path):
    config = write_config(tmp_path / "slow.toml", [
        'dataset = "gmm2d"\nscores = ["oracle"]\n'
        'samplers = ["slow-langevin[delay=0.1,sigma=0.05,steps=10]"]\nn = 100\nrepetitions = 6'], plugin)
    killed, whole = tmp_path / "killed.sqlite", tmp_path / "whole.sqlite"
    before = sigkill_mid_grid(bench_cmd("run", config, "--store", killed, "--device", "cpu", "--quiet"),
                              killed, "sample_cells")
    assert 2 <= len(before) < 6, "the driver should have been killed mid-grid"
    assert rows(killed, "PRAGMA integrity_check") == [("ok",)]

    assert subprocess.run(bench_cmd("run", config, "--store", killed, "--device", "cpu", "--quiet")).returncode == 0
    after = dict(rows(killed, "SELECT key, updated FROM sample_cells WHERE status = 'done'"))
    assert len(after) == 6
    assert all(after[key] == stamp for key, stamp in before.items()), "done cells were recomputed"
    assert subprocess.run(bench_cmd("run", config, "--store", whole, "--device", "cpu", "--quiet")).returncode == 0
    pd.testing.assert_frame_equal(sample_board(killed), sample_board(whole))


def test_sampler_cells_run_under_dask_with_the_local_numbers(tmp_path):
    config = write_config(tmp_path / "d.toml", [
        'dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = ["langevin[sigma=0.05,steps=20]", '
        '"gradient-ascent[sigma=0.05,steps=20]"]\nn = 64'])
    local, dask = tmp_path / "local.sqlite", tmp_path / "dask.sqlite"
    assert subprocess.run(bench_cmd("run", config, "--store", local, "--device", "cpu", "--quiet")).returncode == 0
    result = subprocess.run(bench_cmd("run", config, "--store", dask, "--device", "cpu", "--quiet",
                                      "--executor", "dask", "--workers", "1"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    query = ("SELECT c.key, s.metric, s.value FROM sample_cells c JOIN sample_scores s "
             "ON s.cell_key = c.key ORDER BY 1, 2")
    here, there = rows(local, query), rows(dask, query)
    assert [r[:2] for r in here] == [r[:2] for r in there] and len(here) > 10
    # equal up to summation order (a Dask worker runs torch on one thread)
    assert [r[2] for r in here] == pytest.approx([r[2] for r in there], rel=1e-9, abs=1e-12)


# --- references -------------------------------------------------------------------------------------

def flat_rows(x: torch.Tensor) -> set[tuple]:
    return {tuple(row) for row in x.reshape(len(x), -1).tolist()}


@pytest.mark.parametrize("dataset", ["gmm2d", "gmm-images"])
def test_a_reference_set_is_never_the_training_split(dataset):
    registry = Registry(get_plugin_set())
    spec = parse_spec(dataset, "dataset")
    training = torch.stack(list(gmm.gmm_images(split="train").images)) if dataset == "gmm-images" \
        else gmm.gmm2d(split="train").points
    truth = gmm.truth_of(dataset)
    # The defect this guards against: seed + 1 at --seed 0 re-draws the training split itself.
    old = truth.sample(len(training), torch.Generator().manual_seed(0 + 1))
    assert torch.equal(old, training)
    for seed in range(4):
        data = load_sampling_data(registry, spec, None, seed, 1000, None)
        assert torch.equal(data.training, training)
        assert not flat_rows(data.reference) & flat_rows(training), f"seed {seed}: shared items"
        assert not flat_rows(data.reference) & flat_rows(data.items), "nor the evaluated split"


@pytest.fixture(scope="module")
def labelled_root(tmp_path_factory):
    """A small labelled MNIST in torchvision's layout (ROOT/MNIST/raw/*-ubyte); nothing downloads."""
    return write_labelled_blocks(tmp_path_factory.mktemp("labelled"), {"train": 300, "t10k": 100})


def test_mnist_references_are_its_test_split_and_memorisation_its_train_split(labelled_root, tmp_path):
    registry = Registry(get_plugin_set())
    config = RunConfig(seed=0, data_root=str(labelled_root), models=str(tmp_path / "models"))
    with using_context(ModelContext.for_run(config, registry, quiet=True)):
        data = load_sampling_data(registry, parse_spec("mnist", "dataset"), str(labelled_root), 0, 1000,
                                  None)
    from bench.data.labelled import load_labelled

    test, _ = load_labelled("mnist", str(labelled_root), "test")
    train, _ = load_labelled("mnist", str(labelled_root), "train")
    assert torch.equal(data.reference, test[0::2]) and torch.equal(data.training, train)
    assert torch.equal(data.held_out, test[1::2]), "the real-data row draws the other half"


def test_the_real_data_floor_is_held_out_and_ranks_only_against_its_chain_count(cli, store, tmp_path):
    """real-data needs no score, costs 0 NFE, draws neither reference nor training points; FD-like
    metrics fall with N, so ranks restart for every chain count."""
    langevin = '"langevin[sigma=0.05,steps=20]"'
    config = write_config(tmp_path / "floor.toml", [
        f'dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = [{langevin}, "langevin[sigma=0.05,steps=40]"]\nn = 64',
        f'dataset = "gmm2d"\nscores = ["oracle"]\nsamplers = [{langevin}]\nn = 256',
        'dataset = "gmm2d"\nsamplers = ["real-data"]\nn = 64',
        'dataset = "gmm2d"\nsamplers = ["real-data"]\nn = 256'])
    result = cli("run", config, "--store", store, "--device", "cpu", "--quiet")
    assert result.code == 0, result.err
    cells = rows(store, "SELECT sampler, score, chains, status FROM sample_cells ORDER BY chains, sampler")
    assert [c[:3] for c in cells] == [("langevin[sigma=0.05,step_size=0.0005,steps=20]", "oracle", 64),
                                      ("langevin[sigma=0.05,step_size=0.0005,steps=40]", "oracle", 64),
                                      ("real-data", "none", 64),
                                      ("langevin[sigma=0.05,step_size=0.0005,steps=20]", "oracle", 256),
                                      ("real-data", "none", 256)]
    assert {c[3] for c in cells} == {"done"}
    board = sample_board(store)
    nfe = board[board["metric"] == "nfe"].set_index(["sampler", "chains"])["mean"]
    assert nfe[("real-data", 64)] == 0 and nfe[("langevin[sigma=0.05,step_size=0.0005,steps=20]", 64)] == 20
    mmd = board[board["metric"] == "mmd"]
    assert sorted(mmd["rank"]) == [1, 1, 2, 2, 3], "ranked within each chain count"
    figures = tmp_path / "figures"
    assert cli("report", "--store", store, "--output", str(tmp_path / "r.html"), "--figures",
               str(figures)).code == 0
    assert (figures / "fd_vs_nfe_0.png").is_file(), "MMD against NFE at 64 chains (two langevin points)"
    assert not (figures / "fd_vs_nfe_1.png").exists(), "no curve at 256 chains: one point per family"
    page = (tmp_path / "r.html").read_text()
    assert "s/sample" in page and "real-data" in page
    registry = Registry(get_plugin_set())
    data = load_sampling_data(registry, parse_spec("gmm2d", "dataset"), None, 0, 1000, None)
    assert not flat_rows(data.held_out) & (flat_rows(data.reference) | flat_rows(data.training))


def test_an_mnist_sampling_grid_trains_its_classifier_once_and_scores_with_it(cli, labelled_root, tmp_path):
    store, models = tmp_path / "s.sqlite", tmp_path / "models"
    args = ["sample", "initial-noise", "--score", "empirical-mmse", "--dataset", "mnist",
            "--data-root", labelled_root, "--n", "30", "--store", store, "--models", models, "--quiet"]
    result = cli(*args)
    assert result.code == 0, result.err
    assert result.err.count("training the mnist classifier") == 1
    assert len(list(models.glob("lenet--mnist--*.pt"))) == 1
    metrics = dict(rows(store, "SELECT metric, value FROM sample_scores"))
    assert {"classifier_fd", "confidence", "classes_present", "label_kl", "mmd", "memorised"} <= set(metrics)
    again = cli(*args[:-1], "--repetitions", "2", "--quiet")
    assert again.code == 0 and "training the mnist classifier" not in again.err


# --- the store ---------------------------------------------------------------------------------

def test_old_sampler_rows_move_out_of_the_denoiser_cells(tmp_path):
    """Earlier versions stored a sampler cell in ``cells`` with the number of chains as ``level``."""
    path = tmp_path / "old.sqlite"
    with Store(path) as store:
        store.db.execute("INSERT INTO cells (key, run_id, dataset, degradation, level, denoiser, repetition, "
                         "seed, protocol, metrics, status, error, seconds, denoise_seconds, n_images, device, "
                         "updated) VALUES ('k1', 'r1', 'gmm2d', 'sample:noise', 200.0, "
                         "'langevin[steps=200] score=oracle', 0, 0, 'default', '[]', 'done', NULL, "
                         "1.5, 1.2, 1, 'cpu', '2026-01-01')")
        store.db.execute("INSERT INTO scores VALUES ('k1', 'samples', 'mmd', 0.01)")
        store.db.execute("PRAGMA user_version = 0")  # those versions left it unset
    with Store(path):
        pass
    assert rows(path, "SELECT count(*) FROM cells") == [(0,)] and rows(path, "SELECT count(*) FROM scores") == [(0,)]
    assert rows(path, "SELECT dataset, score, sampler, chains, init, status FROM sample_cells") == [
        ("gmm2d", "oracle", "langevin[steps=200]", 200, "noise", "done")]
    assert rows(path, "SELECT cell_key, metric, value FROM sample_scores") == [("k1", "mmd", 0.01)]
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]  # upgraded once, not at every open


def test_the_report_shows_the_samplers_table_and_sample_grids(cli, store, tmp_path):
    result = cli("sample", "initial-noise[sigma=0.05]", "gradient-ascent[sigma=0.05,steps=20]",
                 "langevin[sigma=0.05,steps=20]", "--score", "oracle", "--dataset", "gmm-images[n=32]",
                 "--n", "16", "--store", store, "--device", "cpu", "--quiet")
    assert result.code == 0, result.err
    figures = tmp_path / "figures"
    report = cli("report", "--store", store, "--output", tmp_path / "r.html", "--figures", figures)
    assert report.code == 0, report.err
    text = (tmp_path / "r.html").read_text()
    assert '<section id="samplers">' in text and '<section id="samples">' in text
    assert "gradient-ascent[sigma=0.05" in text and text.count("data:image/png;base64,") == 3, \
        "one grid per row"
    assert (figures / "samples_2.png").exists() and (figures / "samples_2.svg").exists()
    again = cli("report", "--store", store, "--metric", "mmd", "--output", tmp_path / "m.html",
                "--figures", tmp_path / "more")
    assert again.code == 2 and "--metric chooses denoiser scores" in again.err
    assert not (tmp_path / "m.html").exists() and not (tmp_path / "more").exists()


@pytest.mark.parametrize("name", ["origin-mnist.toml", "origin-fashion-mnist.toml"])
def test_the_shipped_study_configs_name_real_samplers_and_score_models(name):
    from bench.config import default_config_path, load_config, make_config
    from bench.grid.sampler_cells import parse_tables
    from bench.sampling.classifier import ClassifierOptions

    path = default_config_path().with_name(name)
    config = make_config(load_config(path), {})
    registry = Registry(get_plugin_set())
    # The header says how long each learner trains, as its defaults for the dataset do.
    header = path.read_text()
    lengths = {"lenet": ClassifierOptions().images}
    for denoiser in config.denoisers:
        learner = registry.get("denoisers", denoiser).metadata.get("learned")
        if learner is not None:
            lengths[denoiser] = learner.defaults(config.datasets[0]).images
    assert len(lengths) == 5, lengths  # the judge, three DAEs and score-unet
    for learner_name, images in lengths.items():
        assert re.search(rf"^#   {learner_name}\b.*\b{images:,} images seen", header, re.M), learner_name
    tables = parse_tables(config.sampling)
    assert {t.datasets[0] for t in tables} == {config.datasets[0]}
    for table in tables:
        for text in table.samplers:
            registry.build("samplers", parse_spec(text, "sampler"))
        for score in table.scores:
            registry.get("denoisers", score)


def test_sampler_family_drops_only_the_step_count():
    from bench.reports.sample_sections import sampler_family

    assert sampler_family("edm-heun[rho=7,sigma_max=model,sigma_min=0.01,steps=18]") == \
        "edm-heun[rho=7,sigma_max=model,sigma_min=0.01]"
    assert sampler_family("ddim[steps=5]") == "ddim" and sampler_family("real-data") == "real-data"
