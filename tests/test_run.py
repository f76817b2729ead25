"""The run command end to end: exit codes, resume, failures, bad input, leaderboards."""

import io
import json

import pandas as pd
import torch
import pytest
from skimage.metrics import peak_signal_noise_ratio

from bench.data.datasets import skimage_gray
from bench.grid.inputs import make_batches
from bench.noise.degradations import GaussianDegradation

from conftest import rows

GRID = ["-d", "skimage-gray[crop=64]", "-n", "gaussian:0.1,25/255", "-n", "poisson:16", "--quiet"]

FLAKY = '''
import torch
import bench

class Bad:
    def __init__(self, mode):
        self.mode = mode
    def __call__(self, y, sigma):
        if self.mode == "raise":
            raise RuntimeError("kaboom")
        if self.mode == "nan":
            return y * float("nan")
        if self.mode == "shape":
            return y[..., :-1]
        return y.to(torch.int64)

def skip():
    raise bench.Skip("needs a GPU farm")

@bench.hookimpl
def register_denoisers(register):
    register("bad", Bad, sigma_aware=False)
    register("skipper", skip)
'''


def test_run_then_rerun_skips_done_cells(cli, store):
    first = cli("run", *GRID, "-m", "noisy", "-m", "gaussian-filter", "--store", store)
    assert first.code == 0, first.err
    assert "6 cells: 6 done (0 from earlier runs)" in first.err
    keys = rows(store, "SELECT key, updated FROM cells")
    second = cli("run", *GRID, "-m", "noisy", "-m", "gaussian-filter", "--store", store)
    assert second.code == 0 and "(6 from earlier runs)" in second.err
    assert rows(store, "SELECT key, updated FROM cells") == keys
    assert rows(store, "SELECT count(*) FROM runs") == [(2,)]
    assert rows(store, "SELECT count(*) FROM scores") == [(6 * 10 * 2,)]


def test_stored_psnr_is_skimage_psnr_of_the_same_noisy_image(cli, store):
    assert cli("run", "-d", "skimage-gray[crop=64]", "-n", "gaussian:0.1", "-m", "noisy",
               "--store", store, "--quiet").code == 0
    stored = dict(rows(store, "SELECT image_id, value FROM scores WHERE metric = 'psnr'"))
    images = skimage_gray(crop=64)
    batch = make_batches(images, "skimage-gray[crop=64]", GaussianDegradation(), 0.1, 0, 0, 16,
                         __import__("torch").device("cpu"))[0]
    for k, image_id in enumerate(batch.ids):
        expected = peak_signal_noise_ratio(batch.x[k].numpy(), batch.y[k].clamp(0, 1).numpy(),
                                           data_range=1)
        assert stored[image_id] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("mode,message", [
    ("raise", "RuntimeError: kaboom"),
    ("nan", "NaN or inf"),
    ("shape", "returned shape"),
    ("int", "dtype torch.int64"),
])
def test_a_failing_denoiser_fails_its_cells_only(cli, store, write_plugin, mode, message):
    path = write_plugin(FLAKY)
    result = cli("run", *GRID, "-m", f"bad[mode={mode}]", "-m", "noisy", "--plugin", path, "--store", store)
    assert result.code == 1
    assert message in result.err and "FAILED" in result.err
    statuses = rows(store, "SELECT denoiser, status, error FROM cells")
    assert {(d, s) for d, s, _ in statuses} == {(f"bad[mode={mode}]", "error"), ("noisy", "done")}
    assert all(message in e for d, s, e in statuses if s == "error")
    assert rows(store, "SELECT count(*) FROM scores WHERE cell_key IN "
                       "(SELECT key FROM cells WHERE status = 'error')") == [(0,)]


def test_failed_cells_are_retried_and_skips_are_not_failures(cli, store, write_plugin):
    path = write_plugin(FLAKY)
    args = ("run", "-d", "skimage-gray[crop=64]", "-n", "gaussian:0.1", "--plugin", path,
            "--store", store, "--quiet")
    assert cli(*args, "-m", "bad[mode=raise]").code == 1
    assert cli(*args, "-m", "bad[mode=raise]").code == 1
    assert rows(store, "SELECT count(*) FROM cells") == [(1,)]
    skipped = cli(*args, "-m", "skipper")
    assert skipped.code == 0 and "needs a GPU farm" in skipped.err
    assert ("skipped", "needs a GPU farm") in rows(store, "SELECT status, error FROM cells")


def test_poisson_rows_name_their_variance_stabilisation(cli, store):
    result = cli("run", "-d", "skimage-gray[crop=64]", "-n", "poisson:16", "-m", "gaussian-filter",
                 "-m", "gaussian-filter[vst=none]", "-m", "noisy", "--store", store, "--quiet")
    assert result.code == 0, result.err
    assert {r[0] for r in rows(store, "SELECT denoiser FROM cells")} == {
        "gaussian-filter[vst=anscombe]", "gaussian-filter[vst=none]", "noisy"}


