"""Which cells a table covers: filters on dataset, noise, denoiser and run.

``leaderboard``, ``report`` and ``compare`` take the same four flags (``bench.cli.options``),
and ``Results`` selects its run's cells, so one grid's table is not mixed with everything
else in the store. Patterns are
globs (``nlm*``); a name that contains glob characters (``nlm[h=0.05]``)
also matches itself literally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase

import pandas as pd

from bench.errors import UsageError
from bench.specs import parse_noise, parse_number

#: ``--run last`` names the latest run in the store.
LAST = "last"


@dataclass(frozen=True)
class Selection:
    """Glob patterns per column (any may match) and a run id (or ``last``)."""

    datasets: tuple[str, ...] = ()
    noises: tuple[str, ...] = ()
    denoisers: tuple[str, ...] = ()
    run: str | None = None

    def __bool__(self) -> bool:
        return bool(self.datasets or self.noises or self.denoisers or self.run)

    def apply(self, cells: pd.DataFrame, store) -> pd.DataFrame:
        """The rows of a cells table (columns of the ``cells`` store table) that are selected."""
        keep = pd.Series(True, index=cells.index)
        if self.datasets:
            keep &= cells["dataset"].map(lambda v: matches(v, self.datasets))
        if self.denoisers:
            keep &= cells["denoiser"].map(lambda v: matches(v, self.denoisers))
        if self.noises:
            keep &= pd.Series([any(noise_matches(pattern, d, level) for pattern in self.noises)
                               for d, level in zip(cells["degradation"], cells["level"])], index=cells.index)
        if self.run:
            keep &= cells["key"].isin(run_cell_keys(store, self.run))
        return cells[keep]


def matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(value == p or fnmatchcase(value, p) for p in patterns)


def noise_matches(pattern: str, degradation: str, level: float) -> bool:
    """``gaussian`` (a glob on the name) or ``gaussian:25/255,50/255`` (name and levels); a name
    without parameters matches every parameterisation (``gaussian-map`` matches ``gaussian-map[shape=peaks]``)."""
    name = pattern.partition(":")[0]
    if not (matches(degradation, (name,)) or matches(degradation.partition("[")[0], (name,))):
        return False
    if ":" not in pattern:
        return True
    spec = parse_noise(pattern)
    return any(math.isclose(level, number(text), rel_tol=1e-9) for text in spec.levels)


def number(text: str) -> float:
    try:
        return parse_number(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--noise level {text!r} is not a number") from None


def run_cell_keys(store, run: str) -> set[str]:
    """Keys of the cells in a run's grid (done there or reused from earlier runs)."""
    runs = store.query("SELECT run_id FROM runs ORDER BY started, rowid")["run_id"].tolist()
    if not runs:
        raise UsageError(f"no runs in {store.path}")
    run_id = runs[-1] if run == LAST else run
    if run_id not in runs:
        raise UsageError(f"no run {run!r} in {store.path}; runs: {', '.join(runs[-5:])} (or `last`)")
    keys = store.query("SELECT cell_key FROM run_cells WHERE run_id = ?", (run_id,))["cell_key"]
    if keys.empty:  # stores from before runs recorded their grids
        keys = store.query("SELECT key AS cell_key FROM cells WHERE run_id = ?", (run_id,))["cell_key"]
    return set(keys)
