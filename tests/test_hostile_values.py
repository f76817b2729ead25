"""Safety, round two: checkpoints verified on every load, every number a user gives checked at
planning, ``--output`` that never replaces what is there, names that cannot break a figure.

Each test reproduces a way the harness was broken from outside (a changed checkpoint used
silently, ``poisson:1e20`` stored as done at 4.7 dB, a FIFO replaced by a plain file, a
``$\\x$`` in a name crashing ``report``) and checks the refusal: one line, exit 2, nothing written.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
import torch

from bench.noise.degradations import LARGEST_PEAK, SMALLEST_LEVEL, PoissonDegradation

GRID = ("-d", "skimage-gray[crop=32]", "--limit-images", "2", "-m", "noisy", "--metric", "psnr", "--quiet")


def one_line_refusal(result, *fragments: str) -> str:
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# --- the model store: a checkpoint is what its JSON promises ---------------------------------------

def test_a_checkpoint_changed_after_training_is_refused_and_retraining_fixes_it(cli, tmp_path):
    models, store = tmp_path / "models", tmp_path / "bench.sqlite"
    train = ("train", "mlp-dae", "--dataset", "lfw-faces", "--epochs", "1", "--models", models, "--quiet")
    trained = cli(*train)
    assert trained.code == 0, trained.err
    path = Path(trained.out.splitlines()[0])
    state = torch.load(path, weights_only=True)
    torch.save({k: v + 0.01 for k, v in state.items()}, path)  # same names and shapes: it still loads
    run = ("run", "-d", "lfw-faces", "--limit-images", "2", "-n", "gaussian:0.1", "-m",
           f"mlp-dae[weights={path}]", "--metric", "psnr", "--store", store, "--quiet")
    one_line_refusal(cli(*run), str(path), "changed after training", "denoise-bench train mlp-dae --force")
    assert not store.exists()
    assert cli(*train, "--force").code == 0
    assert cli(*run).code == 0


# --- levels, factors, timeouts and workers: checked at planning ------------------------------------

@pytest.mark.parametrize("args,shown", [
    (("-n", "poisson:1e20"), "poisson peak 1e20 is past 2**24"),
    (("-n", "poisson:1e-300"), "poisson peak 1e-300 is below float32's resolution"),
    (("-n", "gaussian:1e-320"), "gaussian sigma 1e-320 is below float32's resolution"),
    (("-n", "gaussian:0.1", "--sigma-in", "x1e308"), "sigma_in 'x1e308': a factor"),
    (("-n", "gaussian:0.1", "--sigma-in", "1e-300"), "sigma_in '1e-300': a fixed level"),
    (("-n", "gaussian:0.1", "--timeout", "nan"), "--timeout must be > 0 seconds and finite, got"),
    (("-n", "gaussian:0.1", "--timeout", "inf"), "--timeout must be > 0 seconds and finite, got"),
    (("-n", "gaussian:0.1", "--executor", "dask", "--workers", "100000"), "--workers 100000"),
])
def test_numbers_outside_their_domain_are_refused_before_anything_is_written(cli, store, args, shown):
    one_line_refusal(cli("run", *GRID, *args, "--store", store), shown)
    assert not store.exists()


def test_the_largest_peak_draws_exact_poisson_counts_where_a_larger_one_wraps():
    """The bound's reason, held against Poisson's own moments: at LARGEST_PEAK the counts are
    integers with mean and variance peak; at 1e20 (accepted before) torch.poisson's counts wrap."""
    degradation = PoissonDegradation()
    assert degradation.parse_level(str(LARGEST_PEAK)) == LARGEST_PEAK
    x = torch.ones(1, 1, 64, 64)
    counts = degradation.draw(x, LARGEST_PEAK, torch.Generator().manual_seed(0)).double() * LARGEST_PEAK
    assert torch.equal(counts, counts.round())
    n = counts.numel()
    assert abs(counts.mean().item() - LARGEST_PEAK) < 4 * (LARGEST_PEAK / n) ** 0.5
    assert abs(counts.var().item() / LARGEST_PEAK - 1) < 4 * (2 / n) ** 0.5
    wrapped = degradation.draw(x, 1e20, torch.Generator().manual_seed(0))
    assert (wrapped < 0).all(), "torch.poisson no longer wraps: the bound may be lifted"
    assert SMALLEST_LEVEL == torch.finfo(torch.float32).eps


def test_a_nul_byte_in_a_config_path_is_one_line(cli):
    one_line_refusal(cli("run", "grid\x00.toml"), "cannot read config file", "null")


# --- --output: written as a shell's > would, never replacing what is not a plain file --------------

@pytest.fixture
def board(cli, tmp_path):
    """A store with one run; ``board(output)`` writes its CSV leaderboard to ``output``."""
    store = tmp_path / "store" / "bench.sqlite"
    assert cli("run", *GRID, "-n", "gaussian:0.1", "--store", store).code == 0
    return lambda output, fmt="csv": cli("leaderboard", "--store", store, "--format", fmt, "--output", output)


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(board, tmp_path):
    target, link = tmp_path / "kept" / "board.csv", tmp_path / "link.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link.symlink_to(target)
    assert board(link).code == 0
    assert link.is_symlink() and "noisy" in target.read_text()
    assert (tmp_path / "link.provenance.json").is_file()


def test_output_into_a_fifo_streams_into_it_and_writes_no_provenance(board, tmp_path):
    fifo = tmp_path / "board.csv"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    assert board(fifo).code == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode), "the FIFO was replaced"
    assert received and "noisy" in received[0]
    assert not (tmp_path / "board.provenance.json").exists()


def test_output_into_a_device_writes_into_it(board, tmp_path):
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers, in a test folder
    except PermissionError:
        pytest.skip("making a device node needs root")
    assert board(null).code == 0
    assert stat.S_ISCHR(null.stat().st_mode), "the device was replaced by a plain file"
    assert not (tmp_path / "null.provenance.json").exists()


@pytest.mark.parametrize("command", [("leaderboard", "--format", "csv"), ("report", "--figures", "figures")])
def test_output_naming_a_folder_is_one_line_and_writes_nothing(cli, board, tmp_path, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    before = sorted(os.listdir(tmp_path))
    store = tmp_path / "store" / "bench.sqlite"
    one_line_refusal(cli(*command, "--store", store, "--output", folder), str(folder), "is a folder")
    assert sorted(os.listdir(tmp_path)) == before and not os.listdir(folder)


# --- names that are mathtext: drawn as typed ------------------------------------------------------

MATH_NAMED = '''
import bench

@bench.hookimpl
def register_denoisers(register):
    register("odd$\\\\x$", lambda: (lambda y, sigma: y), sigma_aware=False, description="named as mathtext")
'''


def test_a_name_that_is_mathtext_does_not_break_the_report(cli, write_plugin, tmp_path):
    plugin, store = write_plugin(MATH_NAMED, "math_named.py"), tmp_path / "bench.sqlite"
    ran = cli("run", *GRID, "-m", "odd$\\x$", "-n", "gaussian:0.1,0.2", "--plugin", plugin, "--store", store)
    assert ran.code == 0, ran.err
    report = cli("report", "--store", store, "--output", tmp_path / "report.html", "--figures", tmp_path / "fig")
    assert report.code == 0, report.err
    assert "odd$\\x$" in (tmp_path / "fig" / "psnr_vs_level.svg").read_text()
