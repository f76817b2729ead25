"""Where a Dask run's time goes: driver start-up, cluster start, workers' first task, cells, shutdown.

The CPU-bound grid of ``dask_speedup.py`` through ``bench.grid.dask_executor.DaskExecutor``
with 2 local workers, phase by phase, plus Dask's task stream: how long each
task ran on its worker, how long workers waited before their first task, and
the time between tasks (scheduling and result transfer). The same cells with
``LocalExecutor`` give the work itself.
Run: python benchmarks/dask_profile.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

T0 = time.perf_counter()
import torch  # noqa: E402
from distributed import get_task_stream  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from results_file import update_section  # noqa: E402

from bench.config import RunConfig  # noqa: E402
from bench.grid.planning import build_grid  # noqa: E402
from bench.grid.dask_executor import DaskExecutor  # noqa: E402
from bench.grid.executors import LocalExecutor  # noqa: E402
from bench.plugins import get_plugin_set  # noqa: E402
from bench.registry import Registry  # noqa: E402

CONFIG = RunConfig(datasets=["skimage-gray"], noise=["gaussian:15/255,25/255,50/255"],
                   denoisers=["nlm", "tv"], repetitions=2, store="/tmp/unused.sqlite")


MALLOC_PROBE = """
import time, torch
from bench.config import RunConfig
from bench.grid.planning import build_grid
from bench.grid.runner import CellRunner
from bench.plugins import get_plugin_set
from bench.registry import Registry
torch.set_num_threads(1)
config = RunConfig(datasets=["skimage-gray"], noise=["gaussian:25/255"], denoisers=["nlm", "tv"],
                   store="/tmp/unused.sqlite")
runner = CellRunner(build_grid(config, Registry(get_plugin_set()), quiet=True), torch.device("cpu"))
start = time.perf_counter()
for key in runner.cells:
    runner.run(key)
print(time.perf_counter() - start)
"""


def malloc_probe(repeats: int = 2) -> dict[str, float]:
    """Seconds of one level's NL-means and TV cells in a bare process, with and without
    Dask's default MALLOC_TRIM_THRESHOLD_ (which its nannies set for workers); best of repeats."""
    found = {}
    variants = {"default glibc malloc": {}, "MALLOC_TRIM_THRESHOLD_=65536": {"MALLOC_TRIM_THRESHOLD_": "65536"}}
    for name, extra in variants.items():
        env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
        found[name] = min(float(subprocess.run([sys.executable, "-c", MALLOC_PROBE], env=env, check=True,
                                               capture_output=True, text=True).stdout.split()[-1])
                          for _ in range(repeats))
    return found


def main() -> None:
    phases = {"import torch (driver)": time.perf_counter() - T0}
    start = time.perf_counter()
    grid = build_grid(CONFIG, Registry(get_plugin_set()), quiet=True)
    phases["plugins and grid (driver)"] = time.perf_counter() - start
    keys = [cell.key for cell in grid.cells]

    start = time.perf_counter()
    executor = DaskExecutor(CONFIG.to_dict(), "cpu", workers=2)
    executor.attach(grid)
    phases["cluster start (scheduler, 2 nannies, 2 workers)"] = time.perf_counter() - start
    start = time.perf_counter()
    first = None
    with get_task_stream(executor.client) as recorded:
        for _ in executor.results(keys):
            first = first or time.perf_counter() - start
    phases["cells on Dask (first result after)"] = time.perf_counter() - start
    stream = recorded.data
    start = time.perf_counter()
    executor.close()
    phases["shutdown"] = time.perf_counter() - start

    starts, busy, first_task = {}, {}, {}
    for task in stream:
        for part in task["startstops"]:
            if part["action"] == "compute":
                worker = task["worker"]
                busy[worker] = busy.get(worker, 0.0) + part["stop"] - part["start"]
                starts.setdefault(worker, []).append((part["start"], part["stop"]))
    span = {w: max(s for _, s in v) - min(s for s, _ in v) for w, v in starts.items()}
    gaps = {w: span[w] - busy[w] for w in busy}
    first_task = {w: min(s for s, _ in v) for w, v in starts.items()}
    local_start = time.perf_counter()
    for _ in LocalExecutor(grid, torch.device("cpu")).results(keys):
        pass
    local = time.perf_counter() - local_start

    malloc = malloc_probe()
    rows = "\n".join(f"| {name} | {seconds:.1f} |" for name, seconds in phases.items())
    workers = "\n".join(
        f"| {w.rsplit(':', 1)[-1]} | {len(starts[w])} | {busy[w]:.1f} | {gaps[w]:.2f} | "
        f"{first_task[w] - min(first_task.values()):.1f} |" for w in busy)
    body = f"""## Dask profile: where a Dask run's time goes (`benchmarks/dask_profile.py`)

The 12 cells of `dask_speedup.py` (NL-means, TV; skimage-gray; 6 noisy-input groups) through
`DaskExecutor(workers=2)`, in one driver process; first result after {first:.1f} s of the cells phase.
Phases one after the other: `run` itself starts the cluster of a fresh store while the driver
loads torch and builds its grid, and has the workers build theirs meanwhile.

| phase | seconds |
|---|---|
{rows}
| the same cells with `LocalExecutor` (the work, one process) | {local:.1f} |

Per worker (Dask's task stream): tasks, seconds computing, seconds between its first task's start
and last task's end not spent computing (scheduling, transfers), and when its first task started
after the first worker's.

| worker port | tasks | computing (s) | gaps (s) | first task after (s) |
|---|---|---|---|---|
{workers}

Dask's nannies set `MALLOC_TRIM_THRESHOLD_=65536` for their workers by default, which turns off
glibc's adaptive mmap threshold; the executor drops it. One level's 2 cells (NL-means, TV,
skimage-gray) in a bare process, best of 2:

| malloc | seconds |
|---|---|
""" + "\n".join(f"| {name} | {seconds:.2f} |" for name, seconds in malloc.items()) + f"""

Load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} cores."""
    update_section("dask_profile", body)
    print(body)


if __name__ == "__main__":
    main()
