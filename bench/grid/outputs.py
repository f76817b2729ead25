"""Denoised images kept on disk (``run --save-images N``) for galleries.

Outputs go to ``<store folder>/images/<cell key>/<image id>.png`` as 8-bit PNG
(after clamping, as scored). Clean and noisy images need no copy: they are
reloaded from the dataset and regenerated from the seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def output_dir(store_path: str | Path, cell_key: str) -> Path:
    return Path(store_path).parent / "images" / cell_key


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] to an HxW or HxWx3 uint8 array."""
    array = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def save_outputs(folder: Path, ids: list[str], images: torch.Tensor) -> None:
    from skimage import io  # pulls in scipy: only runs that save images pay for it

    folder.mkdir(parents=True, exist_ok=True)
    for image_id, image in zip(ids, images):
        io.imsave(folder / f"{image_id}.png", to_uint8(image), check_contrast=False)