def test_leaderboard_formats(cli, store, tmp_path):
    assert cli("run", *GRID, "-m", "noisy", "-m", "gaussian-filter", "--store", store).code == 0
    csv = cli("leaderboard", "--store", store, "--format", "csv")
    table = pd.read_csv(io.StringIO(csv.out))
    for column in ["metric", "dataset", "noise", "level", "level_label", "denoiser", "n", "mean", "std",
                   "ci95_low", "ci95_high", "reps", "rep_std", "rank", "rank_tied"]:
        assert column in table.columns
    assert set(table["metric"]) == {"psnr", "ssim"}  # every metric of the store by default
    table = table[table["metric"] == "psnr"]
    assert len(table) == 6 and set(table["n"]) == {10}
    assert (table[table.denoiser == "noisy"]["rank"] == 2).all()
    gauss = table[table.noise == "gaussian"]
    assert sorted(gauss["level_label"].unique()) == ["sigma=25", "sigma=25.5"]
    assert table[table.noise == "poisson"]["level_label"].unique().tolist() == ["peak=16"]
    assert ((table.ci95_low < table["mean"]) & (table["mean"] < table.ci95_high)).all()

    records = json.loads(cli("leaderboard", "--store", store, "--format", "json", "--metric", "ssim").out)["rows"]
    assert {r["metric"] for r in records} == {"ssim"}
    markdown = cli("leaderboard", "--store", store, "--format", "markdown").out
    assert any(line.startswith("|--") for line in markdown.splitlines())
    latex = cli("leaderboard", "--store", store, "--format", "latex").out
    assert "\\begin{tabular}" in latex
    out = tmp_path / "board.csv"
    assert cli("leaderboard", "--store", store, "--format", "csv", "--output", out).code == 0
    assert out.read_text() == csv.out


def test_mse_ranks_lower_as_better(cli, store):
    assert cli("run", *GRID, "--metric", "mse", "-m", "noisy", "-m", "gaussian-filter",
               "--store", store).code == 0
    table = pd.read_csv(io.StringIO(cli("leaderboard", "--store", store, "--metric", "mse",
                                        "--format", "csv").out))
    best = table[table["rank"] == 1]
    assert set(best.denoiser) == {"gaussian-filter", "gaussian-filter[vst=anscombe]"}


@pytest.mark.parametrize("args,message", [
    (["-d", "nope"], "unknown dataset 'nope'"),
    (["-m", "nosy"], "did you mean 'noisy'"),
    (["--metric", "psnrr"], "unknown metric"),
    (["-n", "gaussian:-0.1"], "must be > 0"),
    (["-n", "gaussian:abc"], "not a number"),
    (["-n", "poisson:0"], "peak must be > 0"),
    (["-n", "laplace:0.1"], "unknown degradation"),
    (["-m", "gaussian-filter[width]"], "malformed"),
    (["-m", "gaussian-filter[radius=2]"], "bad parameters"),
    (["-m", "gaussian-filter[vst=log]"], "vst must be one of"),
    (["-d", "folder:/nonexistent"], "image folder not found"),
    (["-d", "mnist", "--offline"], "denoise-bench fetch mnist"),
    (["--repetitions", "0"], "repetitions must be >= 1"),
    (["--limit-images", "0"], "limit_images must be >= 1"),
    (["--device", "tpu"], "invalid choice"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(cli, store, args, message):
    result = cli("run", *args, "--store", store, "--quiet")
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not store.exists()


def test_bad_config_files(cli, store, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("datasets = [\n")
    result = cli("run", bad, "--store", store)
    assert result.code == 2 and "not valid TOML" in result.err
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('datasetz = ["skimage-gray"]\n')
    assert "unknown key(s) datasetz" in cli("run", unknown, "--store", store).err
    assert "config file not found" in cli("run", tmp_path / "none.toml", "--store", store).err
    assert not store.exists()


def test_config_file_with_flag_overrides(cli, store, tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text('datasets = ["skimage-gray[crop=64]"]\nnoise = ["gaussian:0.05"]\n'
                      'denoisers = ["noisy", "gaussian-filter"]\nrepetitions = 2\n')
    result = cli("run", config, "-m", "noisy", "--store", store, "--quiet")
    assert result.code == 0
    assert rows(store, "SELECT denoiser, count(*) FROM cells GROUP BY denoiser") == [("noisy", 2)]


def test_leaderboard_without_a_store(cli, tmp_path):
    result = cli("leaderboard", "--store", tmp_path / "missing.sqlite")
    assert result.code == 2 and "no store" in result.err
    not_a_store = tmp_path / "x.sqlite"
    not_a_store.write_text("hello")
    assert "not a denoise-bench store" in cli("leaderboard", "--store", not_a_store).err


def test_device_cuda_without_cuda_is_a_usage_error(cli, store):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("run", "--device", "cuda", "--store", store)
    assert result.code == 2 and "no CUDA device" in result.err and not store.exists()


def test_every_repetition_draws_new_noise(cli, store):
    """A runner that ignored the repetition index would score every repetition the same."""
    assert cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:0.1", "-m", "noisy",
               "--repetitions", "3", "--store", store, "--quiet").code == 0
    scores = pd.DataFrame(rows(store, "SELECT c.repetition, s.image_id, s.value FROM scores s "
                                      "JOIN cells c ON c.key = s.cell_key WHERE s.metric = 'psnr'"),
                          columns=["repetition", "image_id", "value"])
    assert scores["repetition"].nunique() == 3
    distinct = scores.groupby("image_id")["value"].nunique()
    assert (distinct == 3).all(), f"repetitions of an image share their noise: {distinct.to_dict()}"
    images = skimage_gray(crop=32)
    degradation = GaussianDegradation()
    y = [make_batches(images, "skimage-gray[crop=32]", degradation, 0.1, r, 0, 16, "cpu")[0].y
         for r in range(2)]
    assert not torch.equal(y[0], y[1])


def test_the_table_after_a_run_shows_that_runs_rows_only(cli, store):
    assert cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:0.1", "-m", "noisy", "--store", store).code == 0
    second = cli("run", "-d", "lfw-faces", "-n", "gaussian:0.1", "-m", "noisy", "--limit-images", "3",
                 "--store", store)
    assert second.code == 0
    assert "lfw-faces" in second.out and "skimage-gray" not in second.out
