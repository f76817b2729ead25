"""Which code computes a cell's numbers: the harness's source, a plugin's package, their libraries.

Cell keys hash these, so any change to code that can run while a cell is computed
makes the cell new (docs/results.md). The harness part is the whole ``bench``
package but the rooms that cannot touch a number (``NOT_NUMERIC``), rather than an
allow-list that misses the next module; a plugin's part follows its imports through
its own package, imports inside functions included. Library versions are derived
from the same imports (top-level names mapped to their distributions).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

#: Rooms of ``bench`` that parse flags, orchestrate and render: they never change a number.
NOT_NUMERIC = ("cli", "reports", "api", "entry", "__main__")
#: Library -> libraries it loads by name only when asked, which no import of ours names: deepinv's
#: wavelet denoisers run on ``ptwt``; scikit-image decodes PNG and JPEG files with Pillow (through imageio).
LOADED_BY_NAME = {"deepinv": ("ptwt", "pywavelets"), "scikit-image": ("pillow", "imageio")}
#: Libraries imported only to show progress, fetch files (verified by their hashes afterwards),
#: register plugins, schedule cells or draw figures: their versions never change a number.
NEVER_NUMERIC = ("tqdm", "requests", "urllib3", "pooch", "pluggy", "dask", "distributed", "matplotlib")


def source_fingerprint(module: ModuleType) -> str:
    """Short hash of a module's source file (``nosource`` for a built-in or frozen one)."""
    path = getattr(module, "__file__", None)
    return file_hash(Path(path)) if path and Path(path).exists() else "nosource"


def file_hash(path: Path) -> str:
    return file_facts(path)[0]


def file_facts(path: Path) -> tuple[str, tuple]:
    """(short hash, its import statements as (level, module, names)) of a source file, read once per
    process and file version (a file that does not parse imports nothing)."""
    stat = path.stat()
    return _file_facts(path, stat.st_mtime_ns, stat.st_size, stat.st_ino)


@cache
def _file_facts(path: Path, mtime_ns: int, size: int, inode: int) -> tuple[str, tuple]:
    source = path.read_bytes()
    try:
        nodes = ast.walk(ast.parse(source))
        imports = tuple((0, None, tuple(a.name for a in node.names)) if isinstance(node, ast.Import)
                        else (node.level, node.module, tuple(a.name for a in node.names))
                        for node in nodes if isinstance(node, (ast.Import, ast.ImportFrom)))
    except (SyntaxError, ValueError):
        imports = ()
    return hashlib.sha256(source).hexdigest()[:12], imports


def harness_files(root: Path) -> dict[str, Path]:
    """Module name -> file of every module of the package at ``root`` outside ``NOT_NUMERIC``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] not in NOT_NUMERIC:
            found[".".join((root.name, *parts))] = path
    return found


def harness_identity(root: Path) -> dict:
    """The source hash of the harness package at ``root`` and the versions of the libraries it imports."""
    files = harness_files(root)
    return {"source": sources_hash(files), "libraries": library_versions(imported_names(files.values()))}


@cache
def harness_code() -> dict:
    """``harness_identity`` of the installed ``bench`` package, once per process: part of every key."""
    import bench

    return harness_identity(Path(bench.__file__).parent)


def package_modules(name: str, path: Path) -> dict[str, Path]:
    """The module at ``path`` and every module of its own top-level package it imports, transitively,
    imports inside functions included (``bench_plugins.empirical_mmse`` imported by a factory)."""
    package = name.partition(".")[0]
    root = package_root(name, path)
    found: dict[str, Path] = {}
    pending = [(name, path)]
    while pending:
        current, file = pending.pop()
        if current in found:
            continue
        found[current] = file
        for target in imported_modules(file, current):
            if target.partition(".")[0] == package and root is not None:
                target_file = module_file(root, target)
                if target_file is not None:
                    pending.append((target, target_file))
    return found


def plugin_fingerprint(module: ModuleType) -> str:
    """Short hash of a plugin module, the modules of its own package it uses (``package_modules``)
    and the versions of the libraries they import: a change in any changes cell keys."""
    path = getattr(module, "__file__", None)
    if not path or not Path(path).exists():
        return "nosource"
    files = package_modules(module.__name__, Path(path))
    versions = library_versions(imported_names(files.values()))
    return hashlib.sha256(f"{sources_hash(files)};{sorted(versions.items())}".encode()).hexdigest()[:12]


def sources_hash(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}:{file_hash(files[name])};".encode())
    return digest.hexdigest()[:16]


def package_root(name: str, path: Path) -> Path | None:
    """The folder of the top-level package a module belongs to (None for a lone module)."""
    depth = name.count(".") + (path.name == "__init__.py")
    if depth == 0:
        return None
    return path.parents[depth - 1]


def module_file(root: Path, name: str) -> Path | None:
    """The source file of module ``name`` in the top-level package at ``root`` (None if it has none)."""
    base = root.joinpath(*name.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, name: str) -> set[str]:
    """Absolute names a module imports anywhere in its source (``from p import m``: ``p`` and ``p.m``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for level, module, names in file_facts(path)[1]:
        if module is None and not level:  # import a, b.c
            found |= set(names)
            continue
        base = module or ""
        if level:
            parent = package.rsplit(".", level - 1)[0] if level > 1 else package
            base = f"{parent}.{base}" if base else parent
        found.add(base)
        found |= {f"{base}.{name}" for name in names}
    return found


def imported_names(files) -> set[str]:
    """Top-level names imported anywhere in these files (``numpy``, ``skimage``, ``bench``)."""
    return {name.partition(".")[0] for path in files for name in imported_modules(path, "")}


@cache
def import_distributions() -> dict[str, tuple[str, ...]]:
    """Top-level import name -> the distributions that provide it (scanned once per process)."""
    return {name: tuple(dists) for name, dists in metadata.packages_distributions().items()}


def library_versions(import_names: set[str]) -> dict[str, str]:
    """Distribution -> version of every installed library behind these imports, plus ``LOADED_BY_NAME``
    where a library that loads it is among them; the standard library and this project have none."""
    return dict(_library_versions(frozenset(import_names)))


@cache
def _library_versions(import_names: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """``library_versions``, once per process and set of names (metadata look-ups are slow)."""
    distributions = {dist.lower() for name in import_names for dist in import_distributions().get(name, ())}
    distributions |= {loaded for dist in list(distributions) for loaded in LOADED_BY_NAME.get(dist, ())}
    skip = {dist.lower() for dist in import_distributions().get("bench", ())} | set(NEVER_NUMERIC)
    return tuple((dist, version) for dist in sorted(distributions - skip)
                 if (version := installed_version(dist)) is not None)


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
