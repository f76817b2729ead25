"""Release-asset weights (GitHub releases, model hubs): fetched once, their SHA-256 pinned or recorded.

Where the publisher states a SHA-256 it is pinned in code. Otherwise the hash of
the first download is *recorded* (``recorded.json`` in the data folder's
``release-weights``) and the file is shown as unpinned; ``denoise-bench fetch
--pin NAME`` copies the recorded hashes into the user's pin file
(``$DENOISE_BENCH_PINS``, else ``pins.json`` in the data folder), which a team
keeps with its configs. A download whose hash differs from the pinned or
recorded one is refused (nothing kept), so a changed upstream file never mixes
with older cells; offline, a missing file names ``denoise-bench fetch``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from bench.data import fetching
from bench.data.content_hash import sha256_file
from bench.errors import UsageError
from bench.files import atomic_write

PINS_ENV = "DENOISE_BENCH_PINS"
T = TypeVar("T")
FOLDER = "release-weights"
SHA256 = re.compile(r"[0-9a-f]{64}")
#: Missing pin files already reported in this process.
_WARNED: set[str] = set()


@dataclass(frozen=True)
class ReleaseFile:
    """One published checkpoint: a unique local name, its URL, and the publisher's SHA-256 if stated."""

    name: str
    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class Verified:
    """A local checkpoint whose hash matched: its path, SHA-256, and whether a pin vouches for it."""

    path: Path
    sha256: str
    pinned: bool


def folder() -> Path:
    return fetching.settings().root / FOLDER


def pins_path() -> Path:
    """``$DENOISE_BENCH_PINS``, else ``pins.json`` in the data folder. A variable naming a folder
    is a UsageError; one naming a missing file says so on stderr (pinning nothing is not silent)."""
    named = os.environ.get(PINS_ENV)
    path = Path(named or fetching.settings().root / "pins.json").expanduser()
    if named and path.exists() and not path.is_file():
        raise UsageError(f"${PINS_ENV} names {path}, which is not a file: name a JSON file of "
                         "name -> SHA-256 (`denoise-bench fetch --pin NAME` writes it)")
    if named and not path.exists() and str(path) not in _WARNED:
        _WARNED.add(str(path))
        print(f"${PINS_ENV} names {path}, which does not exist: no weights are pinned "
              "(`denoise-bench fetch --pin NAME` creates it)", file=sys.stderr)
    return path


def _read(path: Path) -> dict[str, str]:
    """A JSON object of name -> SHA-256 (empty when the file is missing); UsageError otherwise."""
    try:
        table = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a JSON object of name -> SHA-256: {fetching.one_line(exc)}") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) and SHA256.fullmatch(v) for v in table.values()):
        raise UsageError(f"{path} is not a JSON object of name -> SHA-256 (64 hex digits): "
                         f"fix or delete it, then `denoise-bench fetch --pin NAME`")
    return table


def _write(path: Path, table: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n"))


def expected(file: ReleaseFile) -> tuple[str | None, str]:
    """(the SHA-256 the file must have, or None before its first download; where that comes from)."""
    if file.sha256:
        return file.sha256, "its publisher"
    pinned = _read(pins_path()).get(file.name)
    if pinned:
        return pinned, f"pin file {pins_path()}"
    recorded = _read(folder() / "recorded.json").get(file.name)
    return recorded, f"its first download (recorded in {folder() / 'recorded.json'})"


def is_pinned(file: ReleaseFile) -> bool:
    return bool(file.sha256 or _read(pins_path()).get(file.name))


def fetch(file: ReleaseFile, row: str, load: Callable[[Path], T]) -> tuple[Verified, T]:
    """The verified local copy (downloaded if missing or not matching) and ``load(path)`` of it.

    UsageError on a changed file. Its hash is recorded only once ``load`` read it as what it
    claims to be: a file ``load`` refuses (a UsageError) is deleted with its recorded hash, so a
    bad first download never stands in for the real file.
    """
    current = fetching.settings()
    path = folder() / file.name
    want, source = expected(file)
    if path.is_file() and (want is None or sha256_file(path) == want):
        digest = want or sha256_file(path)
    elif current.offline:
        raise fetching.offline_error(f"weights {file.name}", folder(), row)
    else:
        digest = _download(file, path, current, row)
        if want is not None and digest != want:
            path.unlink()
            raise UsageError(f"{file.name} from {file.url} has SHA-256 {digest[:16]}..., not {want[:16]}... "
                             f"expected by {source}: the file changed upstream; nothing was kept")
    try:
        loaded = load(path)
    except UsageError as exc:
        path.unlink(missing_ok=True)
        recorded = _read(folder() / "recorded.json")
        if file.name in recorded:
            _write(folder() / "recorded.json", {k: v for k, v in recorded.items() if k != file.name})
        raise UsageError(f"{exc}; deleted it (its hash is not recorded): fetch it again once the "
                         "server has the real file") from None
    if want is None:
        recorded = _read(folder() / "recorded.json")
        _write(folder() / "recorded.json", {**recorded, file.name: digest})
    return Verified(path, digest, is_pinned(file)), loaded


def _download(file: ReleaseFile, path: Path, current: fetching.FetchSettings, row: str) -> str:
    """Download through the project's downloader (deadline, nothing left behind on failure); its SHA-256."""
    url = file.url if not current.mirror else current.mirror.rstrip("/") + "/" + file.name
    return fetching.download(url, path, fetching.Pin(), file.name, row)


def pin(files: list[ReleaseFile]) -> tuple[Path, list[str]]:
    """Copy the recorded hashes of ``files`` downloaded so far into the pin file; the names newly pinned."""
    recorded, pins = _read(folder() / "recorded.json"), _read(pins_path())
    if not any(f.name in recorded or f.name in pins for f in files):
        raise UsageError(f"{', '.join(f.name for f in files)}: none downloaded yet, nothing to pin")
    added = {f.name: recorded[f.name] for f in files if not f.sha256 and f.name in recorded and f.name not in pins}
    _write(pins_path(), {**pins, **added})
    return pins_path(), sorted(added)
