"""Fetching: named data and weights downloaded once, verified by checksum, kept in one folder.

The data folder is ``--data-root``, else ``$DENOISE_BENCH_DATA``, else
``pooch.os_cache("denoise-bench")``. A manifest (package data, see
``bench/data/``) pins every file's URL and SHA-256; ``$DENOISE_BENCH_MIRROR``
replaces the part of a manifest's URL before its first placeholder (an
institution's copy, or a test server). Every file is verified before each use:
a missing or corrupt file is downloaded again by ``download`` (streamed into a
temporary file under an overall deadline, moved in place only once its size and
hash match), and a download that fails or still does not match is a FetchError
that leaves nothing behind. Archives are extracted only when every entry is a
plain file or folder inside them; checkpoints are read with
``weights_only=True`` after their hash is checked. Offline (``--offline`` or
``DENOISE_BENCH_OFFLINE=1``) nothing touches the network: missing data is a
UsageError naming the ``denoise-bench fetch`` command to run where there is
internet.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import textwrap
import time
import urllib.parse
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from bench.data.content_hash import sha256_file, sha256_files
from bench.errors import UsageError
from bench.scoped import set_for_block

DATA_ENV = "DENOISE_BENCH_DATA"
MIRROR_ENV = "DENOISE_BENCH_MIRROR"
OFFLINE_ENV = "DENOISE_BENCH_OFFLINE"
APP_NAME = "denoise-bench"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class FetchSettings:
    """Where fetched data lives, where it comes from, and whether the network may be used."""

    root: Path
    offline: bool = False
    mirror: str | None = None
    progress: bool = True
    #: The command fetching (``fetch`` itself gets other advice than "run fetch").
    command: str = ""

    @classmethod
    def resolve(cls, data_root: str | None = None, offline: bool | None = None,
                quiet: bool = False) -> "FetchSettings":
        """Flags first, then the environment, then pooch's per-user cache folder."""
        import pooch

        root = data_root or os.environ.get(DATA_ENV) or pooch.os_cache(APP_NAME)
        return cls(Path(root).expanduser(), bool(offline) or env_flag(OFFLINE_ENV),
                   os.environ.get(MIRROR_ENV) or None, not quiet)


_SETTINGS: ContextVar[FetchSettings | None] = ContextVar("bench_fetch_settings", default=None)


def settings() -> FetchSettings:
    """The settings a ``using`` block set, else those of the environment."""
    return _SETTINGS.get() or FetchSettings.resolve()


def using(fetch_settings: FetchSettings) -> contextlib.AbstractContextManager[FetchSettings]:
    """Make ``fetch_settings`` the ones dataset and weight factories see, for the block."""
    return set_for_block(_SETTINGS, fetch_settings)


def fetch_hint(name: str) -> str:
    """What to run where there is internet; inside ``fetch`` itself, how to bring the data here."""
    current = settings()
    if current.command == "fetch":
        return (f"run `denoise-bench fetch {name} --data-root DIR` on a machine with internet "
                f"and copy DIR to {current.root}")
    return f"run `denoise-bench fetch {name}` where there is internet (with the same --data-root)"


def offline_error(what: str, where: Path, name: str) -> UsageError:
    return UsageError(f"{what} is not in {where} and --offline is set: {fetch_hint(name)}")


def check_writable(folder: Path) -> list[Path]:
    """UsageError unless files can be created in ``folder``; returns the folders it had to create."""
    created = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        remove_empty(created)
        raise UsageError(f"data folder {folder} cannot be written ({exc.strerror or exc}); "
                         f"choose another with --data-root or {DATA_ENV}") from None
    return created


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed fetch created, deepest first, as long as they are empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


