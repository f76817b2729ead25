"""Numbers that stay right: isolated inputs, complete and path-free cell keys, tables of the
current code, subsets apart, no silent missing values, hashes that see through kept mtimes."""

from __future__ import annotations

import csv
import io
import os
import shutil

import pytest
import torch
from skimage import data, io as skio

from conftest import rows

DATA = "skimage-gray[crop=32]"
NOISE = "gaussian:25/255"

INPLACE = '''
import bench

@bench.hookimpl
def register_denoisers(register):
    def zero_in_place(y, sigma):
        y.mul_(0)
        sigma.mul_(0)
        return y
    register("inplace-zero", lambda: zero_in_place, description="writes into its input")
'''

NAN_METRIC = '''
import bench
import torch

@bench.hookimpl
def register_metrics(register):
    def nan_first(x_hat, x):
        values = (x_hat - x).abs().flatten(1).mean(1).double()
        values[0] = float("nan")
        return values
    register("nan-first", lambda: nan_first, higher_is_better=False, description="NaN on image 0")
'''


def scores(store, metric: str = "psnr") -> dict[str, list[float]]:
    """Denoiser -> its per-image values, in image order."""
    found: dict[str, list[float]] = {}
    for denoiser, value in rows(store, "SELECT c.denoiser, s.value FROM scores s JOIN cells c ON c.key = s.cell_key "
                                       f"WHERE s.metric = '{metric}' ORDER BY c.denoiser, s.image_id"):
        found.setdefault(denoiser, []).append(value)
    return found


def leaderboard(cli, store) -> list[dict]:
    result = cli("leaderboard", "--store", store, "--metric", "psnr", "--format", "csv")
    assert result.code == 0, result.err
    return list(csv.DictReader(io.StringIO(result.out)))


def test_a_plugin_writing_into_its_input_changes_no_other_row(cli, write_plugin, tmp_path):
    plugin = write_plugin(INPLACE, "inplace.py")
    alone, shared = tmp_path / "alone.sqlite", tmp_path / "shared.sqlite"
    common = ["-d", DATA, "-n", NOISE, "--limit-images", "3", "--quiet", "--metric", "psnr"]
    assert cli("run", *common, "-m", "median", "-m", "noisy", "--store", alone).code == 0
    result = cli("run", *common, "--plugin", plugin, "-m", "inplace-zero", "-m", "median", "-m", "noisy",
                 "--store", shared)
    assert result.code == 0, result.err
    expected, got = scores(alone), scores(shared)
    assert got["median"] == expected["median"] and got["noisy"] == expected["noisy"], \
        "a denoiser that zeroes its input in place changed the inputs of the rows after it"
    assert max(got["noisy"]) < 25 and min(got["median"]) > min(got["noisy"])


