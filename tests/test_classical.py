"""Classical baselines: each equals its reference library call, gray and RGB, through the harness."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, denoise_wavelet

import bench
from bench.data.datasets import skimage_color, skimage_gray
from bench.grid.inputs import make_batches
from bench.noise.degradations import GaussianDegradation
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.specs import parse_spec
from bench_plugins import classical
from conftest import rows

SIGMA = 25 / 255


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_set())


def build(registry: Registry, text: str):
    return registry.build("denoisers", parse_spec(text))


def noisy(images: list[torch.Tensor], sigma: float = SIGMA, seed: int = 0):
    clean = torch.stack(images)
    generator = torch.Generator().manual_seed(seed)
    return clean, clean + sigma * torch.randn(clean.shape, generator=generator), torch.full((len(clean),), sigma)


@pytest.fixture(scope="module")
def gray():
    return noisy(skimage_gray(crop=64).images[:2])


@pytest.fixture(scope="module")
def rgb():
    return noisy(skimage_color(crop=48).images[:2])


def as_array(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor as the (H, W) or (H, W, C) float64 array the libraries take."""
    array = image.double().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1)).float()


# The library calls each row makes, with the defaults docs/baselines.md explains.
def nlm_reference(image, sigma, axis):
    return denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                            fast_mode=True, channel_axis=axis)


def tv_reference(image, sigma, axis):
    return denoise_tv_chambolle(image, weight=0.9 * sigma, channel_axis=axis)


def wavelet_reference(image, sigma, axis):
    return denoise_wavelet(image, sigma=sigma, wavelet="db2", method="BayesShrink", mode="soft",
                           rescale_sigma=True, convert2ycbcr=axis is not None, channel_axis=axis)


@pytest.mark.parametrize("name, reference", [("nlm", nlm_reference), ("tv", tv_reference),
                                             ("wavelet", wavelet_reference)])
@pytest.mark.parametrize("colour", ["gray", "rgb"])
def test_skimage_rows_equal_the_library_call(registry, request, name, reference, colour):
    clean, y, sigma = request.getfixturevalue(colour)
    out = build(registry, name)(y, sigma)
    assert out.shape == y.shape and out.dtype == y.dtype
    for i in range(len(y)):
        image = as_array(y[i])
        expected = as_tensor(reference(image, SIGMA, -1 if image.ndim == 3 else None))
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6,
                                   msg=f"{name} on {colour} image {i} differs from skimage's call")
    assert (peak_signal_noise_ratio(clean.numpy(), out.clamp(0, 1).numpy(), data_range=1)
            > peak_signal_noise_ratio(clean.numpy(), y.clamp(0, 1).numpy(), data_range=1) + 3), \
        f"{name} should clearly denoise a {colour} image at sigma 25/255"


#: bm3d itself is not bit-reproducible: two identical calls differ by up to ~3e-7.
BM3D_REPEAT_TOLERANCE = 1e-6


def test_bm3d_equals_a_direct_bm3d_call(registry, gray):
    import bm3d

    _, y, sigma = gray
    out = build(registry, "bm3d")(y[:1], sigma[:1])
    direct = bm3d.bm3d(y[0, 0].double().numpy(), float(sigma[0]))
    torch.testing.assert_close(out[0, 0], torch.from_numpy(direct).float(), rtol=0,
                               atol=BM3D_REPEAT_TOLERANCE,
                               msg="the bm3d row must add nothing to bm3d.bm3d and lose nothing")


def test_bm3d_uses_bm3d_rgb_for_colour(registry, rgb):
    import bm3d

    _, y, sigma = rgb
    out = build(registry, "bm3d")(y[:1], sigma[:1])
    direct = bm3d.bm3d_rgb(as_array(y[0]), float(sigma[0]))
    torch.testing.assert_close(out[0], as_tensor(direct), rtol=0, atol=BM3D_REPEAT_TOLERANCE)