@dataclass(frozen=True)
class FileSpec:
    """One pinned file: its path relative to the manifest's base, SHA-256 and size, and where it is
    published when that is not the base plus the path (a manifest of sets from several sources)."""

    path: str
    sha256: str
    bytes: int
    url: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A pinned source: a URL pattern whose placeholders name each file, and the files' hashes."""

    name: str
    url: str
    files: dict[str, FileSpec]

    @property
    def prefix(self) -> str:
        """The pinned base URL: everything before the pattern's first placeholder."""
        return self.url.split("{", 1)[0]

    def base_url(self, mirror: str | None) -> str:
        return mirror.rstrip("/") + "/" if mirror else self.prefix

    def source(self, path: str, mirror: str | None) -> str:
        """Where ``path`` is downloaded from: the mirror's copy, else its pinned URL."""
        spec = self.files[path]
        return spec.url if spec.url and not mirror else self.base_url(mirror) + path

    def folder(self, fetch_settings: FetchSettings) -> Path:
        return fetch_settings.root / self.name


def load_manifest(name: str, group: str | None = None) -> Manifest:
    """A manifest shipped in ``bench/data/NAME.json``: files of ``group`` (e.g. a dataset) or all."""
    data = json.loads((resources.files("bench") / "data" / f"{name}.json").read_text())
    if "sets" in data:
        return sets_manifest(name, data["sets"], group)
    prefix = data["url"].split("{", 1)[0]
    if "datasets" in data:
        groups = data["datasets"] if group is None else {group: data["datasets"][group]}
        entries = [(data["url"].format(dataset=g, file=f["file"]), f)
                   for g, files in groups.items() for f in files]
    else:
        entries = [(data["url"].format(file=f["file"]), f) for f in data["files"]]
    files = {url[len(prefix):]: FileSpec(url[len(prefix):], f["sha256"], int(f["bytes"]))
             for url, f in entries}
    return Manifest(name, data["url"], files)


def sets_manifest(name: str, sets: dict, group: str | None) -> Manifest:
    """A manifest of sets from several sources, each with its own URL pattern: files are
    ``SET/FILE`` in the data folder and on a mirror, downloaded from their own URL otherwise."""
    chosen = sets if group is None else {group: sets[group]}
    files = {f"{g}/{f['file']}": FileSpec(f"{g}/{f['file']}", f["sha256"], int(f["bytes"]),
                                          url=entry["url"].format(file=f["file"]))
             for g, entry in chosen.items() for f in entry["files"]}
    url = next(iter(chosen.values()))["url"] if len(chosen) == 1 else ""
    return Manifest(name, url, files)


def is_cached(manifest: Manifest, paths: list[str], fetch_settings: FetchSettings | None = None) -> bool:
    """Whether every file is present and matches its pinned SHA-256 (hashes cached by size and mtime)."""
    fetch_settings = fetch_settings or settings()
    folder = manifest.folder(fetch_settings)
    files = [folder / p for p in paths]
    if not all(f.is_file() for f in files):
        return False
    hashes = sha256_files(files, fetch_settings.root)
    return all(hashes[folder / p] == manifest.files[p].sha256 for p in paths)


def fetch(manifest: Manifest, paths: list[str], name: str) -> list[Path]:
    """Local, verified copies of ``paths`` (downloading what is missing or corrupt).

    ``name`` is what ``denoise-bench fetch`` takes to fetch them (for error messages).
    """
    current = settings()
    folder = manifest.folder(current)
    unknown = [p for p in paths if p not in manifest.files]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not in manifest {manifest.name}")
    hashes = sha256_files([folder / p for p in paths if (folder / p).is_file()], current.root)  # cached by stamp
    bad = [p for p in paths if hashes.get(folder / p) != manifest.files[p].sha256]
    if bad and current.offline:
        raise offline_error(f"{name} ({len(bad)} of {len(paths)} files missing or corrupt)", folder, name)
    if bad:
        total = sum(manifest.files[p].bytes for p in bad)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetching {name}",
                  disable=not current.progress, dynamic_ncols=True) as bar:
            for path in bad:
                spec = manifest.files[path]
                download(manifest.source(path, current.mirror), folder / path, Pin(sha256=spec.sha256, bytes=spec.bytes), path, name,
                         progress=bar.update)
    return [folder / p for p in paths]


