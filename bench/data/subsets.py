"""How an image subset (``--limit-images``) is named, ``first 3 of 12``, and read back (no heavy imports:
the store reads it)."""

from __future__ import annotations


def subset_label(n: int, of: int) -> str:
    """``first 3 of 12``: the first n images of a set of ``of``."""
    return f"first {n} of {of}"


def subset_size(label: str) -> int:
    """n of a ``subset_label`` (``first 3 of 12``: 3)."""
    return int(label.split()[1])
