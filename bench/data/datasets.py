"""Datasets: clean images as (C, H, W) float32 tensors in [0, 1], loaded from disk only.

Shipped with scikit-image: ``skimage-gray``, ``skimage-color``, ``lfw-faces``.
From a user-given path: ``folder:PATH``. Datasets fetched by name (Set12,
MNIST, ...) are in ``bench.data.standard``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from bench.data import fetching
from bench.data.content_hash import sha256_files
from bench.data.subsets import subset_label
from bench.errors import UsageError
from bench.seeding import identity_hash
from bench.specs import without_paths

SKIMAGE_GRAY = ("camera", "moon", "coins", "text", "page", "brick", "grass", "gravel", "clock", "cell")
SKIMAGE_COLOR = ("astronaut", "chelsea", "coffee", "immunohistochemistry", "rocket")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "test", "all")
#: lfw-faces split: every fifth image (by index) is held out for testing.
LFW_TEST_EVERY = 5


@dataclass
class ImageSet:
    """Clean images with stable ids; images may differ in size.

    :param ids: one stable id per image (noise seeds and per-image scores use it).
    :param images: (C, H, W) float32 tensors in [0, 1], on the CPU.
    :param content: file name -> SHA-256, where the images come from files a user
        can change: the content becomes part of the cells' identity (``content_id``);
        one entry per image, in order (``limit`` keeps the first n).
    :param captures: a real-noise set's noisy captures, one per image (the ``real``
        degradation hands them over instead of drawing noise); None for clean-only sets.
    :param reference: whether ``images`` are clean references; False for a set of noisy
        captures alone (``rni15``: ``images`` are the captures, and no metric needing a
        reference runs on it).
    """

    ids: list[str]
    images: list[torch.Tensor]
    content: dict[str, str] | None = field(default=None, kw_only=True)
    captures: list[torch.Tensor] | None = field(default=None, kw_only=True)
    reference: bool = field(default=True, kw_only=True)
    #: Images in the whole set when this is its first ``len(self)`` (``limit``), else None.
    subset_of: int | None = field(default=None, kw_only=True)
    #: The whole set's ``content`` when this is a subset (a dataset's current content is the whole set's).
    whole_content: dict[str, str] | None = field(default=None, kw_only=True)

    def limit(self, n: int | None) -> "ImageSet":
        """The first n images (the set itself when it has no more than n)."""
        if n is None or n >= len(self):
            return self
        content = None if self.content is None else dict(list(self.content.items())[:n])
        captures = None if self.captures is None else self.captures[:n]
        return ImageSet(self.ids[:n], self.images[:n], content=content, subset_of=len(self),
                        whole_content=self.whole_content or self.content, captures=captures,
                        reference=self.reference)

    @property
    def subset(self) -> str | None:
        """``first 3 of 12`` for a limited set, None for a whole one (tables label and rank by it)."""
        return None if self.subset_of is None else subset_label(len(self), self.subset_of)

    @cached_property
    def content_id(self) -> str | None:
        """A hash of the file names and bytes behind the images (None for shipped data)."""
        return None if self.content is None else identity_hash(self.content)

    @property
    def whole_set_content(self) -> dict[str, str] | None:
        """The content of the whole set, for a subset too: what the dataset is now (tables ask
        whether a cell's images are still the current set's, or its first n)."""
        return self.whole_content or self.content

    def __len__(self) -> int:
        return len(self.ids)


def shown_name(dataset: str, subset: str | None) -> str:
    """How tables name a dataset's cells: ``set12``, or ``set12 (first 3 of 12)`` for a subset."""
    return dataset if subset is None else f"{dataset} ({subset})"


def split_shown_name(name: str) -> tuple[str, str | None]:
    """``shown_name`` read back: (dataset, subset or None)."""
    dataset, opened, subset = name.rpartition(" (")
    if opened and subset.endswith(")") and subset.startswith("first "):
        return dataset, subset[:-1]
    return name, None


def noise_name(label: str, images: ImageSet) -> str:
    """The dataset's name in noise seeds and cell keys: its label, or where the label names a
    place on disk and the files' content is known, the label without the place plus the content.

    So a folder's noise follows its content, not the way its path is written.
    """
    placeless = without_paths(label, prefix_names_a_place=True)
    if placeless is None or images.content_id is None:
        return label
    return f"{placeless}@{images.content_id}"


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC array (uint8, uint16 or float in [0, 1]) to a (C, H, W) float32 tensor."""
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) / 65535.0
    elif array.dtype == bool:
        array = array.astype(np.float32)
    else:
        array = np.clip(array.astype(np.float32), 0.0, 1.0)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 4:  # drop alpha
        array = array[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def center_crop(image: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None:
        return image
    """The centred patch of at most size x size (smaller images keep their short side)."""
    if size <= 0:
        raise UsageError(f"crop must be > 0, got {size}")
    _, h, w = image.shape
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[:, top:top + ch, left:left + cw]


def _skimage(names: tuple[str, ...], crop: int | None) -> ImageSet:
    from skimage import data

    return ImageSet(list(names), [center_crop(to_tensor(getattr(data, n)()), crop) for n in names])


def skimage_gray(crop: int | None = None) -> ImageSet:
    """scikit-image's ten gray test images (crop=N: centred patches of at most NxN)."""
    return _skimage(SKIMAGE_GRAY, crop)


def skimage_color(crop: int | None = None) -> ImageSet:
    """scikit-image's five colour test images."""
    return _skimage(SKIMAGE_COLOR, crop)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def lfw_faces(split: str = "test") -> ImageSet:
    """scikit-image's lfw_subset (200 gray 25x25 images); test = every fifth image."""
    from skimage import data

    _check_split(split)
    faces = data.lfw_subset()
    keep = [i for i in range(len(faces))
            if split == "all" or (i % LFW_TEST_EVERY == 0) == (split == "test")]
    return ImageSet([f"lfw{i:03d}" for i in keep], [to_tensor(faces[i]) for i in keep])


def folder(path: str, crop: int | None = None) -> ImageSet:
    """Every PNG/JPEG/TIFF/BMP image in a folder, sorted by name."""
    from skimage import io

    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(f"image folder not found: {path}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    images = []
    for file in files:
        try:
            images.append(center_crop(to_tensor(io.imread(file)), crop))
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"cannot read image {file}: not a decodable image ({type(exc).__name__}); "
                             "fix or remove the file") from None
    hashes = sha256_files(files, fetching.settings().root)
    return ImageSet([p.stem for p in files], images, content={p.name: hashes[p] for p in files})

