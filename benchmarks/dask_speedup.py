"""Dask executor against local and against the machine's ceiling, and its overhead per cell.

1. A CPU-bound grid (NL-means and TV over skimage-gray at full size, three
   Gaussian levels, two repetitions: 12 cells in 6 noisy-input groups), run
   three ways, each as fresh processes timed from start to end:
   - ``run --executor local``;
   - ``run --executor dask --workers 2`` (cluster start included);
   - the ceiling: the same cells as two bare Python processes, each building
     the grid and running half of the noisy-input groups with
     ``bench.grid.runner.CellRunner`` (one torch/BLAS thread each, as a Dask worker
     gets): no scheduler, no store, no cluster.
   Goal: Dask within 15% of the ceiling.
2. Scheduling overhead per cell: `noisy` on lfw-faces' test split (40 images
   of 25x25) over 1,000 cells (100 levels x 10 repetitions), in this process on
   a started cluster: task-slot time not spent computing, per cell (see
   ``overhead``). Goal: under 10 ms per cell.
Run: python benchmarks/dask_speedup.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import update_section

HEAVY = ["-d", "skimage-gray", "-n", "gaussian:15/255,25/255,50/255", "-m", "nlm", "-m", "tv",
         "--repetitions", "2"]
DASK = ["--executor", "dask", "--workers", "2"]
WORKERS = 2
#: What a Dask worker's nanny sets before the worker starts (one thread per task slot).
THREAD_CAPS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
CEILING = """
import json, sys, time
import torch
from bench.config import RunConfig
from bench.grid.planning import build_grid
from bench.grid.runner import CellRunner
from bench.plugins import get_plugin_set
from bench.registry import Registry

torch.set_num_threads(1)
config = RunConfig(**json.loads(sys.argv[1]))
part, parts = int(sys.argv[2]), int(sys.argv[3])
grid = build_grid(config, Registry(get_plugin_set()), quiet=True)
runner = CellRunner(grid, torch.device("cpu"))
groups = list(dict.fromkeys(cell.noisy_group for cell in grid.cells))[part::parts]
for cell in grid.cells:
    if cell.noisy_group in groups:
        assert runner.run(cell.key).status == "done"
"""


def timed_run(folder: Path, name: str, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", "run", *args, "--store", str(folder / f"{name}.sqlite"),
                    "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - start


def ceiling(folder: Path) -> float:
    """The heavy grid's cells as bare processes, half of the noisy-input groups each."""
    config = {"datasets": ["skimage-gray"], "noise": ["gaussian:15/255,25/255,50/255"],
              "denoisers": ["nlm", "tv"], "repetitions": 2, "store": str(folder / "unused.sqlite")}
    env = {**os.environ, **THREAD_CAPS}
    start = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", CEILING, json.dumps(config), str(i), str(WORKERS)],
                                  env=env, stderr=subprocess.PIPE) for i in range(WORKERS)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise RuntimeError(err.decode())
    return time.perf_counter() - start


