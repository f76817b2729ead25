"""Cost per image (``run --cost``, ``leaderboard --cost``): parameters and FLOPs known by hand,
latency only where it was measured alone, CPU and CUDA peak memory."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.grid import cost
from conftest import rows

TINY = '''
import torch
import bench


class TinyCNN(torch.nn.Module):
    """conv 1->4 (3x3, no bias), ReLU, conv 4->1 (3x3, bias): 36 + 36 + 1 = 73 parameters."""

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.second = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, y, sigma):
        return y - self.second(torch.relu(self.first(y)))


@bench.hookimpl
def register_denoisers(register):
    register("tinycnn", TinyCNN, sigma_aware=False, description="two 3x3 convolutions")
'''
#: Per pixel: 2 FLOPs per multiply-add; conv 1->4 has 4 * 9 and conv 4->1 has 36 multiply-adds.
TINY_FLOPS_PER_PIXEL = 2 * (4 * 9 + 36)


def tiny_model():
    namespace = {}
    exec(TINY, namespace)
    return namespace["TinyCNN"]().eval()


def test_parameters_and_flops_of_a_tiny_model_match_the_hand_count():
    image = torch.rand(1, 40, 24)
    measured = cost.measure(tiny_model(), image, (1, 40, 24), torch.device("cpu"), repeats=3)
    assert measured.parameters == 73
    assert measured.flops == TINY_FLOPS_PER_PIXEL * 40 * 24
    reference = cost.measure(tiny_model(), image, (1, 256, 256), torch.device("cpu"), repeats=3)
    assert reference.flops == TINY_FLOPS_PER_PIXEL * 256 * 256
    assert measured.latency_repeats >= 3 and measured.latency_median > 0
    assert measured.timer == "torch.utils.benchmark.Timer"


def test_numpy_methods_have_no_parameters_or_flops_not_zero():
    def numpy_mean(y, sigma):
        return torch.from_numpy(np.asarray(y) * 0.5)

    measured = cost.measure(numpy_mean, torch.rand(1, 16, 16), (1, 16, 16), torch.device("cpu"), repeats=3)
    assert measured.parameters is None and measured.flops is None
    assert measured.timer == "time.perf_counter" and measured.latency_repeats == 3


def test_cpu_peak_memory_sees_what_the_call_allocates():
    size = 64 * 2**20

    def allocates(y, sigma):
        block = np.ones(size // 8)  # touched, so resident
        return y + float(block[-1]) * 0

    measured = cost.measure(allocates, torch.rand(1, 8, 8), (1, 8, 8), torch.device("cpu"), repeats=2)
    assert 0.9 * size <= measured.peak_memory <= 1.5 * size


class Wide(torch.nn.Module):
    """conv 1->64, ReLU, conv 64->1: at HxW its peak is two 64-channel maps (conv out, ReLU out)."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.first = torch.nn.Conv2d(1, channels, 3, padding=1)
        self.second = torch.nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, y, sigma):
        return self.second(torch.relu(self.first(y)))


def test_cpu_peak_memory_does_not_depend_on_what_was_measured_before():
    shape, cpu = (1, 128, 128), torch.device("cpu")
    image = torch.rand(*shape)
    alone = cost.measure(Wide().eval(), image, shape, cpu, repeats=2).peak_memory
    cost.measure(Wide(256).eval(), image, shape, cpu, repeats=2)  # a bigger one first, as a grid does
    after = cost.measure(Wide().eval(), image, shape, cpu, repeats=2).peak_memory
    two_maps = 2 * 64 * 128 * 128 * 4
    assert after == pytest.approx(alone, rel=0.01), f"{alone / 2**20:.2f} MB alone, {after / 2**20:.2f} MB after a bigger model"
    assert two_maps <= alone <= 1.2 * two_maps


