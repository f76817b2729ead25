"""Dask executor against local and against the machine's ceiling, and its overhead per cell.

1. A CPU-bound grid (NL-means and TV over skimage-gray at full size, three
   Gaussian levels, two repetitions: 12 cells in 6 noisy-input groups), run
   three ways, each as fresh processes timed from start to end:
   - ``run --executor local``;
   - ``run --executor dask --workers 2`` (cluster start included);
   - the ceiling: the same cells as two bare Python processes, each building
     the grid and running half of the noisy-input groups with
     ``bench.runner.CellRunner`` (one torch/BLAS thread each, as a Dask worker
     gets): no scheduler, no store, no cluster.
   Goal: Dask within 15% of the ceiling.
2. Scheduling overhead per cell: `noisy` on lfw-faces' test split (40 images
   of 25x25) over 1,000 cells (100 levels x 10 repetitions) against 1 cell,
   for each executor; the slope is the wall time each extra cell costs.
   Goal: under 10 ms per cell for Dask.
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
from bench.grid import build_grid
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.runner import CellRunner

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


def levels(n: int) -> list[str]:
    return ["-n", "gaussian:" + ",".join(f"{0.01 + 0.001 * i:.3f}" for i in range(n))]


def main() -> None:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t_local = timed_run(folder, "local", HEAVY)
        t_dask = timed_run(folder, "dask", HEAVY + DASK)
        t_ceiling = ceiling(folder)
        trivial = ["-d", "lfw-faces[split=test]", "-m", "noisy", "--metric", "psnr"]
        overhead = {}
        for executor, extra in (("local", []), ("dask", DASK)):
            one = timed_run(folder, f"{executor}-1", trivial + levels(1) + extra)
            many = timed_run(folder, f"{executor}-1000", trivial + levels(100) + ["--repetitions", "10"] + extra)
            overhead[executor] = (one, many, (many - one) / 999)
    load_after = os.getloadavg()
    body = f"""## Dask executor: speed-up, ceiling and per-cell overhead (`benchmarks/dask_speedup.py`)

CPU-bound grid: `nlm` and `tv` over skimage-gray (10 images, full size) x 3 Gaussian levels
x 2 repetitions = 12 cells; whole commands, fresh processes (start-up, grid building and, for
Dask, the cluster's start included). The ceiling is the same cells as {WORKERS} bare processes
(`bench.runner.CellRunner`, half of the noisy-input groups each, one thread each).

| how | seconds | ceiling / this |
|---|---|---|
| `--executor local` | {t_local:.1f} | {t_ceiling / t_local:.2f} |
| `--executor dask --workers 2` | {t_dask:.1f} | {t_ceiling / t_dask:.2f} |
| {WORKERS} bare processes (ceiling) | {t_ceiling:.1f} | 1.00 |

Dask against local: **{t_local / t_dask:.2f}x**; Dask against the ceiling: **{t_dask / t_ceiling:.2f}**
(goal: at most 1.15).

Overhead per cell, trivial denoiser (`noisy`, PSNR, lfw-faces test split, 40 images of 25x25 per
cell): wall time of 1,000 cells (100 levels x 10 repetitions) against 1 cell.

| executor | 1 cell (s) | 1,000 cells (s) | per extra cell |
|---|---|---|---|
""" + "\n".join(f"| {name} | {one:.2f} | {many:.2f} | {slope * 1000:.1f} ms |"
                for name, (one, many, slope) in overhead.items()) + f"""

Load average (1, 5, 15 min) before: {', '.join(f'{v:.1f}' for v in load)}; after:
{', '.join(f'{v:.1f}' for v in load_after)} on {os.cpu_count()} cores (other jobs shared the machine)."""
    update_section("dask_speedup", body)
    print(body)


if __name__ == "__main__":
    main()
