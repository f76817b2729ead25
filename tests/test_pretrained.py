"""Pretrained weights: the DnCNN authors' models, and deepinv's ``pretrained=download``, with provenance.

The DnCNN-S sigma=25 file in tests/data is the authors' own (SHA-256 pinned by
the shipped manifest); it is held against the DnCNN paper's per-image PSNR.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import fetching
from bench.data.content_hash import sha256_file
from bench.errors import Skip, UsageError
from bench_plugins import dncnn, matconvnet
from conftest import TEST_DATA, rows

MAT = TEST_DATA / "dncnn" / "sigma=25.mat"
#: Zhang et al. 2017, Table 3 (DnCNN-S, sigma = 25): Set12 image 01 (C.man).
PAPER_01_SIGMA25 = 30.18


def test_the_test_copy_is_the_pinned_file():
    manifest = fetching.load_manifest(dncnn.MANIFEST)
    assert sha256_file(MAT) == manifest.files[dncnn.specific_file(25)].sha256


def test_conversion_reads_17_conv_layers_and_matconvnet_cross_correlation():
    layers = matconvnet.read_layers(MAT)
    assert [kind for kind, _, _ in layers].count("conv") == 17 and len(layers) == 33
    saved = dncnn.convert_residual(layers)
    assert (saved["depth"], saved["channels"]) == (17, 1)
    network = dncnn.build_residual(saved)
    # Reference: the first layer by hand, as MatConvNet computes it on the raw arrays
    # (cross-correlation, weights indexed [out, in, x (width), y (height)] through h5py).
    weights, bias = layers[0][1]
    image = torch.rand(1, 1, 9, 7, generator=torch.Generator().manual_seed(0))
    padded = F.pad(image, (1, 1, 1, 1))[0, 0].numpy()
    expected = np.empty((64, 9, 7))
    for out in range(64):
        for r in range(9):
            for c in range(7):
                expected[out, r, c] = sum(weights[out, 0, dx, dy] * padded[r + dy, c + dx]
                                          for dx in range(3) for dy in range(3)) + bias[0, out]
    with torch.no_grad():
        got = network.in_conv(image)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bnorm_folds_into_the_conv_as_matconvnet_applies_it():
    rng = np.random.default_rng(0)
    weight, bias = torch.randn(4, 2, 3, 3), torch.randn(4)
    mult, shift = rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    moments = np.stack([rng.normal(size=4), rng.uniform(0.5, 2, size=4)])  # h5py reads (2, C)
    folded_w, folded_b = matconvnet.fold_bnorm(weight, bias, [mult, shift, moments])
    x = torch.randn(1, 2, 6, 6)
    conv = F.conv2d(x, weight, bias, padding=1)
    mean, std = torch.tensor(moments[0]).float(), torch.tensor(moments[1]).float()
    # torch's batch_norm in eval mode with var = std^2 and eps = 0 is MatConvNet's test-mode bnorm.
    expected = F.batch_norm(conv, mean, std ** 2, torch.tensor(mult[0]).float(), torch.tensor(shift[0]).float(),
                            training=False, eps=0.0)
    torch.testing.assert_close(F.conv2d(x, folded_w, folded_b, padding=1), expected, atol=1e-5, rtol=1e-5)


def test_dncnn_s_on_set12_image_01_matches_the_paper(cli, mirror, store):
    result = cli("run", "-d", "set12", "--limit-images", "1", "-n", "gaussian:25/255", "-m", "dncnn-s",
                 "--protocol", "paper", "--metric", "psnr", "--store", store, "--quiet")
    assert result.code == 0, result.err
    (value,), = rows(store, "SELECT value FROM scores")
    # One noise draw differs from the paper's by about 0.1 dB on one image.
    assert value == pytest.approx(PAPER_01_SIGMA25, abs=0.25)


def test_a_level_without_a_model_skips_its_cells_only(cli, mirror, store):
    result = cli("run", "-d", "set12[crop=32]", "-n", "gaussian:25/255,17/255", "-n", "poisson:16",
                 "-m", "dncnn-s", "--metric", "psnr", "--store", store, "--quiet")
    assert result.code == 0, result.err
    found = dict(rows(store, "SELECT level, status FROM cells"))
    assert found == {25 / 255: "done", 17 / 255: "skipped", 16.0: "skipped"}
    errors = [e for e, in rows(store, "SELECT error FROM cells WHERE status = 'skipped'")]
    assert any("no model for sigma = 17/255" in e for e in errors)
    assert any("Gaussian noise only" in e for e in errors)
    assert [r for r in mirror.requests if r.startswith("model/")] == ["model/specifics/sigma=25.mat"]


def test_fetch_one_level_ahead_then_run_offline(cli, mirror, store):
    result = cli("fetch", "dncnn-s[level=25/255]", "--quiet")
    assert result.code == 0, result.err
    assert mirror.requests == ["model/specifics/sigma=25.mat"]
    assert cli("fetch", "set12", "--quiet").code == 0
    mirror.stop()
    result = cli("run", "-d", "set12[crop=32]", "-n", "gaussian:25/255", "-m", "dncnn-s", "--offline",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err


def test_dncnn_s_outside_a_run_and_offline(cli, store, no_network):
    with pytest.raises(UsageError, match=r"dncnn-s\[level=25/255\]"):
        dncnn.dncnn_s()
    with pytest.raises(Skip, match="no model for sigma = 80/255"):
        dncnn.dncnn_s("gaussian", 80 / 255)
    result = cli("run", "-d", "set12[crop=32]", "-n", "gaussian:25/255", "-m", "dncnn-s", "--offline",
                 "--store", store, "--quiet")
    assert result.code == 2 and "denoise-bench fetch" in result.err, result.err


def test_the_weights_hash_is_in_the_provenance_and_a_damaged_cache_is_rebuilt(cli, mirror, store):
    args = ("run", "-d", "set12[crop=32]", "-n", "gaussian:25/255", "-m", "dncnn-s", "--metric", "psnr",
            "--store", store, "--quiet")
    assert cli(*args).code == 0
    digest = sha256_file(MAT)
    board = json.loads(cli("leaderboard", "--store", store, "--format", "json").out)
    assert list(board["provenance"]["runs"][0]["versions"]["weights"].values()) == [digest]
    cache, = (fetching.settings().root / "dncnn-models" / "model" / "specifics").glob("sigma=25-*.pt")
    cache.write_bytes(b"damaged")
    store2 = store.with_name("second.sqlite")
    assert cli(*args[:-3], "--store", store2, "--quiet").code == 0
    assert rows(store, "SELECT image_id, value FROM scores ORDER BY image_id") == \
        rows(store2, "SELECT image_id, value FROM scores ORDER BY image_id")
    assert torch.load(cache, weights_only=True)["depth"] == 17


def test_a_converted_cache_holding_other_weights_is_rebuilt_from_the_verified_file(tmp_path):
    mat = tmp_path / MAT.name
    shutil.copy(MAT, mat)
    digest = sha256_file(mat)
    first = matconvnet.converted(mat, digest, dncnn.convert_residual)
    cache = mat.with_name(f"{mat.stem}-{digest[:16]}.pt")
    torch.save({**first, "state": {k: v * 2 for k, v in first["state"].items()}}, cache)  # loads fine
    again = matconvnet.converted(mat, digest, dncnn.convert_residual)
    reference = dncnn.convert_residual(matconvnet.read_layers(MAT))
    assert all(torch.equal(again["state"][k], reference["state"][k]) for k in reference["state"])
    assert torch.equal(torch.load(cache, weights_only=True)["state"]["in_conv.weight"],
                       reference["state"]["in_conv.weight"]), "the cache was not rebuilt"


# --- deepinv pretrained=download ------------------------------------------------------------------

DEEPINV_ROW = "deepinv:DnCNN[in_channels=1,out_channels=1,pretrained=download]"


@pytest.fixture
def deepinv_weights(mirror, monkeypatch):
    """deepinv's DnCNN weights URL pointed at the mirror, which serves a checkpoint of that shape."""
    import deepinv

    def publish(seed: int) -> str:
        torch.manual_seed(seed)
        state = deepinv.models.DnCNN(in_channels=1, out_channels=1, pretrained=None).state_dict()
        path = mirror.root / "hub" / "dncnn_sigma2_gray.pth"
        path.parent.mkdir(exist_ok=True)
        torch.save(state, path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    monkeypatch.setattr(deepinv.models.dncnn, "get_weights_url",
                        lambda model_name, file_name: f"{mirror.url}/hub/{file_name}")
    return publish


def test_pretrained_download_records_the_sha256_of_the_file_loaded(cli, deepinv_weights, store, tmp_path,
                                                                   monkeypatch):
    digest = deepinv_weights(seed=1)
    run = ("run", "-d", "set12[crop=32]", "--limit-images", "2", "-n", "gaussian:25/255", "-m", DEEPINV_ROW,
           "--metric", "psnr", "--store", store, "--quiet")
    assert cli(*run).code == 0
    local = fetching.settings().root / "torch-hub" / "checkpoints" / "dncnn_sigma2_gray.pth"
    assert sha256_file(local) == digest
    board = json.loads(cli("leaderboard", "--store", store, "--format", "json").out)
    assert digest in board["provenance"]["runs"][0]["versions"]["weights"].values()

    # Cached: offline, no network, the same cell.
    import socket

    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("network used"))
    result = cli(*run, "--offline")
    assert result.code == 0 and "1 from earlier runs" in result.err, result.err
    # A data folder with Set12 but not the weights, offline: one line naming the fetch command.
    shutil.copytree(fetching.settings().root / "ffdnet-testsets", tmp_path / "no-weights" / "ffdnet-testsets")
    result = cli(*run, "--offline", "--data-root", tmp_path / "no-weights")
    assert result.code == 2 and f'denoise-bench fetch "{DEEPINV_ROW}"' in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_changed_upstream_weights_never_mix_with_older_cells(cli, deepinv_weights, store, tmp_path):
    run = ("run", "-d", "set12[crop=32]", "--limit-images", "2", "-n", "gaussian:25/255", "-m", DEEPINV_ROW,
           "--metric", "psnr", "--store", store, "--quiet")
    deepinv_weights(seed=1)
    assert cli(*run).code == 0
    deepinv_weights(seed=2)  # upstream publishes new weights; a fresh data folder downloads them
    result = cli(*run, "--data-root", tmp_path / "fresh")
    assert result.code == 0 and "0 from earlier runs" in result.err, result.err
    assert len(rows(store, "SELECT key FROM cells")) == 2
