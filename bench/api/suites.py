"""Named suites: the grids papers use, shipped as versioned configs a user names instead of writing one.

A suite is a TOML config in ``bench/configs/`` with a ``[suite]`` table (``description``,
``version``); its name is the file's stem (``awgn-gray``). ``denoise-bench run awgn-gray``,
``bench.evaluate(model, "awgn-gray")`` and ``denoise-bench list suites`` read the same file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.config import SUITE_TABLE, default_config_path, load_config
from bench.errors import UsageError
from bench.specs import parse_noise, parse_spec

DEFAULT_SUITE = "default"
#: What a suite's own rows do beside a user's rows: show their published numbers (no recompute),
#: run too, or stay out.
BASELINES = ("published", "run", "none")


def suites_folder() -> Path:
    return Path(str(resources.files("bench") / "configs"))


def suite_names() -> list[str]:
    return sorted(path.stem for path in suites_folder().glob("*.toml"))


def suite_path(name: str) -> Path:
    """The config file of a suite; UsageError listing the suites for an unknown name."""
    path = suites_folder() / f"{name}.toml"
    if name and "/" not in name and path.is_file():
        return path
    raise UsageError(f"unknown suite {name!r}; suites: {', '.join(suite_names())} "
                     "(or give a TOML config file)")


def suite_config(name_or_path: str | None) -> dict:
    """The config values of a suite name, a config file, or (None) the default suite."""
    if name_or_path is None:
        return load_config(default_config_path())
    path = Path(name_or_path).expanduser()
    if path.is_file() or path.suffix == ".toml" or "/" in name_or_path:
        return load_config(path)
    return load_config(suite_path(name_or_path))


@dataclass(frozen=True)
class Suite:
    """What ``list suites`` shows of one suite."""

    name: str
    description: str
    version: int
    datasets: list[str]
    noise: list[str]
    denoisers: list[str]
    protocol: str
    sampling: int
    #: Its ``[[sampling]]`` tables.
    tables: tuple = ()

    @property
    def levels(self) -> int:
        return sum(len(parse_noise(text).levels) for text in self.noise)

    @property
    def cells(self) -> int:
        from bench.config import RunConfig, planned_cells

        return planned_cells(RunConfig(datasets=self.datasets, noise=self.noise, denoisers=self.denoisers,
                                       sampling=list(self.tables)))


def read_suite(name: str) -> Suite:
    path = suite_path(name)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    about = raw.get(SUITE_TABLE, {})
    values = load_config(path)
    return Suite(name, about.get("description", ""), int(about.get("version", 1)), values.get("datasets", []),
                 values.get("noise", []), values.get("denoisers", []), values.get("protocol", "default"),
                 len(values.get("sampling", [])), tuple(values.get("sampling", [])))


def dataset_images(datasets: list[str]) -> int | None:
    """Images in the suite's datasets where the pinned manifests say (None if any is unknown)."""
    from bench.reports.published import set_sizes

    sizes = set_sizes()
    total = 0
    for text in datasets:
        spec = parse_spec(text, "dataset")
        if spec.name not in sizes:
            return None
        total += sizes[spec.name]
    return total


def suites_table():
    """Every suite: name, version, datasets, levels, rows, cells and denoiser calls (its cost)."""
    import pandas as pd

    rows = []
    for name in suite_names():
        suite = read_suite(name)
        images = dataset_images(suite.datasets)
        calls = images * suite.levels * len(suite.denoisers) if images is not None else None
        rows.append({"suite": name, "version": suite.version, "datasets": ", ".join(suite.datasets),
                     "noise": ", ".join(suite.noise), "protocol": suite.protocol,
                     "rows": ", ".join(suite.denoisers), "sampling tables": suite.sampling,
                     "cells": suite.cells, "denoiser calls": calls, "description": suite.description})
    return pd.DataFrame(rows)


def is_suite(name_or_path: str | None) -> bool:
    """Whether a run's config argument names a shipped suite (not a file)."""
    return name_or_path is not None and not Path(name_or_path).expanduser().is_file() and \
        (suites_folder() / f"{name_or_path}.toml").is_file() and "/" not in name_or_path


def rows_to_run(suite_rows: list[str], given: list[str], baselines: str, named_suite: bool) -> tuple[list[str], list[str]]:
    """(rows to run, reference rows shown by their published numbers) for a user's ``given`` rows
    on a grid whose own rows are ``suite_rows``; no rows given runs the suite's own."""
    if baselines not in BASELINES:
        raise UsageError(f"baselines must be one of {', '.join(BASELINES)}, got {baselines!r}")
    if not given:
        return list(suite_rows), []
    if baselines == "run" and named_suite:
        return list(dict.fromkeys([*suite_rows, *given])), []
    reference = [row for row in suite_rows if row not in given] if baselines == "published" and named_suite else []
    return list(given), reference
