"""Noisy-input protocols: ``paper`` (float noise, unclipped), ``clip`` (clipped to [0, 1]), ``uint8`` (also rounded).

The reference is by hand: the harness's own seeded draw (``make_batches`` under the
default protocol), clipped / rounded with numpy, scored with scikit-image's PSNR on
8-bit values; the ``noisy`` row returns its input, so its score is the input's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from bench.data.datasets import folder, noise_name
from bench.grid.inputs import make_batches
from bench.noise.degradations import GaussianDegradation
from bench_plugins.basic_denoisers import GaussianFilter
from conftest import rows

SIGMA = 50 / 255  # high enough that many noisy pixels leave [0, 1]


def by_hand(protocol: str, tmp_path) -> dict[str, float]:
    from skimage import io

    image = io.imread(tmp_path / "images" / "camera.png")
    label = f"folder:{tmp_path / 'images'}"
    images = folder(str(tmp_path / "images"))  # its seeds follow its content (noise_name)
    batch, = make_batches(images, noise_name(label, images), GaussianDegradation(), SIGMA, 0, 0, 1,
                          torch.device("cpu"))
    y = batch.y[0, 0].numpy()
    if protocol in ("clip", "uint8"):
        y = np.clip(y, 0, 1)
    if protocol == "uint8":
        y = np.round(y * 255) / 255
    outputs = {"noisy": y, "gaussian-filter": GaussianFilter()(torch.from_numpy(y)[None, None],
                                                               batch.sigma)[0, 0].numpy()}
    # Every paper protocol scores 8-bit outputs.
    return {row: peak_signal_noise_ratio(image, np.round(np.clip(out, 0, 1) * 255).astype(np.uint8), data_range=255)
            for row, out in outputs.items()}


@pytest.mark.parametrize("protocol", ["paper", "clip", "uint8"])
def test_the_noisy_input_is_handed_over_as_the_protocol_says(cli, store, tmp_path, protocol):
    from skimage import io

    (tmp_path / "images").mkdir()
    io.imsave(tmp_path / "images" / "camera.png", data.camera()[100:164, 100:164], check_contrast=False)
    result = cli("run", "-d", f"folder:{tmp_path / 'images'}", "-n", "gaussian:50/255", "-m", "noisy",
                 "-m", "gaussian-filter", "--metric", "psnr", "--protocol", protocol, "--store", store, "--quiet")
    assert result.code == 0, result.err
    scores = dict(rows(store, "SELECT c.denoiser, s.value FROM scores s JOIN cells c ON c.key = s.cell_key"))
    expected = by_hand(protocol, tmp_path)
    assert scores == pytest.approx(expected, abs=1e-5)
    # The filter sees the clipping and the rounding (the output's rounding hides them from `noisy`).
    for other in {"paper", "clip", "uint8"} - {protocol}:
        assert abs(scores["gaussian-filter"] - by_hand(other, tmp_path)["gaussian-filter"]) > 2e-4


def test_each_protocol_is_its_own_cell(cli, store):
    for protocol in ("paper", "clip", "uint8"):
        assert cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "1", "-n", "gaussian:50/255",
                   "-m", "gaussian-filter", "--protocol", protocol, "--metric", "psnr", "--store", store,
                   "--quiet").code == 0
    found = rows(store, "SELECT protocol, s.value FROM cells c JOIN scores s ON c.key = s.cell_key")
    assert sorted(p for p, _ in found) == ["clip", "paper", "uint8"]
    assert len({round(v, 6) for _, v in found}) == 3  # clipping and rounding change what the filter sees
