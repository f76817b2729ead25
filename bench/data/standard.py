"""Datasets fetched by name: the standard denoising test sets, Urban100, MNIST and Fashion-MNIST.

``set12``, ``bsd68`` (gray) and ``cbsd68``, ``kodak24``, ``mcmaster`` (colour)
are the files behind the published tables, pinned by the FFDNet manifest
(``bench/data/ffdnet-testsets.json``) and fetched with ``bench.data.fetching``.
``urban100`` is deepinv's ``Urban100HR`` archive and ``mnist`` / ``fashion-mnist``
torchvision's files, each checked against its owner's checksums (deepinv's folder
MD5, torchvision's archive MD5) and fetched with the same downloader.
``gray=1`` turns a colour set gray as MATLAB's ``rgb2gray`` does (the papers'
scripts): 0.2989 R + 0.5870 G + 0.1140 B, rounded to 8 bits.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.data import fetching
from bench.data.datasets import IMAGE_SUFFIXES, ImageSet, center_crop, to_tensor
from bench.errors import UsageError
from bench.files import atomic_write

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
    #: Where its files are pinned (``list``'s description of the factory).
    source = "FFDNet manifest"

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
        load.__doc__ = f"{self.folder} ({self.source}); crop=N centre crops" + (
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

    def archive_url(self) -> str:
        """deepinv's URL of the archive, or the mirror's copy."""
        from deepinv.datasets import Urban100HR

        mirror = fetching.settings().mirror
        return f"{mirror.rstrip('/')}/{self.archive}" if mirror else Urban100HR._archive_urls[self.archive]

    @staticmethod
    def checksum() -> str:
        """deepinv's MD5 of the image folder."""
        from deepinv.datasets import Urban100HR

        return Urban100HR._checksums["Urban100_HR"]

    @staticmethod
    def folder_md5(folder: Path) -> str:
        from deepinv.datasets.utils import calculate_md5_for_folder

        return calculate_md5_for_folder(str(folder))

    def verified(self) -> bool:
        return self.folder_md5(self.root() / "Urban100_HR") == self.checksum()

    def fetch(self) -> Path:
        """The verified image folder; downloaded (unless offline) when missing or wrong.

        The archive is fetched with ``fetching.download``, extracted by ``fetching.extract_archive``
        (plain files and folders only) into a temporary folder, and its image folder moved in place
        only once deepinv's MD5 matches; a failure leaves the data folder as it was.
        """
        current = fetching.settings()
        root, target = self.root(), self.root() / "Urban100_HR"
        if self.verified():
            return target
        if current.offline:
            raise fetching.offline_error("urban100 (deepinv Urban100HR)", root, self.name)
        url, archive = self.archive_url(), root / self.archive
        created = fetching.check_writable(root)
        try:
            fetching.download(url, archive, fetching.Pin(), self.archive, self.name)
            staging = fetching.extract_archive(archive, root)
            try:
                images = staging / "Urban100_HR"
                if not images.is_dir() or self.folder_md5(images) != self.checksum():
                    raise fetching.FetchError(f"urban100: the archive from {url} does not hold deepinv's "
                                              f"Urban100_HR (its folder MD5 differs); nothing was kept")
                if target.exists():
                    shutil.rmtree(target)
                os.replace(images, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            archive.unlink(missing_ok=True)
            fetching.remove_empty(created)
            raise
        archive.unlink(missing_ok=True)
        return target

    def status(self) -> tuple[bool, int]:
        folder = self.root() / "Urban100_HR"
        return folder.is_dir() and self.verified(), fetching.folder_bytes(folder)

    def load(self, crop: int | None = None, gray: bool = False) -> ImageSet:
        folder = self.fetch()
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageSet([p.stem for p in files], read_images(files, crop, bool(gray)),
                        content={"Urban100_HR (deepinv MD5)": self.checksum()})


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def decompress(archive: Path, out: Path) -> None:
    with gzip.open(archive, "rb") as source, open(out, "wb") as sink:
        shutil.copyfileobj(source, sink)


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
        self.download(cls, folder / cls.__name__ / "raw")
        try:
            return cls(str(folder), train=split == "train", download=False)
        except RuntimeError as exc:
            raise UsageError(f"{self.name} not readable under {folder} ({cls.__name__}/raw/*-ubyte) after "
                             f"the download: {fetching.one_line(exc)}") from None

    def download(self, cls: type, raw: Path) -> None:
        """Each archive torchvision lists, fetched with its MD5 (mirrors in turn), then decompressed.

        The archives go through ``fetching.download`` (deadline, checksum, nothing kept on
        failure); each ``-ubyte`` file is written beside them atomically.
        """
        for filename, md5 in cls.resources:
            archive, target = raw / filename, raw / filename.removesuffix(".gz")
            if target.is_file() and archive.is_file() and file_md5(archive) == md5:
                continue
            if not (archive.is_file() and file_md5(archive) == md5):
                errors = []
                for mirror in cls.mirrors:
                    try:
                        fetching.download(f"{mirror}{filename}", archive, fetching.Pin(md5=md5),
                                          f"{cls.__name__}/raw/{filename}", self.name)
                        break
                    except fetching.FetchError as exc:
                        errors.append(exc)
                else:
                    raise errors[-1]
            atomic_write(target, lambda tmp, archive=archive: decompress(archive, tmp))

    def fetch(self) -> None:
        self.open(None, "train")

    def status(self) -> tuple[bool, int]:
        """(every archive present with torchvision's MD5 and decompressed, size of the raw folder)."""
        cls = self.dataset_class()
        raw = fetching.settings().root / cls.__name__ / "raw"
        verified = all((raw / f).is_file() and file_md5(raw / f) == md5 and (raw / f.removesuffix(".gz")).is_file()
                       for f, md5 in cls.resources)
        return verified, fetching.folder_bytes(raw)

    def load(self, root: str | None = None, split: str = "test") -> ImageSet:
        data = self.open(root, split)
        images = data.data.float().div(255.0).unsqueeze(1)
        pixels = hashlib.sha256(data.data.contiguous().numpy().tobytes()).hexdigest()
        return ImageSet([f"{split}{i:05d}" for i in range(len(images))], list(images),
                        content={f"{self.class_name} {split} pixels": pixels})


MNIST = TorchvisionDigits("mnist", "MNIST")
FASHION_MNIST = TorchvisionDigits("fashion-mnist", "FashionMNIST")
URBAN100 = Urban100()

