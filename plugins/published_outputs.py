"""Rows scored from a method's released result images: ``outputs:DIR[pattern={id}_ours.png]``.

Many papers release their outputs, not their code. This row reads, for each image of the
dataset, the file ``pattern`` names in DIR (``{id}``: the image id) and hands it over as the
denoised image, so the method is scored by the harness's own metrics beside the rows it runs.
Its cells are keyed by the files' content (``fingerprint``), never by the folder's path. A
folder missing an image, or holding one of another size than the dataset's, is one line
before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import torch

import bench
from bench.data import fetching
from bench.data.content_hash import sha256_files
from bench.data.datasets import ImageSet, to_tensor
from bench.seeding import identity_hash

DEFAULT_PATTERN = "{id}_ours.png"
ID_FIELD = "{id}"


class PublishedOutputs:
    """A method's result images in ``folder``, one per image id, named by ``pattern``."""

    def __init__(self, folder: str, pattern: str = DEFAULT_PATTERN):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise bench.UsageError(f"outputs:{folder}: no such folder; give the folder of a method's "
                                   "result images")
        if pattern.count(ID_FIELD) != 1 or "/" in pattern:
            raise bench.UsageError(f"outputs pattern {pattern!r} must name a file in the folder with {ID_FIELD} "
                                   "once, e.g. pattern={id}_ours.png")
        self.pattern = pattern
        files = sorted(self.folder.glob(pattern.replace(ID_FIELD, "*")))
        hashes = sha256_files(files, fetching.settings().root)
        #: The content of every file the pattern matches: the cells' identity, not the path.
        self.fingerprint = identity_hash({f.name: hashes[f] for f in files})

    def path(self, image_id: str) -> Path:
        return self.folder / self.pattern.replace(ID_FIELD, image_id)

    def check(self, images: ImageSet, dataset: str) -> None:
        """UsageError unless every image of ``dataset`` has an output of its own shape."""
        from PIL import Image

        for image_id, image in zip(images.ids, images.images):
            path = self.path(image_id)
            if not path.is_file():
                raise bench.UsageError(f"outputs:{self.folder}: no {path.name} for image {image_id} of "
                                       f"{dataset}; every image needs its output (pattern={self.pattern})")
            with Image.open(path) as opened:
                shape = (len(opened.getbands()), opened.height, opened.width)
            if shape != tuple(image.shape):
                raise bench.UsageError(f"outputs:{self.folder}: {path.name} is {shape[0]}x{shape[1]}x{shape[2]} "
                                       f"(channels x height x width) where image {image_id} of {dataset} is "
                                       f"{'x'.join(map(str, image.shape))}; outputs must match the whole images")

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor, ids: list[str]) -> torch.Tensor:
        from skimage import io

        return torch.stack([to_tensor(io.imread(self.path(image_id))) for image_id in ids]).to(y.device)


@bench.hookimpl
def register_denoisers(register):
    register("outputs:", PublishedOutputs, outputs=True,
             description="outputs:DIR[pattern={id}_ours.png], a method scored from its released result "
                         "images (one per image id; keyed by their content)")
