"""Files: atomic writes (a reader sees the finished file or the old one, never half of it), safe names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from bench.errors import UsageError


def slug(text: str) -> str:
    """A file-name-safe version of a label: runs of other characters become one ``_``."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_texts(texts: dict[Path, str]) -> None:
    """Write several text files, each atomically, after making their folders.

    A folder that cannot be made or written is a UsageError (one line, exit 2).
    """
    try:
        for path in texts:
            path.parent.mkdir(parents=True, exist_ok=True)
        for path, text in texts.items():
            atomic_write(path, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None