def test_bm3d_scores_in_the_store_equal_a_direct_call(cli, store):
    """End to end: the PSNR the harness records is the PSNR of bm3d.bm3d on the same noisy pixels."""
    import bm3d

    dataset = "skimage-gray[crop=40]"
    result = cli("run", "-d", dataset, "-n", "gaussian:25/255", "-m", "bm3d", "--limit-images", "1",
                 "--metric", "psnr", "--store", store, "--quiet")
    assert result.code == 0, result.err
    (image_id, stored), = rows(store, "SELECT image_id, value FROM scores WHERE metric = 'psnr'")
    images = skimage_gray(crop=40).limit(1)
    batch, = make_batches(images, dataset, GaussianDegradation(), SIGMA, 0, 0, 1, torch.device("cpu"))
    direct = bm3d.bm3d(batch.y[0, 0].double().numpy(), float(batch.sigma[0]))
    direct = np.clip(direct.astype(np.float32), 0, 1)
    expected = peak_signal_noise_ratio(images.images[0][0].numpy(), direct, data_range=1)
    assert image_id == images.ids[0]
    assert stored == pytest.approx(expected, abs=1e-5)


def test_bm3d_missing_is_skipped_with_the_reason(cli, store, monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # `import bm3d` now fails, as when not installed
    result = cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:25/255", "-m", "bm3d",
                 "-m", "noisy", "--limit-images", "1", "--store", store, "--quiet")
    assert result.code == 0, result.err
    status = dict(rows(store, "SELECT denoiser, status FROM cells"))
    assert status == {"bm3d": "skipped", "noisy": "done"}
    assert "bm3d package is not installed" in result.err


def brute_force_bilateral(image: np.ndarray, sigma_color: float, sigma_spatial: float,
                          radius: int) -> np.ndarray:
    """Tomasi & Manduchi's formula, pixel by pixel, reflected edges, (H, W, C) image."""
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    out = np.empty_like(image)
    offsets = np.arange(-radius, radius + 1)
    spatial = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma_spatial ** 2))
    for r in range(image.shape[0]):
        for c in range(image.shape[1]):
            window = padded[r:r + 2 * radius + 1, c:c + 2 * radius + 1]
            distance = ((window - image[r, c]) ** 2).sum(axis=-1)
            weight = spatial * np.exp(-distance / (2 * sigma_color ** 2))
            out[r, c] = (weight[..., None] * window).sum(axis=(0, 1)) / weight.sum()
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_bilateral_matches_the_textbook_formula(registry, channels):
    generator = torch.Generator().manual_seed(1)
    y = torch.rand(1, channels, 12, 14, generator=generator, dtype=torch.float64)
    out = build(registry, "bilateral")(y, torch.tensor([0.1], dtype=torch.float64))
    expected = brute_force_bilateral(y[0].numpy().transpose(1, 2, 0), 0.3, 1.8, 6)
    np.testing.assert_allclose(out[0].numpy().transpose(1, 2, 0), expected, atol=1e-12)


def test_bilateral_matches_deepinv_away_from_the_border(gray):
    """deepinv's BilateralFilter is an independent implementation (zero-padded, so compare inside)."""
    import deepinv

    _, y, _ = gray
    radius = classical.bilateral_radius(1.8)
    ours = classical.bilateral(y, torch.full((2,), 0.2), 1.8, radius)
    theirs = deepinv.models.BilateralFilter()(y, sigma_d=1.8, sigma_r=0.2, window_size=2 * radius + 1)
    inside = (..., slice(radius, -radius), slice(radius, -radius))
    torch.testing.assert_close(ours[inside], theirs[inside], rtol=0, atol=1e-5)


def test_median_is_the_median_of_each_3x3_window(registry, rgb):
    _, y, sigma = rgb
    out = build(registry, "median")(y, sigma)
    padded = np.pad(y.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="symmetric")
    expected = np.median(sliding_window_view(padded, (3, 3), axis=(2, 3)), axis=(-2, -1))
    np.testing.assert_array_equal(out.numpy(), expected)
    assert np.array_equal(ndimage.median_filter(y[0, 0].numpy(), 3, mode="reflect"), expected[0, 0])