# the downloader ---------------------------------------------------------------------------

#: Seconds to connect, and the longest silence between two reads.
CONNECT_TIMEOUT, READ_TIMEOUT = 10.0, 30.0
#: Overall time one file may take: a base plus its pinned size at a floor rate (a trickling server
#: is given up on). The size a server announces never extends it.
BASE_DEADLINE, FLOOR_RATE = 300.0, 50_000
#: Seconds per file, replacing the rule above (slow links, tests).
DEADLINE_ENV = "DENOISE_BENCH_FETCH_DEADLINE"
CHUNK = 1 << 16
PART_SUFFIX = ".part"


class FetchError(UsageError):
    """A download that failed (network, deadline, checksum): nothing was kept."""


@dataclass(frozen=True)
class Pin:
    """What a downloaded file must be: its SHA-256 and/or MD5 (its owner's), and its size when known."""

    sha256: str | None = None
    md5: str | None = None
    bytes: int | None = None


def deadline_seconds(size: int | None) -> float:
    """The overall time allowed for one file of pinned ``size`` bytes (unknown: the base only)."""
    fixed = os.environ.get(DEADLINE_ENV, "").strip()
    if fixed:
        try:
            value = float(fixed)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise UsageError(f"{DEADLINE_ENV} must be a number of seconds > 0, got {fixed!r}")
        return value
    return BASE_DEADLINE + (size or 0) / FLOOR_RATE


def free_bytes(folder: Path) -> int:
    """Bytes free on the disk of ``folder``: the size cap of anything written there unpinned
    (a download of unknown size, an archive's extraction), so that none can fill the disk."""
    import shutil

    return shutil.disk_usage(folder).free


def part_file(target: Path) -> Path:
    """The temporary file a download of ``target`` streams into (beside it, named by process)."""
    return target.with_name(f".{target.name}.{os.getpid()}{PART_SUFFIX}")


