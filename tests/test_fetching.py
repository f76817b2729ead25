"""Named datasets fetched with pooch from a local mirror: verified, cached, never trusted when wrong.

The mirror (conftest.py) serves real copies of the pinned files (Set12 from the
FFDNet repository); the SHA-256 they are held against is the shipped manifest's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import numpy as np
import pytest
import torch
from skimage import io

from bench.data import fetching
from bench.data.datasets import ImageSet
from bench.data.standard import MNIST, FASHION_MNIST, PINNED_SETS, rgb2gray
from conftest import TEST_DATA, rows

SET12 = fetching.load_manifest("ffdnet-testsets", "Set12")


def data_folder() -> fetching.Path:
    return fetching.settings().root / "ffdnet-testsets" / "Set12"


def one_line_exit_2(result, message: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


def run_set12(cli, store, *extra):
    return cli("run", "-d", "set12[crop=32]", "-n", "gaussian:25/255", "-m", "noisy", "--metric", "psnr",
               "--store", store, "--quiet", *extra)


def test_the_manifest_copy_is_the_shared_one():
    shared = fetching.Path(__file__).parents[2] / "shared" / "datasets" / "ffdnet-testsets.json"
    if not shared.exists():
        pytest.skip(f"{shared} is not on this machine (a clean clone)")
    assert json.loads(shared.read_text()) == json.loads(
        (fetching.resources.files("bench") / "data" / "ffdnet-testsets.json").read_text())


def test_fetch_downloads_and_verifies_then_a_run_uses_the_cache_without_network(
        cli, mirror, store, monkeypatch):
    result = cli("fetch", "set12", "--quiet")
    assert result.code == 0, result.err
    assert sorted(mirror.requests) == sorted(f"Set12/{f.split('/')[-1]}" for f in SET12.files)
    for path, spec in SET12.files.items():
        local = fetching.settings().root / "ffdnet-testsets" / path
        assert hashlib.sha256(local.read_bytes()).hexdigest() == spec.sha256
    listed = [line for line in cli("list", "datasets").out.splitlines() if line.startswith(("set12", "bsd68 "))]
    assert "cached, 1.2 MB" in listed[1] and "not cached, 6.5 MB" in listed[0], listed
    mirror.stop()
    import socket

    def refuse(self, *args):
        raise AssertionError("a run on cached data opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    result = run_set12(cli, store)
    assert result.code == 0, result.err
    assert rows(store, "SELECT n_images, status FROM cells") == [(12, "done")]


def test_images_are_the_png_pixels_and_carry_the_pinned_checksums(mirror):
    set12 = next(s for s in PINNED_SETS if s.name == "set12")
    images = set12.load()
    assert images.ids == [f"{i:02d}" for i in range(1, 13)]
    first = io.imread(TEST_DATA / "set12" / "01.png")
    assert images.images[0].shape == (1, *first.shape)
    assert torch.equal(images.images[0][0], torch.from_numpy(first).float() / 255)
    assert images.content == {p.split("/")[-1]: f.sha256 for p, f in SET12.files.items()}
    assert set12.load(crop=64).images[8].shape == (1, 64, 64)


def test_a_flipped_byte_is_detected_not_used_and_fetched_again(cli, mirror, store):
    assert cli("fetch", "set12", "--quiet").code == 0
    target = data_folder() / "05.png"
    good = target.read_bytes()
    broken = bytearray(good)
    broken[100] ^= 0x01
    target.write_bytes(bytes(broken))
    mirror.requests.clear()
    result = run_set12(cli, store)
    assert result.code == 0, result.err
    assert mirror.requests == ["Set12/05.png"], "only the corrupt file is fetched again"
    assert target.read_bytes() == good


def test_a_second_mismatch_is_a_clear_error_and_nothing_is_kept(cli, mirror, store):
    mirror.corrupt.add("Set12/03.png")
    result = run_set12(cli, store)
    one_line_exit_2(result, "checksum mismatch for Set12/03.png")
    assert not (data_folder() / "03.png").exists()
    assert not store.exists()


def test_a_dropped_connection_leaves_nothing_that_is_later_trusted(cli, mirror, store):
    mirror.drop.add("Set12/08.png")
    result = cli("fetch", "set12", "--quiet")
    assert result.code == 2 and "Set12/08.png" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    leftovers = [p for p in data_folder().iterdir() if p.name not in [f"{i:02d}.png" for i in range(1, 13)]]
    assert not (data_folder() / "08.png").exists() and not leftovers
    one_line_exit_2(run_set12(cli, store, "--offline"), "denoise-bench fetch set12")
    mirror.drop.clear()
    assert run_set12(cli, store).code == 0
    assert hashlib.sha256((data_folder() / "08.png").read_bytes()).hexdigest() == \
        SET12.files["Set12/08.png"].sha256


def test_offline_with_missing_data_names_the_fetch_command(cli, store, monkeypatch, no_network):
    one_line_exit_2(run_set12(cli, store, "--offline"), "run `denoise-bench fetch set12`")
    monkeypatch.setenv(fetching.OFFLINE_ENV, "1")
    one_line_exit_2(run_set12(cli, store), "run `denoise-bench fetch set12`")
    one_line_exit_2(cli("fetch", "set12"), "offline mode is on")
    assert not store.exists()


@pytest.mark.parametrize("args,message", [
    (["-d", "set21"], "did you mean 'set12'"),
    (["-d", "set12[gray=1]"], "bad parameters"),
    (["-d", "cbsd68[grey=1]"], "bad parameters"),
])
def test_bad_dataset_names_and_parameters(cli, store, args, message):
    result = cli("run", *args, "-n", "gaussian:0.1", "-m", "noisy", "--store", store, "--quiet")
    one_line_exit_2(result, message)
    assert not store.exists()


def test_fetch_suggests_the_closest_name(cli):
    one_line_exit_2(cli("fetch", "kodak42"), "did you mean 'kodak24'")


def test_an_unreachable_source_is_one_line(cli, store, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(fetching.MIRROR_ENV, f"http://127.0.0.1:{port}")
    one_line_exit_2(run_set12(cli, store), "cannot download http://127.0.0.1")
    assert not store.exists()


def test_a_data_folder_that_cannot_be_written_is_one_line(cli, store, tmp_path, mirror):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_exit_2(run_set12(cli, store, "--data-root", blocker / "data"), "cannot be written")
    assert not store.exists() and mirror.requests == []


def test_a_changed_upstream_file_never_mixes_with_older_cells(cli, mirror, store, monkeypatch):
    assert run_set12(cli, store).code == 0
    # Upstream replaces 02.png: the mirror serves the new file and the manifest pins its hash.
    served = mirror.root / "Set12" / "02.png"
    pixels = io.imread(served)
    pixels[0, 0] ^= 1
    io.imsave(served, pixels, check_contrast=False)
    changed = served.read_bytes()
    original = fetching.load_manifest

    def updated(name, group=None):
        manifest = original(name, group)
        if "Set12/02.png" in manifest.files:
            spec = manifest.files["Set12/02.png"]
            manifest.files["Set12/02.png"] = fetching.FileSpec(
                spec.path, hashlib.sha256(changed).hexdigest(), len(changed))
        return manifest

    monkeypatch.setattr(fetching, "load_manifest", updated)
    result = run_set12(cli, store)
    assert result.code == 0, result.err
    assert "0 from earlier runs" in result.err, "the old cell must not be reused"
    assert len(rows(store, "SELECT key FROM cells")) == 2
    assert "1 changed (02.png)" in cli("status", "--store", store).out, "the old cell no longer counts"


def test_gray_is_matlab_rgb2gray_rounded_to_8_bits():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 77]]], dtype=np.uint8)
    gray = rgb2gray(torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)
    # By hand: round(255 * 0.2989) = 76, round(255 * 0.5870) = 150, round(255 * 0.1140) = 29,
    # round(10 * 0.2989 + 200 * 0.5870 + 77 * 0.1140) = round(129.18) = 129.
    assert (gray * 255).round().int().flatten().tolist() == [76, 150, 29, 129]


# --- torchvision sets --------------------------------------------------------------------------------

def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    """torchvision's raw MNIST format: big-endian magic, sizes, then uint8 data."""
    import struct

    payload = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def fake_digits(raw, n_train=6, n_test=3, compress=False):
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        suffix = ".gz" if compress else ""
        out[split] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", out[split], compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n).astype(np.uint8),
                  compress)
    return out


