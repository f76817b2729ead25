"""Datasets load from disk only, with clear errors for what is missing."""

import numpy as np
import pytest
import torch
from skimage import io

from bench.data.datasets import SKIMAGE_GRAY, folder, lfw_faces, skimage_color, skimage_gray
from bench.errors import UsageError


def test_skimage_sets_shapes_and_range():
    gray, color = skimage_gray(), skimage_color(crop=128)
    assert gray.ids == list(SKIMAGE_GRAY)
    assert all(im.shape[0] == 1 and im.dtype == torch.float32 for im in gray.images)
    assert gray.images[0].shape == (1, 512, 512)
    assert all(im.shape == (3, 128, 128) for im in color.images)
    assert all(0 <= im.min() and im.max() <= 1 for im in gray.images + color.images)


def test_crop_keeps_the_short_side_of_small_images():
    images = skimage_gray(crop=256)
    shapes = {i: tuple(im.shape) for i, im in zip(images.ids, images.images)}
    assert shapes["camera"] == (1, 256, 256) and shapes["text"] == (1, 172, 256)


def test_lfw_split_is_disjoint_and_complete():
    train, test, every = lfw_faces("train"), lfw_faces("test"), lfw_faces("all")
    assert (len(train), len(test), len(every)) == (160, 40, 200)
    assert not set(train.ids) & set(test.ids)
    assert test.images[0].shape == (1, 25, 25)
    with pytest.raises(UsageError, match="unknown split"):
        lfw_faces("val")


def test_folder_reads_gray_rgb_rgba_and_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    io.imsave(tmp_path / "a.png", gray, check_contrast=False)
    io.imsave(tmp_path / "b.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), check_contrast=False)
    io.imsave(tmp_path / "c.png", rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), check_contrast=False)
    io.imsave(tmp_path / "d.tif", rng.integers(0, 65536, (20, 30), dtype=np.uint16), check_contrast=False)
    (tmp_path / "notes.txt").write_text("not an image")
    images = folder(str(tmp_path))
    assert images.ids == ["a", "b", "c", "d"]
    assert [tuple(im.shape) for im in images.images] == [(1, 20, 30), (3, 20, 30), (3, 20, 30), (1, 20, 30)]
    assert torch.allclose(images.images[0][0], torch.from_numpy(gray / 255.0).float())


def test_folder_errors(tmp_path, cli):
    with pytest.raises(UsageError, match="no images"):
        folder(str(tmp_path))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    result = cli("run", "-d", f"folder:{tmp_path}", "--store", tmp_path / "s.sqlite", "--quiet")
    assert result.code == 2 and "cannot read image" in result.err and "broken.png" in result.err
    assert not (tmp_path / "s.sqlite").exists()


def test_a_changed_folder_is_a_new_identity_and_status_says_why(cli, store, tmp_path, monkeypatch):
    import numpy as np
    from skimage import io as skio

    from bench.reports import tables
    from bench.store.database import open_existing

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        skio.imsave(folder / f"{name}.png", rng.integers(0, 255, (24, 24), dtype=np.uint8))
    grid = ["run", "-d", f"folder:{folder}", "-n", "gaussian:0.1", "-m", "noisy", "-m", "gaussian-filter",
            "--store", store, "--quiet"]
    assert cli(*grid).code == 0
    assert "no longer counted" not in cli("status", "--store", store).out

    skio.imsave(folder / "a.png", np.zeros((24, 24), dtype=np.uint8))  # replace one image
    skio.imsave(folder / "c.png", rng.integers(0, 255, (24, 24), dtype=np.uint8))  # add another
    second = cli("run", "-d", f"folder:{folder}", "-n", "gaussian:0.1", "-m", "noisy", "--store", store, "--quiet")
    assert second.code == 0 and "(0 from earlier runs)" in second.err
    with open_existing(store) as opened:
        table = tables.leaderboard(opened, "psnr")
    assert table["denoiser"].tolist() == ["noisy"]  # gaussian-filter's old cell no longer counts
    assert table["n"].tolist() == [3]
    status = cli("status", "--store", store).out
    assert "2 done cell(s) were scored on files that have changed since" in status
    assert "1 changed (a.png), 1 added (c.png)" in status


def test_folder_hashes_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    from bench.data import content_hash

    cache = tmp_path / "cache"
    file = tmp_path / "x.bin"
    file.write_bytes(b"one")
    first = content_hash.sha256_files([file], cache)[file]
    calls = []
    monkeypatch.setattr(content_hash, "sha256_file", lambda path: calls.append(path) or "recomputed")
    assert content_hash.sha256_files([file], cache)[file] == first and calls == []
    file.write_bytes(b"two!")  # a new size: hashed again
    assert content_hash.sha256_files([file], cache)[file] == "recomputed" and calls == [file]