def test_a_folder_is_one_dataset_however_its_path_is_written(cli, tmp_path, monkeypatch):
    home = tmp_path / "home"
    folder = home / "imgs"
    folder.mkdir(parents=True)
    skio.imsave(folder / "a.png", data.camera()[:32, :32], check_contrast=False)
    skio.imsave(folder / "b.png", data.coins()[:32, :32], check_contrast=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    store = tmp_path / "s.sqlite"
    for spelling in (str(folder), "imgs", "./imgs", "~/imgs"):
        result = cli("run", "-d", f"folder:{spelling}", "-n", NOISE, "-m", "median", "--store", store,
                     "--metric", "psnr")
        assert result.code == 0, result.err
        if spelling != str(folder):
            assert "1 from earlier runs" in result.err, f"folder:{spelling} was taken for another dataset"
    assert len(rows(store, "SELECT key FROM cells")) == 1
    # A copy of the files elsewhere is the same data: the same noise, so the same numbers.
    shutil.copytree(folder, tmp_path / "copy")
    result = cli("run", "-d", f"folder:{tmp_path / 'copy'}", "-n", NOISE, "-m", "median", "--store", store,
                 "--metric", "psnr")
    assert "1 from earlier runs" in result.err


def test_a_weights_file_is_keyed_by_its_hash_not_its_path(tmp_path):
    import deepinv

    from bench.config import RunConfig
    from bench.grid.planning import build_grid
    from bench.plugins import get_plugin_set
    from bench.registry import Registry

    model = deepinv.models.DnCNN(in_channels=1, out_channels=1, depth=2, pretrained=None)
    first, second = tmp_path / "a" / "w.pth", tmp_path / "b" / "same.pth"
    first.parent.mkdir()
    second.parent.mkdir()
    torch.save(model.state_dict(), first)
    shutil.copy(first, second)
    registry = Registry(get_plugin_set())
    keys = [build_grid(RunConfig(datasets=[DATA], noise=[NOISE], limit_images=1, denoisers=[
        f"deepinv:DnCNN[in_channels=1,out_channels=1,depth=2,weights={path}]"]), registry).cells[0].key
        for path in (first, second)]
    assert keys[0] == keys[1]


def test_tables_show_the_code_as_it_is_now_after_a_revert(cli, write_plugin, store):
    source = '''
import bench

@bench.hookimpl
def register_denoisers(register):
    register("shrink", lambda: (lambda y, sigma: y * {factor}), description="scaled input")
'''
    plugin_args = ["-d", DATA, "-n", NOISE, "-m", "shrink", "--store", store, "--limit-images", "2",
                   "--metric", "psnr"]
    means = []
    for factor in ("1.0", "0.5", "1.0"):
        plugin = write_plugin(source.format(factor=factor), "shrink.py")
        result = cli("run", "--plugin", plugin, *plugin_args)
        assert result.code == 0, result.err
        means.append(float(leaderboard(cli, store)[0]["mean"]))
    assert "1 from earlier runs" in result.err
    assert means[0] != means[1] and means[2] == means[0], \
        f"after the revert the table shows {means[2]:.2f}, the reverted code's number, not {means[0]:.2f}"
    report = cli("report", "--store", store, "--output", store.parent / "report.html")
    assert report.code == 0, report.err
    assert f"{means[0]:.2f}" in (store.parent / "report.html").read_text()


def test_a_limited_rerun_never_stands_in_for_the_whole_set(cli, store):
    common = ["-d", DATA, "-n", NOISE, "--store", store, "--metric", "psnr", "--quiet"]
    assert cli("run", *common, "-m", "median", "-m", "noisy").code == 0
    assert cli("run", *common, "-m", "median", "--limit-images", "3").code == 0
    table = leaderboard(cli, store)
    full = [r for r in table if r["dataset"] == DATA]
    subset = [r for r in table if r["dataset"] == f"{DATA} (first 3 of 10)"]
    assert {r["denoiser"]: int(r["n"]) for r in full} == {"median": 10, "noisy": 10}
    assert [(r["denoiser"], r["n"], r["rank"]) for r in subset] == [("median", "3", "1")]
    # --limit-images at or above the set's size is the whole set: the same cells.
    result = cli("run", *common, "-m", "median", "--limit-images", "10")
    assert "1 from earlier runs" in result.err


def test_a_non_finite_metric_value_makes_the_cell_an_error(cli, write_plugin, store):
    plugin = write_plugin(NAN_METRIC, "nan_metric.py")
    result = cli("run", "--plugin", plugin, "-d", DATA, "-n", NOISE, "-m", "median", "--metric", "psnr",
                 "--metric", "nan-first", "--limit-images", "3", "--store", store)
    assert result.code == 1
    (status, error), = rows(store, "SELECT status, error FROM cells")
    assert status == "error" and "metric nan-first is not finite (nan) for image camera" in error
    assert rows(store, "SELECT count(*) FROM scores") == [(0,)]
    shown = cli("status", "--store", store)
    assert "nan-first is not finite" in shown.out + shown.err


def test_a_file_rewritten_with_its_size_and_mtime_kept_is_hashed_again(tmp_path, monkeypatch):
    from bench.data.content_hash import sha256_files

    cache = tmp_path / "cache"
    path = tmp_path / "image.png"
    path.write_bytes(b"A" * 64)
    first = sha256_files([path], cache)[path]
    stat = path.stat()
    path.write_bytes(b"B" * 64)  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime restored, as archives do
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert sha256_files([path], cache)[path] != first


def test_save_images_on_done_cells_saves_their_outputs_and_keeps_their_numbers(cli, store):
    common = ["-d", DATA, "-n", NOISE, "-m", "median", "--store", store, "--limit-images", "3",
              "--metric", "psnr"]
    assert cli("run", *common).code == 0
    before = rows(store, "SELECT key, updated FROM cells")
    result = cli("run", *common, "--save-images", "2")
    assert result.code == 0, result.err
    assert "1 from earlier runs, outputs saved again for 1" in result.err
    (key, _), = before
    saved = sorted(p.name for p in (store.parent / "images" / key).iterdir())
    assert saved == ["camera.png", "moon.png"]
    assert rows(store, "SELECT key, updated FROM cells") == before
    again = cli("run", *common, "--save-images", "2")
    assert "outputs saved again" not in again.err  # nothing missing: nothing runs


@pytest.mark.parametrize("image_id", ["a/b", "..", "../../escape", "x y", "/abs"])
def test_image_ids_become_file_names_that_stay_in_their_folder(tmp_path, image_id):
    from bench.grid.outputs import output_name, save_outputs

    folder = tmp_path / "images" / "cell"
    save_outputs(folder, [image_id, "plain-id_1.2"], torch.rand(2, 1, 4, 4))
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted([output_name(image_id), "plain-id_1.2.png"])
    assert all((folder / name).resolve().parent == folder.resolve() for name in written)
    assert output_name(image_id) != output_name(image_id + "_")  # distinct ids, distinct files


def test_a_version_1_store_upgrades_in_place_and_its_cells_still_read(cli, tmp_path):
    import sqlite3

    from bench.store.database import SCHEMA_VERSION

    path = tmp_path / "v1.sqlite"
    with sqlite3.connect(path) as db:  # the tables as version 1 made them
        db.executescript("""
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, started TEXT, finished TEXT, status TEXT,
                               config TEXT, versions TEXT, device TEXT, argv TEXT);
            CREATE TABLE cells (key TEXT PRIMARY KEY, run_id TEXT, dataset TEXT, degradation TEXT, level REAL,
                denoiser TEXT, repetition INTEGER, seed INTEGER, protocol TEXT, metrics TEXT, status TEXT,
                error TEXT, seconds REAL, denoise_seconds REAL, n_images INTEGER, device TEXT, updated TEXT);
            CREATE TABLE scores (cell_key TEXT, image_id TEXT, metric TEXT, value REAL,
                                 PRIMARY KEY (cell_key, image_id, metric));
            CREATE TABLE metric_info (name TEXT PRIMARY KEY, higher_is_better INTEGER);
            INSERT INTO runs VALUES ('r1', '2026-01-01', '2026-01-01', 'done', '{}', '{}', 'cpu', '[]');
            INSERT INTO cells VALUES ('k1', 'r1', 'set', 'gaussian', 0.1, 'median', 0, 0, 'default', '["psnr"]',
                                      'done', NULL, 1.0, 0.5, 2, 'cpu', '2026-01-01');
            INSERT INTO scores VALUES ('k1', 'a', 'psnr', 30.0), ('k1', 'b', 'psnr', 32.0);
            INSERT INTO metric_info VALUES ('psnr', 1);
            PRAGMA user_version = 1;
        """)
    result = cli("leaderboard", "--store", path, "--format", "csv")
    assert result.code == 0, result.err
    (row,) = csv.DictReader(io.StringIO(result.out))
    assert (row["dataset"], row["n"], float(row["mean"])) == ("set", "2", 31.0)
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "SELECT subset FROM cells") == [(None,)]


