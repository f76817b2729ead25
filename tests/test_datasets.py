"""Datasets load from disk only, with clear errors for what is missing."""

import numpy as np
import pytest
import torch
from skimage import io

from bench.datasets import SKIMAGE_GRAY, folder, lfw_faces, mnist, skimage_color, skimage_gray
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


def test_mnist_without_files_says_what_to_do(tmp_path):
    with pytest.raises(UsageError, match="MNIST not found under"):
        mnist(str(tmp_path))
    with pytest.raises(UsageError, match="--data-root"):
        mnist(None)