def remove_stale_parts(folder: Path) -> None:
    """Delete temporary files left by downloads whose process is gone (killed mid-download)."""
    for part in folder.glob(f".*{PART_SUFFIX}") if folder.is_dir() else ():
        pid = part.name[:-len(PART_SUFFIX)].rsplit(".", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            part.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def download(url: str, target: Path, pin: Pin, what: str, name: str, progress=None) -> str:
    """Stream ``url`` into a temporary file beside ``target``, check it against ``pin``, move it in place.

    Progress goes to ``progress(bytes)``, else to a bar of its own. Returns the file's
    SHA-256. Any failure (network, the overall deadline, a size or checksum
    that does not match, a folder that cannot be written) is a FetchError and leaves nothing
    behind: no temporary file, no empty folder it created.
    """
    if progress is None:  # a bar of its own (``fetch`` passes one for several files)
        with tqdm(total=pin.bytes, unit="B", unit_scale=True, desc=f"fetching {target.name}",
                  disable=not settings().progress, dynamic_ncols=True) as bar:
            return download(url, target, pin, what, name, progress=bar.update)
    created = check_writable(target.parent)
    remove_stale_parts(target.parent)
    tmp = part_file(target)
    kept = False
    try:
        sha256, md5, size = _stream(url, tmp, pin.bytes, name, progress)
        problem = ("size", pin.bytes, size) if pin.bytes is not None and size != pin.bytes else \
            ("SHA-256", pin.sha256, sha256) if pin.sha256 and sha256 != pin.sha256 else \
            ("MD5", pin.md5, md5) if pin.md5 and md5 != pin.md5 else None
        if problem:
            label, expected, got = problem
            raise FetchError(f"checksum mismatch for {what} downloaded from {url}: {label} {got} where "
                             f"{expected} is pinned; nothing was kept")
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise FetchError(f"cannot write {target}: {exc.strerror or exc}") from None
        kept = True
        return sha256
    finally:
        tmp.unlink(missing_ok=True)
        if not kept:
            remove_empty(created)


def _stream(url: str, tmp: Path, size: int | None, name: str, progress) -> tuple[str, str, int]:
    """Write the body of ``url`` to ``tmp`` within the deadline; (SHA-256, MD5, bytes)."""
    import requests
    import urllib3

    limit = deadline_seconds(size)
    start = time.monotonic()
    sha256, md5, got = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, min(READ_TIMEOUT, limit)),
                          headers={"Accept-Encoding": "identity"}) as response:
            response.raise_for_status()
            encoded = response.headers.get("Content-Encoding", "identity") != "identity"
            # What the server announces is only checked, never trusted: the deadline stays the caller's.
            announced = None if encoded else int(response.headers.get("Content-Length") or 0) or None
            room = free_bytes(tmp.parent)
            if (announced or 0) > room:
                raise FetchError(f"{url} announces {announced} bytes, more than the {room} free in "
                                 f"{tmp.parent}; nothing was kept (free some space, or {download_hint(name)})")
            with open(tmp, "wb") as out:
                while chunk := response.raw.read1(CHUNK, decode_content=True):  # the file, as served
                    if got + len(chunk) > room:
                        raise FetchError(f"{url} sent more than the {room} bytes free in {tmp.parent}; "
                                         f"nothing was kept (free some space, or {download_hint(name)})")
                    out.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    got += len(chunk)
                    if progress:
                        progress(len(chunk))
                    if time.monotonic() - start > limit:
                        raise FetchError(f"gave up on {url} after {limit:.0f} s ({got} bytes received"
                                         f"{f' of {announced}' if announced else ''}): the server is too "
                                         f"slow; retry later, or {download_hint(name)}")
            if announced is not None and got != announced:
                raise FetchError(f"cannot download {url}: the connection ended after {got} of {announced} "
                                 f"bytes; nothing was kept (retry, or {download_hint(name)})")
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise FetchError(f"cannot download {url}: {network_reason(exc)} ({download_hint(name)})") from None
    except OSError as exc:
        raise FetchError(f"cannot write {tmp.parent}: {exc.strerror or exc}") from None
    return sha256.hexdigest(), md5.hexdigest(), got


