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


def output_target(path: str | Path) -> tuple[Path, bool]:
    """Where writing to ``path`` lands, as a shell's ``>`` would: through a symlink to its target.
    Returns (that target, whether it is a regular file or a new one); a FIFO or device is
    written into, never replaced. A folder or a socket is a UsageError (one line).
    """
    target = Path(path).resolve() if Path(path).is_symlink() else Path(path)
    if not target.exists() or target.is_file():
        return target, True
    if target.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder; name a file (e.g. {Path(path) / 'out.txt'})")
    if target.is_fifo() or target.is_char_device() or target.is_block_device():
        return target, False
    raise UsageError(f"cannot write {path}: it is neither a file, a FIFO nor a device; name a file")


def provenance_beside(output: str | Path) -> Path | None:
    """``NAME.provenance.json`` beside an output that is (or will be) a regular file; None beside
    a FIFO or a device, which are written into and have no "beside"."""
    if not output_target(output)[1]:
        return None
    output = Path(output)
    return output.with_name(f"{output.stem}.provenance.json")


def write_texts(texts: dict[Path, str]) -> None:
    """Write several text files after making their folders: regular files atomically, through
    symlinks to their targets, into a FIFO or device as a shell's ``>`` would (never replacing it).

    Every target is checked before anything is written; a folder that cannot be made or written
    is a UsageError (one line, exit 2).
    """
    targets = {output_target(path): text for path, text in texts.items()}
    try:
        for (target, regular) in targets:
            if regular:
                target.parent.mkdir(parents=True, exist_ok=True)
        for (target, regular), text in targets.items():
            if regular:
                atomic_write(target, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
            else:
                with open(target, "w", encoding="utf-8") as stream:
                    stream.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {exc.filename or target}: {exc.strerror or exc}") from None
