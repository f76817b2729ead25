"""Denoised images kept on disk (``run --save-images N``) for galleries.

Outputs go to ``<store folder>/images/<cell key>/<image id>.png`` as 8-bit PNG
(after clamping, as scored); an image id that is not a plain file name (``/``,
``..``, spaces...) is written as a safe name plus a hash of the id. Clean and
noisy images need no copy: they are reloaded from the dataset and regenerated
from the seeds.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch


def output_dir(store_path: str | Path, cell_key: str) -> Path:
    return Path(store_path).parent / "images" / cell_key


_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def output_name(image_id: str) -> str:
    """The PNG file name of an image id: the id itself when it is a plain name, else a safe
    version of it and a hash of the id, so it can neither leave its folder nor collide."""
    if _PLAIN.match(image_id) and ".." not in image_id:
        return f"{image_id}.png"
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", image_id).strip("_")[:60] or "image"
    return f"{safe}-{hashlib.sha256(image_id.encode()).hexdigest()[:10]}.png"


def missing_outputs(folder: Path, ids: list[str]) -> bool:
    """Whether any of these images has no saved output in the folder."""
    return any(not (folder / output_name(image_id)).is_file() for image_id in ids)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] to an HxW or HxWx3 uint8 array."""
    array = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def save_outputs(folder: Path, ids: list[str], images: torch.Tensor) -> None:
    from skimage import io  # pulls in scipy: only runs that save images pay for it

    folder.mkdir(parents=True, exist_ok=True)
    for image_id, image in zip(ids, images):
        io.imsave(folder / output_name(image_id), to_uint8(image), check_contrast=False)
