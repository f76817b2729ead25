"""SHA-256 of files, cached by (size, mtime, ctime, inode) so a large folder is not re-read every run.

Size and mtime alone can be preserved while the bytes change (archives and ``cp -p``
restore timestamps); the inode change time cannot be set by a user and changes
whenever a file is written, replaced or extracted again, so such a file is re-hashed.

The cache is one JSON file in the data folder the caller names (the run's
``--data-root``, ``$DENOISE_BENCH_DATA`` or pooch's per-user cache, which honours
``$XDG_CACHE_HOME``), so runs with their own data folders share nothing; when it
cannot be written, hashes are simply recomputed next time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.files import atomic_write

CACHE_NAME = "file-hashes.json"




def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: Path) -> list[int]:
    """What must not change for a cached hash to stand: size, mtime, ctime and inode."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def sha256_files(paths: list[Path], cache_folder: Path) -> dict[Path, str]:
    """The SHA-256 of each file, reusing hashes cached in ``cache_folder`` whose ``file_stamp`` still matches."""
    cache_file = cache_folder / CACHE_NAME
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    hashes, changed = {}, False
    for path in paths:
        key = str(path.resolve())
        stamp = file_stamp(path)
        cached = cache.get(key)
        if not cached or cached[:-1] != stamp:
            cache[key] = stamp + [sha256_file(path)]
            changed = True
        hashes[path] = cache[key][-1]
    if changed:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(cache_file, lambda tmp: tmp.write_text(json.dumps(cache)))
        except OSError:
            pass  # a read-only cache only costs speed
    return hashes


def manifest_changes(old: dict[str, str], new: dict[str, str]) -> str:
    """``1 changed (a.png), 1 added (c.png)``: how two file -> hash manifests differ."""
    parts = []
    for what, names in (("changed", [n for n in new if n in old and old[n] != new[n]]),
                        ("added", [n for n in new if n not in old]),
                        ("removed", [n for n in old if n not in new])):
        if names:
            shown = ", ".join(names[:3]) + (f", ... ({len(names) - 3} more)" if len(names) > 3 else "")
            parts.append(f"{len(names)} {what} ({shown})")
    return ", ".join(parts) or "no file changes"
