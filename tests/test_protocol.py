"""``--protocol paper``: outputs rounded to 8 bits, PSNR/SSIM on 8-bit images, as DnCNN's and DPIR's test scripts.

DPIR (Zhang et al., main_test_drunet.py) turns the output into uint8 with
``np.uint8((x.clamp(0, 1) * 255).round())`` and scores it against the uint8
ground truth with ``20 log10(255 / sqrt(mse))`` on float64. The test below
does exactly that by hand on a small folder of PNGs and holds the store's
numbers against it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data, io
from skimage.metrics import peak_signal_noise_ratio

from bench.data.datasets import folder, noise_name
from bench.grid.outputs import output_dir
from bench.grid.inputs import make_batches
from bench.noise.degradations import GaussianDegradation
from bench_plugins.basic_denoisers import GaussianFilter
from conftest import rows

SIGMA = 25 / 255
#: The harness holds 8-bit values as float32 k / 255, so its PSNR matches the
#: uint8 arithmetic to float32 precision (about 1e-7 dB), not bit for bit.
TOLERANCE_DB = 1e-5


def dpir_uint8(image: torch.Tensor) -> np.ndarray:
    """DPIR's ``util.tensor2uint``: clamp, scale, round, uint8; (H, W) or (H, W, C)."""
    array = np.uint8((image.float().clamp(0, 1).numpy() * 255.0).round())
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def dpir_psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """DPIR's ``util.calculate_psnr`` with border 0."""
    mse = np.mean((estimate.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return 20 * math.log10(255.0 / math.sqrt(mse))


@pytest.fixture
def image_folder(tmp_path):
    """Two 8-bit test images, one gray and one colour, as a user's Set12-like folder would hold."""
    root = tmp_path / "images"
    root.mkdir()
    io.imsave(root / "camera.png", data.camera()[200:264, 200:264], check_contrast=False)
    io.imsave(root / "coffee.png", data.coffee()[100:148, 200:260], check_contrast=False)
    return root


def run(cli, store, root, protocol: str):
    result = cli("run", "-d", f"folder:{root}", "-n", "gaussian:25/255", "-m", "gaussian-filter",
                 "-m", "noisy", "--metric", "psnr", "--protocol", protocol, "--save-images", "2",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err
    return {(d, i, p): v for d, i, p, v in rows(
        store, "SELECT c.denoiser, s.image_id, c.protocol, s.value FROM scores s "
               "JOIN cells c ON c.key = s.cell_key")}


def test_paper_protocol_psnr_is_dpirs_psnr_on_8_bit_images(cli, store, image_folder):
    scores = run(cli, store, image_folder, "paper")
    dataset = f"folder:{image_folder}"
    images = folder(str(image_folder))
    model = GaussianFilter()
    for image_id, clean in zip(images.ids, images.images):
        truth = io.imread(image_folder / f"{image_id}.png")
        one = type(images)([image_id], [clean])
        batch, = make_batches(one, noise_name(dataset, images), GaussianDegradation(), SIGMA, 0, 0, 1, torch.device("cpu"))
        for name, output in (("gaussian-filter", model(batch.y, batch.sigma)), ("noisy", batch.y)):
            estimate = dpir_uint8(output[0])
            expected = dpir_psnr(estimate, truth)
            assert scores[(name, image_id, "paper")] == pytest.approx(expected, abs=TOLERANCE_DB), \
                f"{name} on {image_id}: the paper protocol must score 8-bit outputs like DPIR"
            assert expected == pytest.approx(peak_signal_noise_ratio(truth, estimate), abs=1e-9)


def wang_ssim(estimate: np.ndarray, truth: np.ndarray) -> float:
    """DnCNN's ``Cal_PSNRSSIM``: Wang's ssim_index on uint8 values as double (L = 255, 11x11
    Gaussian window of sigma 1.5, 'valid' filtering), averaged over colour channels."""
    from scipy.signal import correlate2d

    t = np.arange(11) - 5
    window = np.outer(np.exp(-t ** 2 / (2 * 1.5 ** 2)), np.exp(-t ** 2 / (2 * 1.5 ** 2)))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    a3, b3 = (np.atleast_3d(x.astype(np.float64)) for x in (estimate, truth))
    values = []
    for a, b in zip(a3.transpose(2, 0, 1), b3.transpose(2, 0, 1)):
        mu1, mu2 = correlate2d(a, window, "valid"), correlate2d(b, window, "valid")
        s11 = correlate2d(a * a, window, "valid") - mu1 ** 2
        s22 = correlate2d(b * b, window, "valid") - mu2 ** 2
        s12 = correlate2d(a * b, window, "valid") - mu1 * mu2
        values.append(np.mean((2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))))
    return float(np.mean(values))


def test_paper_protocol_ssim_is_dncnns_ssim_on_8_bit_images(cli, store, image_folder):
    result = cli("run", "-d", f"folder:{image_folder}", "-n", "gaussian:25/255", "-m", "gaussian-filter",
                 "--metric", "ssim", "--protocol", "paper", "--save-images", "2", "--store", store, "--quiet")
    assert result.code == 0, result.err
    (key,), = rows(store, "SELECT key FROM cells")
    for image_id, value in rows(store, "SELECT image_id, value FROM scores"):
        saved = io.imread(output_dir(store, key) / f"{image_id}.png")
        truth = io.imread(image_folder / f"{image_id}.png")
        assert value == pytest.approx(wang_ssim(saved, truth), abs=1e-6)


def test_saved_outputs_are_the_8_bit_images_that_were_scored(cli, store, image_folder):
    scores = run(cli, store, image_folder, "paper")
    for key, in rows(store, "SELECT key FROM cells WHERE denoiser = 'gaussian-filter'"):
        for image_id in ("camera", "coffee"):
            saved = io.imread(output_dir(store, key) / f"{image_id}.png")
            truth = io.imread(image_folder / f"{image_id}.png")
            assert dpir_psnr(saved, truth) == pytest.approx(
                scores[("gaussian-filter", image_id, "paper")], abs=TOLERANCE_DB)


def test_paper_and_default_protocols_are_separate_cells(cli, store, image_folder):
    paper = run(cli, store, image_folder, "paper")
    default = run(cli, store, image_folder, "default")
    assert len(rows(store, "SELECT key FROM cells")) == 4, "the protocol is part of the cell key"
    for (name, image_id, _), value in paper.items():
        other = default[(name, image_id, "default")]
        assert value != other, "rounding to 8 bits must change the score"
        assert abs(value - other) < 0.1, "rounding moves PSNR by a little, not a lot"
    result = cli("leaderboard", "--store", store, "--format", "csv")
    header = next(line for line in result.out.splitlines() if not line.startswith("#"))
    assert result.code == 0 and "protocol" in header.split(",")