def test_cpu_peak_memory_repeats_across_fresh_processes():
    import subprocess
    import sys

    script = ("import torch; from bench.grid import cost; from test_cost import Wide; "
              "print(cost.measure(Wide().eval(), torch.rand(1, 96, 96), (1, 96, 96), "
              "torch.device('cpu'), repeats=2).peak_memory)")
    here = str(Path(__file__).parent)
    found = [float(subprocess.run([sys.executable, "-c", script], cwd=here, capture_output=True, text=True,
                                  check=True).stdout.split()[-1]) for _ in range(2)]
    assert max(found) <= 1.2 * min(found) and min(found) > 0, found


@pytest.fixture
def costed(cli, store, write_plugin):
    plugin = write_plugin(TINY, "tiny_cnn.py")
    result = cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "2", "-n", "gaussian:0.1",
                 "-n", "poisson:16", "-m", "noisy", "-m", "median", "-m", "tinycnn", "--plugin", plugin,
                 "--store", store, "--cost", "--quiet")
    assert result.code == 0, result.err
    return store


def leaderboard_rows(cli, store, *flags) -> list[dict]:
    result = cli("leaderboard", "--store", store, "--cost", "--format", "json", *flags)
    assert result.code == 0, result.err
    return json.loads(result.out)["rows"]


def test_run_cost_measures_every_denoiser_at_the_dataset_shape_and_256(costed):
    found = rows(costed, "SELECT denoiser, shape, images, parameters, flops, concurrent FROM costs")
    assert {(d, s, n) for d, s, n, *_ in found} == {
        (name, shape, n) for name in ("noisy", "median", "tinycnn")
        for shape, n in (("1x32x32", 2), ("1x256x256", 0))}
    tiny = {s: (p, f) for d, s, _, p, f, _ in found if d == "tinycnn"}
    assert tiny == {"1x32x32": (73, TINY_FLOPS_PER_PIXEL * 32 * 32),
                    "1x256x256": (73, TINY_FLOPS_PER_PIXEL * 256 * 256)}
    assert all(c == 0 for *_, c in found)


def test_leaderboard_cost_columns(cli, costed):
    table = leaderboard_rows(cli, costed)
    by_row = {(r["noise"], r["denoiser"]): r for r in table}
    tiny, median = by_row[("gaussian", "tinycnn")], by_row[("gaussian", "median")]
    assert tiny["params"] == 73
    # gmacs: multiply-adds, what papers call FLOPs (half of torch's FLOP count)
    assert tiny["gmacs"] == pytest.approx(TINY_FLOPS_PER_PIXEL / 2 * 32 * 32 / 1e9)
    assert tiny["gmacs_256"] == pytest.approx((4 * 9 + 36) * 256 * 256 / 1e9)
    assert median["params"] is None and median["gmacs"] is None  # n/a, not zero
    assert all(r["latency_ms"] > 0 and r["latency_ms_256"] > 0 for r in table)
    # the Poisson row of the median filter is the same model: same cost
    assert by_row[("poisson", "median")]["latency_ms"] == median["latency_ms"]
    text = cli("leaderboard", "--store", costed, "--cost").out
    assert "n/a" in text and "latency_ms" in text
    wide = cli("leaderboard", "--store", costed, "--cost", "--wide", "--format", "csv").out
    assert "cost - gmacs_256" in wide.splitlines()[0]
    summary = leaderboard_rows(cli, costed, "--summary")
    assert {r["denoiser"]: r["params"] for r in summary}["tinycnn"] == 73


def test_wide_cost_columns_survive_a_second_protocol(cli, costed):
    result = cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "2", "-n", "gaussian:0.1",
                 "-m", "noisy", "-m", "median", "--protocol", "paper", "--store", costed, "--quiet")
    assert result.code == 0, result.err
    rows_ = leaderboard_rows(cli, costed, "--wide")
    datasets = {r["dataset"] for r in rows_}
    shown = "skimage-gray[crop=32] (first 2 of 10)"  # --limit-images 2: a subset, named as one
    assert datasets == {f"{shown} (default)", f"{shown} (paper)"}
    params = {(r["dataset"], r["denoiser"]): r["cost - params"] for r in rows_}
    assert params[(f"{shown} (default)", "tinycnn")] == 73  # the join ignores the protocol
    latency = {(r["dataset"], r["denoiser"]): r["cost - latency_ms"] for r in rows_}
    assert latency[(f"{shown} (paper)", "median")] > 0


