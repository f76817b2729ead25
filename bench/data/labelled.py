"""Labels of the digit-like sets (MNIST, Fashion-MNIST): images with their classes, one split at a time.

The sample metrics' classifier trains on them. The files come through the
registered datasets' own fetching (``bench.data.standard``, torchvision
with its checksums, under ``--data-root``); ``ImageSet`` carries no labels.
"""

from __future__ import annotations

import torch

from bench.data import standard
from bench.errors import UsageError

#: Registry name -> the set that fetches and opens it.
LABELLED = {digits.name: digits for digits in (standard.MNIST, standard.FASHION_MNIST)}
CLASSES = 10


def load_labelled(name: str, root: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, 28, 28) float in [0, 1], labels (N,) int64) of one split."""
    if name not in LABELLED:
        raise UsageError(f"no labels for {name!r}; labelled sets: {', '.join(LABELLED)}")
    data = LABELLED[name].open(root, split)
    return data.data.float().div(255.0).unsqueeze(1), data.targets.long()
