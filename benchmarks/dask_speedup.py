"""Dask executor: speed-up over local on a CPU-bound grid, and per-cell overhead.

1. NL-means and TV over skimage-gray (full size) at three Gaussian levels, two
   repetitions, `--executor local` against `--executor dask --workers 2`: wall
   time of the whole command (cluster start included) and of the grid phase
   alone (the run's start and end in the store).
2. Per-cell overhead for the trivial `noisy` denoiser: the slope of wall time
   against the number of cells (1 vs 41 cells) for each executor.
Run: python benchmarks/dask_speedup.py
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from results_file import update_section

HEAVY = ["-d", "skimage-gray", "-n", "gaussian:15/255,25/255,50/255", "-m", "nlm", "-m", "tv",
         "--repetitions", "2"]
DASK = ["--executor", "dask", "--workers", "2"]


def timed_run(folder: Path, name: str, args: list[str]) -> float:
    store = folder / f"{name}.sqlite"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", *args, "--store", str(store), "--quiet"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def grid_seconds(folder: Path, name: str) -> float:
    """The grid phase of a run: from its start to its end as the store recorded them."""
    with sqlite3.connect(folder / f"{name}.sqlite") as db:
        started, finished = db.execute("SELECT started, finished FROM runs").fetchone()
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


def levels(n: int) -> list[str]:
    return ["-n", "gaussian:" + ",".join(f"{0.01 + 0.005 * i:.3f}" for i in range(n))]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t_local = timed_run(folder, "local", HEAVY)
        t_dask = timed_run(folder, "dask", HEAVY + DASK)
        g_local, g_dask = grid_seconds(folder, "local"), grid_seconds(folder, "dask")
        trivial = ["-d", "lfw-faces", "-m", "noisy"]
        overhead = {}
        for executor, extra in (("local", []), ("dask", DASK)):
            one = timed_run(folder, f"{executor}-1", trivial + levels(1) + extra)
            many = timed_run(folder, f"{executor}-41", trivial + levels(41) + extra)
            overhead[executor] = (one, many, (many - one) / 40)
    body = f"""## Dask executor: speed-up and per-cell overhead

CPU-bound grid: `nlm` and `tv` over skimage-gray (10 images, full size) x 3 Gaussian levels
x 2 repetitions = 12 cells. Goal: >= 1.7x.

| executor | whole command (s) | grid phase (s) |
|---|---|---|
| `--executor local` | {t_local:.1f} | {g_local:.0f} |
| `--executor dask --workers 2` | {t_dask:.1f} | {g_dask:.0f} |

Speed-up: **{t_local / t_dask:.2f}x** for the whole command (process and cluster start
included), **{g_local / g_dask:.2f}x** for the grid phase (store timestamps, whole seconds).

Per-cell overhead, trivial denoiser (`noisy` on lfw-faces test split, 40 images per cell):

| executor | 1 cell (s) | 41 cells (s) | seconds per extra cell |
|---|---|---|---|
""" + "\n".join(f"| {name} | {one:.2f} | {many:.2f} | {slope * 1000:.0f} ms |"
                for name, (one, many, slope) in overhead.items())
    update_section("dask_speedup", body)
    print(body)


if __name__ == "__main__":
    main()