def test_latency_beside_other_cells_is_never_shown(cli, costed):
    with sqlite3.connect(costed) as db:
        db.execute("UPDATE costs SET concurrent = 1 WHERE denoiser = 'median'")
    table = leaderboard_rows(cli, costed)
    median = [r for r in table if r["denoiser"] == "median"]
    assert all(r["latency_ms"] is None and r["latency_ms_256"] is None for r in median)
    assert all(r["latency_ms"] > 0 for r in table if r["denoiser"] != "median")
    with sqlite3.connect(costed) as db:
        db.execute("UPDATE costs SET concurrent = 2")
    table = leaderboard_rows(cli, costed)
    assert not any(key.startswith("latency") for key in table[0])  # absent, not zero
    assert table[0]["gmacs_256"] is not None or table[0]["denoiser"] != "tinycnn"


def test_rerun_keeps_measurements_and_leaderboard_without_them_is_a_usage_error(cli, store, costed):
    before = rows(costed, "SELECT updated FROM costs ORDER BY denoiser, shape")
    result = cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "2", "-n", "gaussian:0.1",
                 "-m", "noisy", "--store", costed, "--cost", "--quiet")
    assert result.code == 0
    assert rows(costed, "SELECT updated FROM costs ORDER BY denoiser, shape") == before
    empty = store.parent / "plain.sqlite"
    cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "1", "-n", "gaussian:0.1", "-m", "noisy",
        "--store", empty, "--quiet")
    result = cli("leaderboard", "--store", empty, "--cost")
    assert result.code == 2 and "run the grid again with --cost" in result.err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run `pytest -m cuda` on a GPU)")
def test_cuda_cost_flops_memory_and_synchronised_latency(cli, store, write_plugin):
    device = torch.device("cuda")
    model = tiny_model().to(device)
    measured = cost.measure(model, torch.rand(1, 64, 64), (1, 64, 64), device, repeats=3)
    assert measured.flops == TINY_FLOPS_PER_PIXEL * 64 * 64  # the same count as on the CPU
    assert measured.parameters == 73
    assert measured.memory_method == cost.CUDA_MEMORY and measured.peak_memory > 0
    assert measured.latency_median > 0 and measured.device_name == torch.cuda.get_device_name(device)
    assert measured.environment["cuda"] == torch.version.cuda
    plugin = write_plugin(TINY, "tiny_cnn.py")
    result = cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "2", "-n", "gaussian:0.1",
                 "-m", "tinycnn", "-m", "gaussian-filter", "--plugin", plugin, "--store", store,
                 "--device", "cuda", "--cost", "--quiet")
    assert result.code == 0, result.err
    found = rows(store, "SELECT device, memory_method, peak_memory, latency_median FROM costs")
    assert found and all(d.startswith("cuda") and m == cost.CUDA_MEMORY and p > 0 and t > 0
                         for d, m, p, t in found)


def test_cell_timings_from_dask_are_not_shown_as_runtime(cli, costed, tmp_path):
    from bench.reports import figures
    from bench.store.database import open_existing

    with open_existing(costed) as opened:
        assert not figures.runtime_table(opened, "psnr").empty
    with sqlite3.connect(costed) as db:
        db.execute("UPDATE cells SET device = 'dask:auto'")
    with open_existing(costed) as opened:
        assert figures.runtime_table(opened, "psnr").empty
    output = tmp_path / "report.html"
    assert cli("report", "--store", costed, "--output", output).code == 0
    text = output.read_text()
    assert "No runtime figure" in text and "<h2>Cost</h2>" in text
    ranking = text[text.index("<h2>Ranking</h2>"):text.index("<h2>Leaderboard</h2>")]
    assert "<th>gmacs_256</th>" in ranking and "n/a" in ranking