def test_outputs_keep_the_input_dtype_and_device(registry, gray):
    _, y, sigma = gray
    for name in ("nlm", "tv", "wavelet", "median", "bilateral"):
        out = build(registry, name)(y.double(), sigma.double())
        assert out.dtype == torch.float64 and out.device == y.device, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_methods_hand_back_tensors_on_the_gpu(registry, gray):
    _, y, sigma = gray
    for name in ("nlm", "tv", "wavelet", "median", "bilateral"):
        out = build(registry, name)(y.cuda(), sigma.cuda())
        assert out.is_cuda, name
        torch.testing.assert_close(out.cpu(), build(registry, name)(y, sigma), rtol=0, atol=1e-5)


def test_tuned_pick_is_close_to_the_oracle_best(registry):
    """J-invariant calibration sees only y; its pick must be near the best candidate by true PSNR."""
    clean, y, sigma = noisy(skimage_gray(crop=96).images[:1], sigma=30 / 255)
    method = classical.TV()
    image = as_array(y[0])
    chosen = classical.Calibrated(method).choose(image, 30 / 255)
    oracle = []
    for factor in classical.CALIBRATION_FACTORS:
        kwargs = {**method.kwargs(image, 30 / 255), "weight": factor * method.weight_factor * 30 / 255}
        out = np.clip(denoise_tv_chambolle(image, **kwargs), 0, 1)
        oracle.append((peak_signal_noise_ratio(as_array(clean[0]), out, data_range=1), kwargs["weight"]))
    best_psnr, _ = max(oracle)
    chosen_psnr = dict((w, p) for p, w in oracle)[chosen["weight"]]
    assert chosen_psnr > best_psnr - 0.5, f"calibrated weight {chosen['weight']:.4f} is far from the oracle"
    tuned = build(registry, "tv-tuned")(y, sigma)
    expected = denoise_tv_chambolle(image, **chosen)
    np.testing.assert_allclose(tuned[0, 0].numpy(), expected, atol=1e-6)


def test_tuned_strength_grows_with_the_noise(registry):
    clean = skimage_gray(crop=64).images[:1]
    picks = []
    for sigma in (10 / 255, 50 / 255):
        _, y, _ = noisy(clean, sigma)
        picks.append(classical.Calibrated(classical.NLMeans()).choose(as_array(y[0]), sigma)["h"])
    assert picks[0] < picks[1]


@pytest.mark.parametrize("text, message", [
    ("nlm[foo=1]", "bad parameters"),
    ("nlm[h=-0.1]", "nlm h must be > 0"),
    ("bm3d[profile=fast]", "bm3d profile must be one of"),
    ("wavelet[wavelet=nope]", "not a discrete pywt wavelet"),
    ("tv-tuned[weight=0.1]", "the tuned variant calibrates weight"),
    ("median[size=0]", "median size must be a positive integer"),
])
def test_bad_parameters_are_usage_errors(registry, text, message):
    with pytest.raises(bench.UsageError, match=message):
        build(registry, text)


def test_overrides_name_the_row_and_change_the_result(cli, store):
    result = cli("run", "-d", "skimage-gray[crop=48]", "-n", "gaussian:25/255", "-m", "nlm",
                 "-m", "nlm[patch_size=7,h=0.05]", "--limit-images", "2", "--metric", "psnr",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err
    cells = rows(store, "SELECT denoiser, key FROM cells ORDER BY denoiser")
    assert [name for name, _ in cells] == ["nlm", "nlm[h=0.05,patch_size=7]"]
    scores = rows(store, "SELECT c.denoiser, s.image_id, s.value FROM scores s "
                         "JOIN cells c ON c.key = s.cell_key ORDER BY s.image_id, c.denoiser")
    assert scores[0][2] != scores[1][2], "the override must change the numbers"


def test_bad_override_on_the_command_line_exits_2_before_writing(cli, store):
    result = cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:25/255",
                 "-m", "nlm[patch_sise=7]", "--store", store, "--quiet")
    assert result.code == 2
    assert "patch_sise" in result.err and len(result.err.strip().splitlines()) == 1
    assert not store.exists()
