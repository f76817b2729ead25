"""Gaussian noise whose std varies in space (gaussian-map): the draw, the map each row receives,
and FFDNet / FDnCNN told the map as the authors' spatially variant demo does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio

from bench.noise.degradations import GaussianDegradation, GaussianMapDegradation
from bench_plugins import dncnn, ffdnet, matconvnet
from conftest import TEST_DATA, rows

MODELS = TEST_DATA / "models"
DATA = "skimage-gray[crop=64]"

MAP_ECHO = '''
import bench
import torch

def echo(y, sigma):  # a flat image at each image's level, or the map itself
    return sigma.expand_as(y).clone() if sigma.dim() == 4 else torch.ones_like(y) * sigma.view(-1, 1, 1, 1)

@bench.hookimpl
def register_denoisers(register):
    register("map-echo", lambda: echo, sigma_aware=True, noise_map=True, description="returns the map")
    register("echo", lambda: echo, sigma_aware=True, description="returns the level")

@bench.hookimpl
def register_metrics(register):
    register("right-edge", lambda: (lambda x_hat, x: x_hat[..., -1].double().flatten(1).mean(1)),
             higher_is_better=True, description="mean of the output's last column")
'''


def test_a_flat_map_is_the_gaussian_draw_bit_for_bit():
    images = [torch.rand(1, 20, 30, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    for shape in GaussianMapDegradation.SHAPES:
        flat = GaussianMapDegradation(shape, low=1.0)
        assert torch.equal(flat.apply(images, 0.1, [7, 8]), GaussianDegradation().apply(images, 0.1, [7, 8]))


def test_the_noise_std_follows_the_ramp_column_by_column():
    level, height, width = 0.1, 4000, 6
    degradation = GaussianMapDegradation("ramp", low=0.25)
    noise = degradation.apply([torch.full((1, height, width), 0.5)], level, [11])[0, 0] - 0.5
    expected = np.linspace(0.25, 1.0, width) / np.linspace(0.25, 1.0, width).mean() * level
    measured = noise.double().std(dim=0).numpy()
    # the std of 4000 normal draws is within 3 x 1.1% of the truth
    np.testing.assert_allclose(measured, expected, rtol=0.035)
    assert degradation.level_map(height, width, level).double().mean().item() == pytest.approx(level, rel=1e-6)
    assert measured[-1] / measured[0] == pytest.approx(4.0, rel=0.07)  # low = smallest / largest


def test_peaks_is_matlabs_surface_upside_down():
    # MATLAB's peaks has its maximum 8.106 at (x, y) = (-0.0093, 1.5814) on [-3, 3]^2; flipud
    # (the demo's data_augmentation mode 2) puts it in the upper part of the image
    profile = GaussianMapDegradation("peaks").profile(601, 601)
    row, col = divmod(int(profile.argmax()), 601)
    assert (row, col) == (round((3 - 1.5814) / 6 * 600), round((3 - 0.0093) / 6 * 600))
    assert profile.min().item() == 0.0 and profile.mean().item() == pytest.approx(1.0)


@pytest.mark.parametrize("text, message", [("gaussian-map[shape=wave]:0.1", "shape must be one of"),
                                           ("gaussian-map[low=2]:0.1", "low is the smallest std"),
                                           ("gaussian-map[spread=1]:0.1", "bad parameters")])
def test_bad_map_parameters_are_one_line(cli, store, text, message):
    result = cli("run", "-d", DATA, "-n", text, "-m", "bm3d", "--store", store, "--quiet")
    assert result.code == 2 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not store.exists()


def test_mean_without_a_map_is_one_line(cli, store):
    result = cli("run", "-d", DATA, "-n", "gaussian:0.1", "-m", "bm3d", "--sigma-in", "oracle,mean",
                 "--store", store, "--quiet")
    assert result.code == 2 and "no noise of the grid varies in space" in result.err, result.err
    assert not store.exists()


def test_map_rows_receive_the_map_and_others_its_mean(cli, write_plugin, store):
    plugin = write_plugin(MAP_ECHO, "map_echo.py")
    result = cli("run", "--plugin", plugin, "-d", DATA, "-n", "gaussian-map:0.2", "-n", "gaussian:0.2",
                 "-m", "map-echo", "-m", "echo", "--metric", "right-edge", "--sigma-in", "oracle,mean,x2",
                 "--limit-images", "2", "--store", store, "--quiet")
    assert result.code == 0, result.err
    got = dict(((d, n, g), v) for d, n, g, v in rows(
        store, "SELECT c.denoiser, c.degradation, c.sigma_in, avg(s.value) FROM scores s "
               "JOIN cells c ON c.key = s.cell_key GROUP BY c.key"))
    # the ramp from 0 to twice the mean: the right edge of the map is 0.4
    assert got[("map-echo", "gaussian-map", "oracle")] == pytest.approx(0.4, rel=1e-5)
    assert got[("map-echo", "gaussian-map", "x2")] == pytest.approx(0.8, rel=1e-5)
    assert got[("map-echo", "gaussian-map", "mean")] == pytest.approx(0.2, rel=1e-6)
    assert got[("echo", "gaussian-map", "oracle")] == pytest.approx(0.2, rel=1e-6)
    # mean is the oracle for a row not given a map, and on noise without one: no cell of its own
    assert not [k for k in got if k[2] == "mean" and (k[0] == "echo" or k[1] == "gaussian")]
    assert got[("map-echo", "gaussian", "oracle")] == pytest.approx(0.2, rel=1e-6)


def test_map_shape_is_part_of_the_cell_key(cli, store):
    for noise in ("gaussian-map:0.1", "gaussian-map[shape=peaks]:0.1", "gaussian-map[shape=ramp]:0.1"):
        assert cli("run", "-d", DATA, "-n", noise, "-m", "noisy", "--limit-images", "1", "--store", store,
                   "--quiet").code == 0
    found = rows(store, "SELECT degradation, count(*) FROM cells GROUP BY degradation")
    assert sorted(found) == [("gaussian-map", 1), ("gaussian-map[shape=peaks]", 1)]  # ramp is the default


def two_halves(height: int, width: int, left: float, right: float) -> torch.Tensor:
    level_map = torch.full((1, 1, height, width), left)
    level_map[..., width // 2:] = right
    return level_map


@pytest.mark.parametrize("build, radius", [
    (lambda: ffdnet.build(ffdnet.convert(matconvnet.read_layers(MODELS / "FFDNet_gray.mat"))), 38),
    (lambda: dncnn.build_flexible(dncnn.convert_flexible(matconvnet.read_layers(MODELS / "FDnCNN_gray.mat"))), 20)])
def test_each_part_of_the_image_is_denoised_at_its_own_level(build, radius):
    # Left half at 10/255, right at 40/255: away from the boundary by more than the receptive field
    # (FFDNet: 15 half-size layers and the bicubic taps), each side reads as the uniform map of its level.
    model = build().eval()
    y = torch.rand(1, 1, 48, 192, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mixed = model(y, two_halves(48, 192, 10 / 255, 40 / 255))
        low, high = model(y, torch.tensor([10 / 255])), model(y, torch.tensor([40 / 255]))
        flat = model(y, torch.full((1, 1, 48, 192), 10 / 255))
    torch.testing.assert_close(flat, low, atol=2e-5, rtol=0)
    torch.testing.assert_close(mixed[..., :96 - radius], low[..., :96 - radius], atol=2e-5, rtol=0)
    torch.testing.assert_close(mixed[..., 96 + radius:], high[..., 96 + radius:], atol=2e-5, rtol=0)
    assert not torch.allclose(mixed[..., 90:102], low[..., 90:102], atol=1e-3)


def test_ffdnet_told_the_map_beats_its_mean_as_in_the_authors_demo():
    # The authors' spatially variant demo: the peaks map from 0 to 50/255 (mean 23.57/255 at 256 x 256)
    model = ffdnet.build(ffdnet.convert(matconvnet.read_layers(MODELS / "FFDNet_gray.mat"))).eval()
    clean = torch.from_numpy(skdata.camera()[::2, ::2].astype(np.float32) / 255)[None, None]
    degradation = GaussianMapDegradation("peaks")
    level = 23.57 / 255
    noisy = degradation.apply([clean[0]], level, [5])
    with torch.no_grad():
        told_map = model(noisy, degradation.sigma_map(noisy, level))
        told_mean = model(noisy, torch.tensor([level]))
    psnr = [peak_signal_noise_ratio(clean.numpy(), out.numpy(), data_range=1.0) for out in (told_map, told_mean)]
    assert psnr[0] > psnr[1] + 1.0, psnr
    assert degradation.level_map(256, 256, level).max().item() * 255 == pytest.approx(50.0, abs=0.02)


def test_per_level_models_get_the_family_and_the_mean_level(cli, write_plugin, store):
    plugin = write_plugin('''
import bench, torch

def per_level(level, degradation):
    if degradation != "gaussian":
        raise bench.Skip(f"no model for {degradation}")
    return lambda y, sigma: torch.ones_like(y) * level
@bench.hookimpl
def register_denoisers(register):
    register("by-level", per_level, sigma_aware=True, per_level=True, description="one model per level")
''', "by_level.py")
    result = cli("run", "--plugin", plugin, "-d", DATA, "-n", "gaussian-map[shape=peaks]:0.2", "-m", "by-level",
                 "--metric", "mse", "--limit-images", "1", "--store", store, "--quiet")
    assert result.code == 0, result.err
    assert rows(store, "SELECT status FROM cells") == [("done",)]



def test_the_robustness_figure_draws_the_maps_mean_apart_from_the_line():
    import pandas as pd

    from bench.reports.figures import robustness

    table = pd.DataFrame({"metric": "psnr", "dataset": "set12", "noise": "gaussian-map", "level": 0.1,
                          "denoiser": ["ffdnet", "ffdnet @ x2", "ffdnet @ mean"], "sigma_in": ["oracle", "x2", "mean"],
                          "mean": [31.0, 27.0, 27.5], "ci95_low": [30.0, 26.0, 26.5], "ci95_high": [32.0, 28.0, 28.5]})
    figure = robustness(table, pd.Series([1.0, 2.0, 1.0]))
    drawn = {bars.get_label(): bars.lines[0].get_xydata().tolist() for bars in figure.axes[0].containers}
    assert drawn["ffdnet"] == [[1.0, 31.0], [2.0, 27.0]]
    assert drawn["ffdnet, told the map's mean"] == [[1.0, 27.5]]


def test_a_noise_filter_by_name_matches_every_map_shape():
    from bench.store.selection import noise_matches

    assert noise_matches("gaussian-map", "gaussian-map[shape=peaks]", 0.1)
    assert noise_matches("gaussian-map:0.1", "gaussian-map[shape=peaks]", 0.1)
    assert noise_matches("gaussian-map[shape=peaks]", "gaussian-map[shape=peaks]", 0.1)
    assert not noise_matches("gaussian-map:0.2", "gaussian-map[shape=peaks]", 0.1)
    assert not noise_matches("gaussian", "gaussian-map", 0.1)
    assert not noise_matches("gaussian-map[shape=ramp]", "gaussian-map[shape=peaks]", 0.1)


def test_galleries_redraw_the_noise_of_a_parameterised_degradation():
    from bench.config import RunConfig
    from bench.plugins import get_plugin_set
    from bench.registry import Registry
    from bench.reports.figures import clean_and_noisy

    registry = Registry(get_plugin_set())
    clean, noisy = clean_and_noisy(registry, RunConfig(), DATA, "gaussian-map[shape=peaks]", 0.1, 0, 0, "camera")
    flat_clean, flat = clean_and_noisy(registry, RunConfig(), DATA, "gaussian", 0.1, 0, 0, "camera")
    assert torch.equal(clean, flat_clean) and noisy.shape == flat.shape
    # the peaks map is 0 at its lowest point: there the noisy pixel is the clean one
    lowest = GaussianMapDegradation("peaks").profile(*clean.shape[-2:]).argmin()
    assert noisy.flatten()[lowest] == clean.flatten()[lowest]
