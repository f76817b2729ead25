"""On a CUDA machine: the same grid on the GPU scores as on the CPU (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from conftest import rows

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

GRID = ["-d", "skimage-gray[crop=64]", "-n", "gaussian:25/255", "-n", "poisson:16", "-m", "noisy",
        "-m", "gaussian-filter", "-m", "deepinv:MedianFilter", "-m", "deepinv:TVDenoiser", "--quiet"]


def scores(path) -> dict:
    return {(d, n, image, m): v for d, n, image, m, v in rows(
        path, "SELECT c.denoiser, c.degradation, s.image_id, s.metric, s.value "
              "FROM scores s JOIN cells c ON c.key = s.cell_key")}


def test_a_grid_on_cuda_scores_as_on_the_cpu(cli, tmp_path):
    cpu, gpu = tmp_path / "cpu.sqlite", tmp_path / "gpu.sqlite"
    assert cli("run", *GRID, "--device", "cpu", "--store", cpu).code == 0
    result = cli("run", *GRID, "--device", "cuda", "--store", gpu)
    assert result.code == 0, result.err
    assert {d for (d,) in rows(gpu, "SELECT DISTINCT device FROM cells")} == {"cuda"}
    on_cpu, on_gpu = scores(cpu), scores(gpu)
    assert on_cpu.keys() == on_gpu.keys()
    for key, value in on_cpu.items():
        # identical noisy inputs; only the arithmetic of the device differs
        assert on_gpu[key] == pytest.approx(value, abs=2e-3 if key[3] == "psnr" else 2e-4), key