def test_fashion_mnist_from_the_data_folder_with_splits(cli, store):
    digits = fake_digits(fetching.settings().root / "FashionMNIST" / "raw")
    test = FASHION_MNIST.load(split="test")
    assert len(test) == 3 and torch.equal(test.images[0][0], torch.from_numpy(digits["test"][0]).float() / 255)
    assert len(FASHION_MNIST.load(split="train")) == 6
    result = cli("run", "-d", "fashion-mnist", "-n", "gaussian:0.2", "-m", "noisy", "--offline",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err
    assert rows(store, "SELECT dataset, n_images FROM cells") == [("fashion-mnist", 3)]


def test_torchvision_sets_offline_name_the_fetch_command(cli, store, tmp_path, no_network, monkeypatch):
    monkeypatch.setenv(fetching.OFFLINE_ENV, "1")
    with pytest.raises(fetching.UsageError, match="denoise-bench fetch mnist"):
        MNIST.load(str(tmp_path))
    one_line_exit_2(cli("run", "-d", "fashion-mnist", "-n", "gaussian:0.2", "-m", "noisy", "--store", store,
                        "--quiet"), "denoise-bench fetch fashion-mnist")
    assert not store.exists()


def test_torchvision_checks_its_md5_on_download_from_the_mirror(cli, mirror, store):
    """Files that are not the real MNIST are refused by torchvision's own MD5, and nothing of them is kept."""
    fake_digits(mirror.root / "MNIST", compress=True)
    one_line_exit_2(cli("run", "-d", "mnist", "-n", "gaussian:0.2", "-m", "noisy", "--store", store,
                        "--quiet"), "checksum mismatch for MNIST/raw/train-images-idx3-ubyte.gz")
    assert any(r.startswith("MNIST/") for r in mirror.requests)
    assert not (fetching.settings().root / "MNIST").exists(), "no .gz, no -ubyte, no empty folder kept"
    assert not store.exists()


def test_an_explicit_data_root_keeps_working_for_mnist(tmp_path, no_network):
    digits = fake_digits(tmp_path / "elsewhere" / "MNIST" / "raw")
    images = MNIST.load(str(tmp_path / "elsewhere"), split="train")
    assert isinstance(images, ImageSet) and len(images) == 6
    assert torch.equal(images.images[5][0], torch.from_numpy(digits["train"][5]).float() / 255)
    assert not os.listdir(fetching.settings().root), "nothing written to the default data folder"


# --- urban100 through deepinv ------------------------------------------------------------------------

def test_urban100_through_deepinv_with_its_md5(cli, mirror, store, monkeypatch, tmp_path):
    """A two-image stand-in archive on the mirror; deepinv's folder MD5 is pinned to it for the test."""
    import tarfile

    from deepinv.datasets import Urban100HR
    from deepinv.datasets.utils import calculate_md5_for_folder

    folder = tmp_path / "archive" / "Urban100_HR"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    colour = [rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8) for _ in range(2)]
    for i, pixels in enumerate(colour, start=1):
        io.imsave(folder / f"img_{i:03d}.png", pixels, check_contrast=False)
    with tarfile.open(mirror.root / "Urban100_HR.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="Urban100_HR")
    monkeypatch.setattr(Urban100HR, "_checksums", {"Urban100_HR": calculate_md5_for_folder(str(folder))})

    one_line_exit_2(cli("run", "-d", "urban100", "-n", "gaussian:0.1", "-m", "noisy", "--offline",
                        "--store", store, "--quiet"), "denoise-bench fetch urban100")
    result = cli("run", "-d", "urban100[gray=1]", "-n", "gaussian:0.1", "-m", "noisy", "--metric", "psnr",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err
    assert mirror.requests == ["Urban100_HR.tar.gz"]
    assert rows(store, "SELECT dataset, n_images FROM cells") == [("urban100[gray=1]", 2)]
    from bench.data.standard import URBAN100

    gray = URBAN100.load(gray=True)
    expected = rgb2gray(torch.from_numpy(colour[1]).permute(2, 0, 1).float() / 255)
    assert gray.ids == ["img_001", "img_002"] and torch.equal(gray.images[1], expected)
    assert URBAN100.load().images[0].shape == (3, 40, 48)