def overhead(folder: Path) -> dict[str, tuple[int, float, float | None]]:
    """Per-cell scheduling overhead on Dask: task-slot time not spent computing, per cell.

    In this process: the 1,000-cell trivial grid through ``run_grid`` (store
    writes included) on a started, warmed 2-worker cluster; Dask's task stream
    gives the seconds its tasks computed. The same cells with ``LocalExecutor``
    give the per-cell time of the work itself. Returns name -> (cells, wall, computing).
    """
    import contextlib

    import torch
    from distributed import get_task_stream

    from bench.config import RunConfig
    from bench.grid.cells import Grid
    from bench.grid.planning import build_grid
    from bench.grid.dask_executor import DaskExecutor
    from bench.grid.driver import run_grid
    from bench.grid.executors import LocalExecutor
    from bench.plugins import get_plugin_set
    from bench.registry import Registry
    from bench.store.database import Store

    levels = "gaussian:" + ",".join(f"{0.01 + 0.001 * i:.3f}" for i in range(100))
    found = {}
    for name in ("local", "dask"):
        config = RunConfig(datasets=["lfw-faces[split=test]"], noise=[levels], denoisers=["noisy"],
                           metrics=["psnr"], repetitions=10, store=str(folder / f"overhead-{name}.sqlite"))
        grid = build_grid(config, Registry(get_plugin_set()), quiet=True)
        if name == "local":
            executor = LocalExecutor(grid, torch.device("cpu"))
        else:
            executor = DaskExecutor(config.to_dict(), "cpu", workers=WORKERS)
            executor.attach(grid)
        with Store(folder / f"warm-{name}.sqlite") as warm, Store(config.store) as store:
            # warm-up: every worker builds its grid on its first task
            warm_grid = Grid(**{**grid.__dict__, "cells": grid.cells[:2 * WORKERS]})
            run_grid(warm_grid, warm, warm.start_run({}, {}, "cpu", []), executor, "cpu", quiet=True)
            recorder = get_task_stream(executor.client) if name == "dask" else contextlib.nullcontext()
            with recorder as stream:
                start = time.perf_counter()
                run_grid(grid, store, store.start_run({}, {}, "cpu", []), executor, "cpu", quiet=True)
                wall = time.perf_counter() - start
        computing = None
        if name == "dask":
            computing = sum(part["stop"] - part["start"] for task in stream.data for part in task["startstops"]
                            if part["action"] == "compute")
        executor.close()
        found[name] = (len(grid.cells), wall, computing)
    return found


def main() -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t_local = timed_run(folder, "local", HEAVY)
        t_dask = timed_run(folder, "dask", HEAVY + DASK)
        t_ceiling = ceiling(folder)
        costs = overhead(folder)
    load_after = os.getloadavg()
    n, local_wall, _ = costs["local"]
    _, dask_wall, dask_busy = costs["dask"]
    body = f"""## Dask executor: speed-up, ceiling and per-cell overhead (`benchmarks/dask_speedup.py`)

CPU-bound grid: `nlm` and `tv` over skimage-gray (10 images, full size) x 3 Gaussian levels
x 2 repetitions = 12 cells; whole commands, fresh processes (start-up, grid building and, for
Dask, the cluster's start included). The ceiling is the same cells as {WORKERS} bare processes
(`bench.grid.runner.CellRunner`, half of the noisy-input groups each, one thread each).

| how | seconds | ceiling / this |
|---|---|---|
| `--executor local` | {t_local:.1f} | {t_ceiling / t_local:.2f} |
| `--executor dask --workers 2` | {t_dask:.1f} | {t_ceiling / t_dask:.2f} |
| {WORKERS} bare processes (ceiling) | {t_ceiling:.1f} | 1.00 |

Dask against local: **{t_local / t_dask:.2f}x**; Dask against the ceiling: **{t_dask / t_ceiling:.2f}**
(goal: at most 1.15).

Overhead per cell, trivial denoiser (`noisy`, PSNR, lfw-faces test split, 40 images of 25x25 per
cell), {n} cells (100 levels x 10 repetitions) through `run_grid` (store writes included) on a
started and warmed cluster. Dask's task stream gives the seconds its tasks computed; the overhead
is the task-slot time not spent computing, per cell: ({WORKERS} x wall - computing) / cells.

| executor | wall (s) | per cell | computing (s) | overhead per cell |
|---|---|---|---|---|
| local | {local_wall:.2f} | {local_wall / n * 1000:.1f} ms | | |
| dask, {WORKERS} workers | {dask_wall:.2f} | {dask_wall / n * 1000:.1f} ms | {dask_busy:.2f} | **{(WORKERS * dask_wall - dask_busy) / n * 1000:.1f} ms** |

(goal: under 10 ms.)

Load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load)}; after:
{', '.join(f'{v:.1f}' for v in load_after)} on {os.cpu_count()} cores (other jobs shared the machine)."""
    update_section("dask_speedup", body)
    print(body)


if __name__ == "__main__":
    main()
