"""Datasets fetched by name: the standard denoising test sets, Urban100, MNIST and Fashion-MNIST.

``set12``, ``bsd68`` (gray) and ``cbsd68``, ``kodak24``, ``mcmaster`` (colour)
are the files behind the published tables, pinned by the FFDNet manifest
(``bench/data/ffdnet-testsets.json``) and fetched with ``bench.data.fetching``.
``urban100`` comes through ``deepinv.datasets.Urban100HR`` and ``mnist`` /
``fashion-mnist`` through torchvision, each with its owner's checksums.
``gray=1`` turns a colour set gray as MATLAB's ``rgb2gray`` does (the papers'
scripts): 0.2989 R + 0.5870 G + 0.1140 B, rounded to 8 bits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.data import fetching
from bench.data.datasets import IMAGE_SUFFIXES, ImageSet, center_crop, to_tensor
from bench.errors import UsageError

FFDNET_MANIFEST = "ffdnet-testsets"
#: MATLAB's rgb2gray coefficients (the first row of the inverse NTSC transform), printed as
#: 0.2989, 0.5870, 0.1140 in its documentation.
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
TORCHVISION_SPLITS = ("train", "test")
URBAN100_IMAGES = 100


def rgb2gray(image: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) 8-bit image in [0, 1] as (1, H, W), as MATLAB's rgb2gray on uint8 input."""
    if image.shape[0] == 1:
        return image
    weights = torch.tensor(RGB2GRAY, dtype=torch.float64).view(3, 1, 1)
    gray = (image.double() * 255.0 * weights).sum(dim=0, keepdim=True)
    return (torch.round(gray).clamp(0, 255) / 255.0).float()


def read_images(files: list[Path], crop: int | None, gray: bool) -> list[torch.Tensor]:
    from skimage import io

    images = [to_tensor(io.imread(file)) for file in files]
    return [center_crop(rgb2gray(image) if gray else image, crop) for image in images]


@dataclass(frozen=True)
class PinnedSet:
    """A test set of the FFDNet manifest: ``folder`` there, gray or colour."""

    name: str
    folder: str
    color: bool

    def manifest(self) -> fetching.Manifest:
        return fetching.load_manifest(FFDNET_MANIFEST, self.folder)

    def fetch(self) -> list[Path]:
        manifest = self.manifest()
        return fetching.fetch(manifest, sorted(manifest.files), self.name)

    def status(self) -> tuple[bool, int]:
        """(cached here, size in bytes)."""
        manifest = self.manifest()
        return (fetching.is_cached(manifest, list(manifest.files)),
                sum(f.bytes for f in manifest.files.values()))

    def load(self, crop: int | None = None, gray: bool = False) -> ImageSet:
        files, manifest = self.fetch(), self.manifest()
        pinned = {f.name: manifest.files[p].sha256 for f, p in zip(files, sorted(manifest.files))}
        return ImageSet([f.stem for f in files], read_images(files, crop, bool(gray)), content=pinned)

    def factory(self):
        """``load`` with the parameters this set takes (``gray`` only for colour sets)."""
        if self.color:
            def load(crop: int | None = None, gray: bool = False) -> ImageSet:
                return self.load(crop, gray)
        else:
            def load(crop: int | None = None) -> ImageSet:
                return self.load(crop)
        load.__doc__ = f"{self.folder} (FFDNet manifest); crop=N centre crops" + (
            ", gray=1 MATLAB rgb2gray" if self.color else "")
        return load


PINNED_SETS = (
    PinnedSet("set12", "Set12", color=False),
    PinnedSet("bsd68", "BSD68", color=False),
    PinnedSet("cbsd68", "CBSD68", color=True),
    PinnedSet("kodak24", "Kodak24", color=True),
    PinnedSet("mcmaster", "McMaster", color=True),
)


def _with_mirror(cls: type, attribute: str, value) -> type:
    """``cls`` with one class attribute replaced, keeping its name (torchvision's folder name)."""
    return type(cls.__name__, (cls,), {attribute: value, "__module__": cls.__module__})


