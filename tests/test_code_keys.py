"""Keys from the code that runs (issue 29): an edited harness or plugin module, another library
version, a folder's edited files or another reference size recompute cells instead of reusing them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import io as skio

from conftest import rows

BENCH = Path(__file__).resolve().parents[1] / "bench"

CONFIG = '''
datasets = ["skimage-gray[crop=32]"]
noise = ["gaussian:25/255"]
denoisers = ["noisy", "median"]
metrics = ["psnr"]
limit_images = 2
store = "{store}"

[[sampling]]
dataset = "gmm2d"
scores = ["oracle"]
samplers = ["edm-heun[steps=2,sigma_max=20]"]
n = 8
'''

#: The issue's table: (module, its text, the edit), each changing numbers while keys stood still.
EDITS = [
    ("grid/runner.py", "out = clamp_for_scoring(check_output(out, batch.y), protocol)",
     "out = check_output(out, batch.y)"),
    ("data/standard.py", "rgb2gray(image) if gray else image", "image.mean(dim=0, keepdim=True) if gray else image"),
    ("grid/cells.py", 'if degradation.spatial and entry.metadata.get("noise_map"):',
     'if degradation.spatial and entry.metadata.get("noise_map") and False:'),
    ("sampling/samplers.py", "z = torch.randn(shape, generator=generator, device=device)",
     "z = 1.5 * torch.randn(shape, generator=generator, device=device)"),
]


def cell_counts(store: Path) -> tuple[int, int]:
    return rows(store, "SELECT count(*) FROM cells")[0][0], rows(store, "SELECT count(*) FROM sample_cells")[0][0]


def edit(path: Path, before: str, after: str) -> None:
    text = path.read_text()
    assert before in text, f"{path.name} no longer has {before!r}: update the test"
    path.write_text(text.replace(before, after))


def test_each_module_of_the_issues_table_edited_in_a_copy_changes_the_harness_identity(tmp_path):
    """The harness part of every key, computed over an edited copy of the package; an edit of the
    rooms that cannot touch a number (command line, reports) leaves it."""
    from bench.code_identity import harness_identity

    copy = tmp_path / "bench"
    shutil.copytree(BENCH, copy, ignore=shutil.ignore_patterns("__pycache__"))
    seen = [harness_identity(copy)]
    assert harness_identity(copy) == seen[0]
    for module, before, after in EDITS:
        edit(copy / module, before, after)
        seen.append(harness_identity(copy))
        assert seen[-1] not in seen[:-1], f"editing {module} left the harness identity unchanged"
    for room in ("cli/status.py", "reports/tables.py", "entry.py"):
        (copy / room).write_text((copy / room).read_text() + "\n# edited\n")
    assert harness_identity(copy) == seen[-1]


def test_a_run_of_an_edited_copy_recomputes_and_status_says_why(tmp_path):
    """End to end: the harness runs from a copy (PYTHONPATH) against one store; after an edit of
    the clamp (denoiser cells) and of the chains' start (sampler cells) nothing is reused."""
    copy = tmp_path / "copy"
    shutil.copytree(BENCH, copy / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    store = tmp_path / "store.sqlite"
    config = tmp_path / "grid.toml"
    config.write_text(CONFIG.format(store=store))
    env = {**os.environ, "PYTHONPATH": str(copy)}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("run", str(config), "--quiet")
    assert cell_counts(store) == (2, 1)
    for module, before, after in (EDITS[0], EDITS[3]):
        edit(copy / "bench" / module, before, after)
    run("run", str(config), "--quiet")
    assert cell_counts(store) == (4, 2), "the edited copy reused cells of the unedited code"
    status = run("status", "--store", str(store))
    assert "2 cell(s) recomputed, their keys moved: harness code changed" in status
    assert "1 sampler cell(s) recomputed, their keys moved: harness code changed" in status


def test_a_helper_imported_inside_a_function_is_in_the_plugins_fingerprint(tmp_path, monkeypatch):
    import importlib
    import importlib.metadata

    import bench_plugins.learned

    from bench.code_identity import package_modules, plugin_fingerprint

    # the built-in case of the issue: learned.py imports empirical_mmse inside a factory
    assert "bench_plugins.empirical_mmse" in package_modules("bench_plugins.learned",
                                                              Path(bench_plugins.learned.__file__))
    package = tmp_path / "lazy_pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "helper.py").write_text("def scale(y):\n    return y\n")
    (package / "unused.py").write_text("X = 1\n")
    (package / "plugin.py").write_text("def build():\n    from .sub import helper\n    return helper.scale\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = importlib.import_module("lazy_pkg.plugin")
    before = plugin_fingerprint(plugin)
    (package / "unused.py").write_text("X = 2\n")
    assert plugin_fingerprint(plugin) == before
    (package / "sub" / "helper.py").write_text("def scale(y):\n    return 2 * y\n")
    assert plugin_fingerprint(plugin) != before


def test_library_versions_come_from_the_imports_and_enter_both_kinds_of_key(tmp_path, monkeypatch):
    """Pillow and ptwt are found without a hand list; a plugin's own imports (bm3d inside a function)
    enter its fingerprint; another torch version changes denoiser and sampler keys."""
    import importlib
    import importlib.metadata

    from bench import code_identity
    from bench.config import RunConfig
    from bench.grid.planning import build_grid
    from bench.plugins import get_plugin_set
    from bench.registry import Registry

    libraries = code_identity.harness_code()["libraries"]
    assert {"torch", "numpy", "scikit-image", "deepinv", "pillow", "ptwt"} <= set(libraries)
    assert libraries["pillow"] == importlib.metadata.version("Pillow")
    assert "tqdm" not in libraries and "pluggy" not in libraries

    (tmp_path / "bm3d_plugin.py").write_text("def build():\n    import bm3d\n    return bm3d.bm3d\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = importlib.import_module("bm3d_plugin")
    registry = Registry(get_plugin_set())
    config = RunConfig(datasets=["skimage-gray[crop=32]"], noise=["gaussian:25/255"], denoisers=["median"],
                       limit_images=1, sampling=[{"dataset": "gmm2d", "samplers": ["real-data"], "n": 4}])

    def keys() -> tuple[str, str, str]:
        code_identity.harness_code.cache_clear()
        code_identity._library_versions.cache_clear()  # versions are read once per process
        grid = build_grid(config, registry, quiet=True)
        return grid.cells[0].key, grid.sampling.cells[0].key, code_identity.plugin_fingerprint(plugin)

    before = keys()
    real = code_identity.installed_version
    for library, changed in (("torch", (0, 1)), ("bm3d", (2,))):
        monkeypatch.setattr(code_identity, "installed_version",
                            lambda d, lib=library: "0.0-other" if d == lib else real(d))
        after = keys()
        assert [i for i in range(3) if after[i] != before[i]] == list(changed), library
    monkeypatch.setattr(code_identity, "installed_version", real)
    assert keys() == before


def write_images(folder: Path, count: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        skio.imsave(folder / f"{i:02d}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8), check_contrast=False)


def sampling_grid(tables: list[dict]):
    from bench.config import RunConfig
    from bench.grid.sampler_cells import build_sampling
    from bench.plugins import get_plugin_set
    from bench.registry import Registry

    return build_sampling(RunConfig(sampling=tables), Registry(get_plugin_set()))


def test_sampler_cells_are_keyed_by_the_folders_content_and_their_tables_reference(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 6)
    table = {"dataset": f"folder:{folder}", "samplers": ["real-data"], "n": 2, "reference_n": 3}
    before = sampling_grid([table]).cells[0].key
    skio.imsave(folder / "00.png", np.zeros((8, 8), dtype=np.uint8), check_contrast=False)
    assert sampling_grid([table]).cells[0].key != before, "an edited image left the sampler key unchanged"

    # a second table with a larger reference_n: each table is scored against its own reference
    small, large = ({"dataset": "gmm2d", "samplers": ["real-data"], "n": 4, "reference_n": n} for n in (100, 400))
    alone, both = sampling_grid([small]), sampling_grid([small, large])
    assert torch.equal(both.data["gmm2d", 100].reference, alone.data["gmm2d", 100].reference)
    assert len(both.data["gmm2d", 400].reference) == 400
    assert both.cells[0].key == alone.cells[0].key != both.cells[1].key


def test_init_data_draws_no_chain_start_from_the_reference(tmp_path):
    """initial-noise with a tiny sigma returns the chains' starts: none may be a reference image."""
    from bench.grid.sampler_runner import run_score_chains
    from bench.sampling.samplers import make_generator

    folder = tmp_path / "imgs"
    write_images(folder, 12)
    grid = sampling_grid([{"dataset": f"folder:{folder}", "scores": ["noisy"], "samplers": ["initial-noise[sigma=1e-6]"],
                           "n": 200, "init": "data", "reference_n": 6}])
    cell = grid.cells[0]
    data = grid.data[cell.dataset, cell.reference_n]
    sampler = grid.samplers[cell.sampler][0]
    starts = run_score_chains(grid, sampler, cell, data, make_generator(0, "cpu"), torch.device("cpu")).samples

    def near(pool: torch.Tensor) -> int:
        """Starts within 1e-4 (every pixel) of an item of the pool."""
        gap = (starts.flatten(1)[:, None] - pool.flatten(1)[None]).abs().amax(dim=2)
        return int((gap.min(dim=1).values < 1e-4).sum())

    from_reference, from_held_out = near(data.reference), near(data.held_out)
    assert len(data.reference) == 6 and from_reference == 0 and from_held_out == 200


def board_rows(cli, store: Path, *args: str) -> list[dict]:
    import csv
    import io

    result = cli("leaderboard", "--store", store, "--metric", "psnr", "--format", "csv", *args)
    assert result.code == 0, result.err
    return list(csv.DictReader(io.StringIO(result.out)))


def test_a_subset_run_never_hides_the_whole_set_nor_the_reverse(cli, tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 5)
    store = tmp_path / "s.sqlite"
    common = ["-d", f"folder:{folder}", "-n", "gaussian:25/255", "-m", "median", "-m", "noisy", "--store", store,
              "--metric", "psnr", "--quiet"]
    assert cli("run", *common).code == 0
    assert cli("run", *common, "--limit-images", "3").code == 0
    shown = {(r["dataset"].partition(" ")[2], r["denoiser"], r["n"]) for r in board_rows(cli, store)}
    assert shown == {("", "median", "5"), ("", "noisy", "5"),
                     ("(first 3 of 5)", "median", "3"), ("(first 3 of 5)", "noisy", "3")}
    with_published = board_rows(cli, store, "--published")
    assert {(r["dataset"].partition(" ")[2], r["n"]) for r in with_published} == {("", "5"), ("(first 3 of 5)", "3")}
    compared = cli("compare", "median", "noisy", "--store", store, "--metric", "psnr")
    assert compared.code == 0 and "first 3 of 5" in compared.out and compared.out.count("imgs") >= 2, compared.out
    report = cli("report", "--store", store, "--output", tmp_path / "report.html")
    assert report.code == 0 and "first 3 of 5" in (tmp_path / "report.html").read_text()
    assert "no longer counted" not in cli("status", "--store", store).out

    # an image after the first 3 changes: the whole set's cells are stale, the subset's stand
    skio.imsave(folder / "04.png", np.zeros((8, 8), dtype=np.uint8), check_contrast=False)
    assert cli("run", *common, "-m", "median", "--limit-images", "3").code == 0
    status = cli("status", "--store", store).out
    assert "2 done cell(s) were scored on files that have changed since (1 changed (04.png))" in status
    assert {r["n"] for r in board_rows(cli, store)} == {"3"}
    # one of the first 3 changes: the subset's earlier cells are stale too
    skio.imsave(folder / "00.png", np.zeros((8, 8), dtype=np.uint8), check_contrast=False)
    assert cli("run", *common).code == 0
    assert {r["n"] for r in board_rows(cli, store)} == {"5"}
    assert "4 done cell(s) were scored on files that have changed since (2 changed (00.png, 04.png))" \
        in cli("status", "--store", store).out


def test_published_notes_name_a_mismatched_level_and_a_subset():
    import pandas as pd

    from bench.plugins import get_plugin_set
    from bench.registry import Registry
    from bench.reports import published

    rows = [("bsd68", "ffdnet", "oracle", 68), ("bsd68", "ffdnet @ x0.5", "x0.5", 68),
            ("bsd68 (first 3 of 68)", "ffdnet", "oracle", 3)]
    table = pd.DataFrame({"metric": "psnr", "dataset": [r[0] for r in rows], "noise": "gaussian",
                          "level": 25 / 255, "denoiser": [r[1] for r in rows], "sigma_in": [r[2] for r in rows],
                          "n": [r[3] for r in rows], "mean": 29.0, "protocol": "paper"})
    out = published.add_published(table, published.references(), Registry(get_plugin_set()))
    assert out["published"].tolist()[0] == 29.19 and out["published"][1:].isna().all()
    assert out.attrs["published_notes"] == [
        "ffdnet @ x0.5: given x0.5 of the true level; a published number is for the true level",
        "ffdnet on bsd68 (first 3 of 68): the set was not scored whole; a published mean covers the whole set"]


def test_the_file_hash_cache_lives_in_the_runs_data_folder(cli, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    folder, data_root = tmp_path / "imgs", tmp_path / "data"
    write_images(folder, 2)
    result = cli("run", "-d", f"folder:{folder}", "-n", "gaussian:25/255", "-m", "noisy", "--metric", "psnr",
                 "--data-root", data_root, "--store", tmp_path / "s.sqlite", "--quiet")
    assert result.code == 0, result.err
    assert str(folder / "00.png") in (data_root / "file-hashes.json").read_text()
    assert not list(home.rglob("file-hashes.json")), "a fixed home-folder cache is shared by every run"


def test_real_data_is_ranked_once_per_init(cli, tmp_path):
    config = tmp_path / "grid.toml"
    store = tmp_path / "s.sqlite"
    config.write_text(f'store = "{store}"\n' + "".join(
        f'[[sampling]]\ndataset = "gmm2d"\nscores = ["oracle"]\nn = 16\ninit = "{init}"\n'
        'samplers = ["initial-noise[sigma=0.5]", "real-data"]\n' for init in ("noise", "data")))
    assert cli("run", config, "--quiet").code == 0
    result = cli("leaderboard", "--samples", "--store", store, "--metric", "mmd", "--format", "csv")
    assert result.code == 0, result.err
    import csv
    import io

    table = list(csv.DictReader(io.StringIO(result.out)))
    real = [(r["init"], r["rank"]) for r in table if r["sampler"] == "real-data"]
    assert sorted(real) == [("data", "1"), ("noise", "1")], table
    assert sorted((r["init"], r["rank"]) for r in table if r["sampler"] != "real-data") == [("data", "2"), ("noise", "2")]
