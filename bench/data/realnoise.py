"""Real camera noise fetched by name: PolyU and CC15 (noisy captures with a clean reference), RNI15
(noisy images alone).

The files are the ones their authors committed, pinned by SHA-256: PolyU and CC15 by
``bench/data/realnoise-testsets.json`` (``SET/FILE`` in the data folder and on a mirror),
RNI15 by the FFDNet manifest. A pair is ``NAME_real.EXT`` (the capture) and ``NAME_mean.EXT``
(its reference, the mean of many captures); its image id is ``NAME``. Other files of a set
(CC15's ``NAME_ours.png``, MCWNNM's published outputs) are fetched with it but are not inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.data import fetching
from bench.data.datasets import ImageSet
from bench.data.standard import PinnedSet, read_images
from bench.seeding import identity_hash

REALNOISE_MANIFEST = "realnoise-testsets"
CAPTURE, REFERENCE = "_real", "_mean"


def split_pair_name(path: str) -> tuple[str, str] | None:
    """(image id, ``_real`` or ``_mean``) of a pair's file, None for any other file."""
    stem = Path(path).stem
    for role in (CAPTURE, REFERENCE):
        if stem.endswith(role):
            return stem[:-len(role)], role
    return None


@dataclass(frozen=True)
class PairedSet(PinnedSet):
    """A real-noise set of (capture, reference) pairs: ``folder`` in the real-noise manifest."""

    color: bool = True
    source = "real-noise manifest, capture/reference pairs"

    def manifest(self) -> fetching.Manifest:
        return fetching.load_manifest(REALNOISE_MANIFEST, self.folder)

    def pairs(self) -> list[tuple[str, str, str]]:
        """(image id, capture path, reference path) in id order, for the pairs whose two files are pinned."""
        roles: dict[str, dict[str, str]] = {}
        for path in self.manifest().files:
            if (found := split_pair_name(path)) is not None:
                roles.setdefault(found[0], {})[found[1]] = path
        return [(image_id, paths[CAPTURE], paths[REFERENCE]) for image_id, paths in sorted(roles.items())
                if CAPTURE in paths and REFERENCE in paths]

    def load(self, crop: int | None = None, gray: bool = False) -> ImageSet:
        """The pairs: references as images, captures as ``captures`` (``crop``: the same centred
        window of both; ``gray``: both through rgb2gray). Every pinned file is fetched first."""
        self.fetch()
        manifest, pairs = self.manifest(), self.pairs()
        folder = manifest.folder(fetching.settings())
        captures = read_images([folder / capture for _, capture, _ in pairs], crop, bool(gray))
        references = read_images([folder / reference for _, _, reference in pairs], crop, bool(gray))
        for (image_id, *_), capture, reference in zip(pairs, captures, references):
            if capture.shape != reference.shape:
                raise fetching.FetchError(f"{self.name}: capture and reference of {image_id} differ in "
                                          f"size ({tuple(capture.shape)} vs {tuple(reference.shape)})")
        content = {image_id: identity_hash([manifest.files[c].sha256, manifest.files[r].sha256])
                   for image_id, c, r in pairs}
        return ImageSet([image_id for image_id, *_ in pairs], references, content=content, captures=captures)


@dataclass(frozen=True)
class CapturesOnly(PinnedSet):
    """A set of real noisy images without references (RNI15, from the FFDNet manifest)."""

    color: bool = True
    source = "FFDNet manifest, noisy images without reference"

    def load(self, crop: int | None = None, gray: bool = False) -> ImageSet:
        """The captures, as images and as ``captures``, with ``reference=False``."""
        pinned = super().load(crop, gray)
        return ImageSet(pinned.ids, pinned.images, content=pinned.content, captures=pinned.images,
                        reference=False)


POLYU = PairedSet("polyu", "PolyU")
CC15 = PairedSet("cc15", "CC15")
RNI15 = CapturesOnly("rni15", "RNI15")
REAL_NOISE_SETS = (POLYU, CC15, RNI15)