class Urban100:
    """deepinv's ``Urban100HR`` (100 colour images, deepinv's MD5 check on every use)."""

    name = "urban100"
    archive = "Urban100_HR.tar.gz"

    def root(self) -> Path:
        return fetching.settings().root / "Urban100"

    def dataset_class(self) -> type:
        from deepinv.datasets import Urban100HR

        mirror = fetching.settings().mirror
        if not mirror:
            return Urban100HR
        return _with_mirror(Urban100HR, "_archive_urls", {self.archive: f"{mirror.rstrip('/')}/{self.archive}"})

    @staticmethod
    def checksum() -> str:
        """deepinv's MD5 of the image folder."""
        from deepinv.datasets import Urban100HR

        return Urban100HR._checksums["Urban100_HR"]

    def verified(self) -> bool:
        from deepinv.datasets.utils import calculate_md5_for_folder

        return calculate_md5_for_folder(str(self.root() / "Urban100_HR")) == self.checksum()

    def fetch(self) -> Path:
        """The verified image folder; downloaded (unless offline) when missing or wrong."""
        import requests

        current = fetching.settings()
        root = self.root()
        if not self.verified():
            if current.offline:
                raise fetching.offline_error("urban100 (deepinv Urban100HR)", root, self.name)
            fetching.check_writable(root)
            try:
                with fetching.library_output(current):
                    self.dataset_class()(root=str(root), download=True)
            except (RuntimeError, ValueError, requests.RequestException) as exc:
                raise UsageError(f"urban100 (deepinv Urban100HR) under {root}: {fetching.one_line(exc)}; "
                                 f"remove {root} and {fetching.fetch_hint(self.name)}") from None
        return root / "Urban100_HR"

    def status(self) -> tuple[bool, int]:
        folder = self.root() / "Urban100_HR"
        return (folder.is_dir() and len(list(folder.glob("*.png"))) == URBAN100_IMAGES,
                fetching.folder_bytes(folder))

    def load(self, crop: int | None = None, gray: bool = False) -> ImageSet:
        folder = self.fetch()
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageSet([p.stem for p in files], read_images(files, crop, bool(gray)),
                        content={"Urban100_HR (deepinv MD5)": self.checksum()})


class TorchvisionDigits:
    """A torchvision MNIST-style set: downloaded (unless offline) with torchvision's MD5 checks."""

    def __init__(self, name: str, class_name: str):
        self.name, self.class_name = name, class_name

    def dataset_class(self) -> type:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.class_name)
        mirror = fetching.settings().mirror
        return _with_mirror(cls, "mirrors", [f"{mirror.rstrip('/')}/{cls.__name__}/"]) if mirror else cls

    def open(self, root: str | None, split: str):
        if split not in TORCHVISION_SPLITS:
            raise UsageError(f"unknown {self.name} split {split!r}; choose train or test")
        current = fetching.settings()
        folder = Path(root or current.root).expanduser()
        cls = self.dataset_class()
        try:
            return cls(str(folder), train=split == "train", download=False)
        except RuntimeError:
            if current.offline:
                raise fetching.offline_error(f"{self.name} ({cls.__name__}/raw)", folder, self.name) from None
        fetching.check_writable(folder)
        try:
            with fetching.library_output(current):
                return cls(str(folder), train=split == "train", download=True)
        except (RuntimeError, OSError) as exc:
            raise UsageError(f"{self.name} not found under {folder} ({cls.__name__}/raw/*-ubyte) and "
                             f"the download failed: {fetching.one_line(exc)}") from None

    def fetch(self) -> None:
        self.open(None, "train")

    def status(self) -> tuple[bool, int]:
        raw = fetching.settings().root / self.class_name / "raw"
        present = raw.is_dir() and len(list(raw.glob("*-ubyte"))) == 4
        return present, fetching.folder_bytes(raw)

    def load(self, root: str | None = None, split: str = "test") -> ImageSet:
        data = self.open(root, split)
        images = data.data.float().div(255.0).unsqueeze(1)
        pixels = hashlib.sha256(data.data.contiguous().numpy().tobytes()).hexdigest()
        return ImageSet([f"{split}{i:05d}" for i in range(len(images))], list(images),
                        content={f"{self.class_name} {split} pixels": pixels})


MNIST = TorchvisionDigits("mnist", "MNIST")
FASHION_MNIST = TorchvisionDigits("fashion-mnist", "FashionMNIST")
URBAN100 = Urban100()

