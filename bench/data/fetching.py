"""Fetching: named data and weights downloaded once with pooch, verified by SHA-256, kept in one folder.

The data folder is ``--data-root``, else ``$DENOISE_BENCH_DATA``, else
``pooch.os_cache("denoise-bench")``. A manifest (package data, see
``bench/data/``) pins every file's URL and SHA-256; ``$DENOISE_BENCH_MIRROR``
replaces the part of a manifest's URL before its first placeholder (an
institution's copy, or a test server). Every file is verified before each use:
a missing or corrupt file is downloaded again (into a temporary file, moved in
place only once its hash matches), and a download that still does not match is
a UsageError. Offline (``--offline`` or ``DENOISE_BENCH_OFFLINE=1``) nothing
touches the network: missing data is a UsageError naming the ``denoise-bench
fetch`` command to run where there is internet.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import urllib.parse
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from bench.data.content_hash import sha256_files
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
    return f"run `denoise-bench fetch {name}` where there is internet (with the same --data-root)"


def offline_error(what: str, where: Path, name: str) -> UsageError:
    return UsageError(f"{what} is not in {where} and --offline is set: {fetch_hint(name)}")


def check_writable(folder: Path) -> None:
    """UsageError unless files can be created in ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"data folder {folder} cannot be written ({exc.strerror or exc}); "
                         f"choose another with --data-root or {DATA_ENV}") from None


@dataclass(frozen=True)
class FileSpec:
    """One pinned file: its path relative to the manifest's base, SHA-256 and size."""

    path: str
    sha256: str
    bytes: int


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

    def folder(self, fetch_settings: FetchSettings) -> Path:
        return fetch_settings.root / self.name


def load_manifest(name: str, group: str | None = None) -> Manifest:
    """A manifest shipped in ``bench/data/NAME.json``: files of ``group`` (e.g. a dataset) or all."""
    data = json.loads((resources.files("bench") / "data" / f"{name}.json").read_text())
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


def is_cached(manifest: Manifest, paths: list[str], fetch_settings: FetchSettings | None = None) -> bool:
    """Whether every file is present with its pinned size (hashes are checked on use)."""
    folder = manifest.folder(fetch_settings or settings())
    return all((folder / p).is_file() and (folder / p).stat().st_size == manifest.files[p].bytes
               for p in paths)


def fetch(manifest: Manifest, paths: list[str], name: str) -> list[Path]:
    """Local, verified copies of ``paths`` (downloading what is missing or corrupt).

    ``name`` is what ``denoise-bench fetch`` takes to fetch them (for error messages).
    """
    current = settings()
    folder = manifest.folder(current)
    unknown = [p for p in paths if p not in manifest.files]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not in manifest {manifest.name}")
    hashes = sha256_files([folder / p for p in paths if (folder / p).is_file()])  # cached by size, mtime
    bad = [p for p in paths if hashes.get(folder / p) != manifest.files[p].sha256]
    if bad and current.offline:
        raise offline_error(f"{name} ({len(bad)} of {len(paths)} files missing or corrupt)", folder, name)
    if bad:
        _download(manifest, bad, folder, current, name)
    return [folder / p for p in paths]


def _download(manifest: Manifest, paths: list[str], folder: Path, current: FetchSettings,
              name: str) -> None:
    """Download with pooch (temporary file, hash check, then move); errors as UsageError."""
    import pooch
    import requests

    check_writable(folder)
    pooch.get_logger().setLevel(logging.WARNING)
    store = pooch.create(path=folder, base_url=manifest.base_url(current.mirror),
                         registry={p: f"sha256:{manifest.files[p].sha256}" for p in paths})
    total = sum(manifest.files[p].bytes for p in paths)
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetching {name}",
              disable=not current.progress, dynamic_ncols=True) as bar:
        for path in paths:
            url = store.get_url(path)
            try:
                store.fetch(path)
            except ValueError as exc:  # pooch: the downloaded file's hash does not match
                raise UsageError(f"checksum mismatch for {path} downloaded from {url}: "
                                 f"{one_line(exc)}; nothing was kept") from None
            except requests.RequestException as exc:
                raise UsageError(f"cannot download {url}: {one_line(exc)} "
                                 f"(offline? set {MIRROR_ENV} to a copy, or {fetch_hint(name)})") from None
            except OSError as exc:
                raise UsageError(f"cannot write {folder / path}: {exc.strerror or exc}") from None
            bar.update(manifest.files[path].bytes)


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

    They are kept in the data folder's ``torch-hub``; offline, a checkpoint not there yet
    is a UsageError naming ``denoise-bench fetch NAME``.
    """
    import torch.hub

    current = settings()
    loaded: list[Path] = []
    original_load, original_dir = torch.hub.load_state_dict_from_url, torch.hub.get_dir()

    def load(url, model_dir=None, *args, file_name=None, **kwargs):
        folder = Path(model_dir) if model_dir else Path(torch.hub.get_dir()) / "checkpoints"
        path = folder / (file_name or os.path.basename(urllib.parse.urlparse(url).path))
        if current.offline and not path.is_file():
            raise offline_error(f"weights {path.name}", folder, name)
        with library_output(current):
            state = original_load(url, model_dir, *args, file_name=file_name, **kwargs)
        loaded.append(path)
        return state

    torch.hub.set_dir(str(current.root / "torch-hub"))
    torch.hub.load_state_dict_from_url = load
    try:
        yield loaded
    finally:
        torch.hub.load_state_dict_from_url = original_load
        torch.hub.set_dir(original_dir)


def one_line(exc: BaseException) -> str:
    """An exception message on one line, at most 300 characters."""
    return " ".join(str(exc).split())[:300]


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