def network_reason(exc: BaseException) -> str:
    """The root cause of a network error in a few words (urllib3 wraps it two or three deep)."""
    reason: BaseException | None = exc
    while True:
        inner = getattr(reason, "reason", None) or (reason.args[0] if reason.args and isinstance(
            reason.args[0], BaseException) else None)
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = re.sub(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*", "", str(reason) or type(reason).__name__)
    return one_line(text.strip(" ()'\"") or type(reason).__name__)


def download_hint(name: str) -> str:
    """What to do when a download fails: a mirror, or fetching elsewhere."""
    return f"set {MIRROR_ENV} to a copy, or {fetch_hint(name)}"


# archives ---------------------------------------------------------------------------------

def safe_members(tar) -> list:
    """The archive's members if every one is a plain file or folder inside it; FetchError otherwise.

    Refused: absolute paths, ``..``, links (symbolic or hard), devices, FIFOs. Python's ``data``
    filter (3.11.4+) is applied on top when extracting.
    """
    members = tar.getmembers()
    for member in members:
        parts = Path(member.name).parts
        why = ("an absolute path" if member.name.startswith(("/", "\\")) or Path(member.name).is_absolute()
               else "'..' in its path" if ".." in parts
               else "a link" if member.issym() or member.islnk()
               else "a device or special file" if not (member.isfile() or member.isdir()) else None)
        if why:
            raise FetchError(f"archive entry {member.name!r} is {why}: refused, nothing was extracted")
    return members


def extract_archive(archive: Path, into: Path) -> Path:
    """Extract a tar archive into a new temporary folder under ``into`` (returned); nothing else written.

    The caller moves what it needs out of it and removes it (``shutil.rmtree``).
    """
    import shutil
    import tarfile

    folder = Path(tempfile.mkdtemp(prefix=".extract-", dir=into))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = safe_members(tar)
            declared, room = sum(m.size for m in members if m.isfile()), free_bytes(folder)
            if declared > room:  # a small archive that expands past the disk (a gzip bomb)
                raise FetchError(f"{archive.name} expands to {declared} bytes, more than the {room} free in "
                                 f"{into}: refused, nothing was extracted")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(folder, members=members, **extra)
    except tarfile.TarError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise FetchError(f"cannot extract {archive.name}: {one_line(exc)}; nothing was kept") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


# checkpoints ------------------------------------------------------------------------------

def recorded_hash(path: Path) -> Path:
    """The sidecar holding the SHA-256 a checkpoint had when it was downloaded."""
    return path.with_name(path.name + ".sha256")


def verified_checkpoint(url: str, path: Path, name: str) -> Path:
    """A checkpoint downloaded once through ``download``, its SHA-256 recorded beside it and checked on use.

    A file without a recorded hash (placed by hand, or by an older version) or whose bytes
    changed is downloaded again, or refused offline.
    """
    current = settings()
    sidecar = recorded_hash(path)
    if path.is_file() and sidecar.is_file():
        # Hashed afresh, not from the (size, mtime) cache: a file swapped in with the same
        # size and mtime must not pass.
        if sha256_file(path) == sidecar.read_text().strip():
            return path
        problem = "does not match the SHA-256 recorded when it was downloaded"
    else:
        problem = "is missing" if not path.is_file() else "has no recorded SHA-256 (not downloaded by denoise-bench)"
    if current.offline:
        raise UsageError(f"weights {path} {problem} and --offline is set: {fetch_hint(name)}")
    digest = download(url, path, Pin(), path.name, name)
    from bench.files import atomic_write

    atomic_write(sidecar, lambda tmp: tmp.write_text(digest + "\n"))
    return path


def load_checkpoint(path: Path, map_location=None, what: str = "weights file",
                    advice: str = "delete it and fetch it again"):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code; UsageError
    naming ``what`` and the ``advice`` otherwise."""
    import torch

    try:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"{what} {path} refused by torch.load(weights_only=True) "
                         f"({one_line(exc, 160)}); {advice}") from None


@contextlib.contextmanager
def library_output(fetch_settings: FetchSettings) -> Iterator[None]:
    """Let a library's own download messages and bars through only when progress is wanted."""
    if fetch_settings.progress:
        yield
        return
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


@contextlib.contextmanager
def torch_hub_files(name: str) -> Iterator[list[Path]]:
    """Torch hub checkpoints loaded in the block (deepinv's ``pretrained=download``), listed as loaded.

    ``torch.hub.load_state_dict_from_url`` is replaced for the block: the file is fetched
    with ``verified_checkpoint`` into the data folder's ``torch-hub`` and read with
    ``load_checkpoint`` (``weights_only=True``), whatever the caller asked. Offline, a
    checkpoint not there yet (or not verified) is a UsageError naming ``denoise-bench fetch NAME``.
    """
    import torch.hub

    loaded: list[Path] = []
    original_load, original_dir = torch.hub.load_state_dict_from_url, torch.hub.get_dir()

    def load(url, model_dir=None, map_location=None, progress=True, check_hash=False, file_name=None,
             weights_only=True):
        folder = Path(model_dir) if model_dir else Path(torch.hub.get_dir()) / "checkpoints"
        path = folder / (file_name or os.path.basename(urllib.parse.urlparse(url).path))
        verified_checkpoint(url, path, name)
        loaded.append(path)
        return load_checkpoint(path, map_location)

    torch.hub.set_dir(str(settings().root / "torch-hub"))
    torch.hub.load_state_dict_from_url = load
    try:
        yield loaded
    finally:
        torch.hub.load_state_dict_from_url = original_load
        torch.hub.set_dir(original_dir)


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """An exception message on one line, shortened at a word boundary to at most ``limit`` characters."""
    return textwrap.shorten(" ".join(str(exc).split()), limit, placeholder=" ...")


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