def test_a_meta_tensor_output_is_named_as_such(cli, write_plugin, store):
    plugin = write_plugin('''
import bench
import torch

@bench.hookimpl
def register_denoisers(register):
    register("meta-out", lambda: (lambda y, sigma: torch.empty(y.shape, device="meta")), description="no data")
''', "meta_out.py")
    result = cli("run", "--plugin", plugin, "-d", DATA, "-n", NOISE, "-m", "meta-out", "--limit-images", "1",
                 "--store", store, "--metric", "psnr")
    assert result.code == 1
    assert rows(store, "SELECT error FROM cells") == [("DenoiserOutputError: returned a tensor without data (device 'meta')",)]


def test_the_gallery_of_a_folder_shows_the_noise_its_denoisers_saw(cli, store, tmp_path):
    from bench.plugins import get_plugin_set
    from bench.registry import Registry
    from bench.reports import figures
    from bench.store.database import open_existing

    folder = tmp_path / "imgs"
    folder.mkdir()
    skio.imsave(folder / "a.png", data.camera()[:48, :48], check_contrast=False)
    dataset = f"folder:{folder}"
    result = cli("run", "-d", dataset, "-n", NOISE, "-m", "noisy", "--save-images", "1", "--protocol", "uint8",
                 "--store", store, "--metric", "psnr", "--quiet")
    assert result.code == 0, result.err
    with open_existing(store) as opened:
        tiles = figures.gallery_tiles(opened, Registry(get_plugin_set()), dataset, "gaussian", 25 / 255, "a")
    # the identity row's saved output is the noisy input as scored: the gallery must redraw that very noise
    assert [t.title for t in tiles] == ["clean", "noisy input", "noisy"]
    assert (tiles[1].image * 255).round().tolist() == (tiles[2].image * 255).round().tolist()
