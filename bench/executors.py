"""Executors: where cells run. Each yields (cell key, CellResult) as cells finish.

- ``LocalExecutor``: in this process, or with ``timeout`` in a child process
  that is killed when a cell outlives it (a hard limit).
- ``DaskExecutor``: cells become tasks on a ``distributed`` cluster (a
  LocalCluster with ``workers`` processes, or an existing ``scheduler``), one
  task per noisy-input group, so the inputs are drawn once per group. Each task
  carries only the config and the cell keys; a worker builds the grid once and
  keeps it. Results stream back per group; only the
  driver writes the store.
"""

from __future__ import annotations

import json
import multiprocessing
from typing import Iterable, Iterator

from bench.config import RunConfig
from bench.device import resolve_device
from bench.errors import UsageError
from bench.grid import Grid, build_grid
from bench.plugins import error_line, get_plugin_set
from bench.registry import Registry
from bench.runner import CellRunner
from bench.store import CellResult

EXECUTORS = ("local", "dask")
#: Seconds to wait for a scheduler before calling the address unreachable.
CONNECT_TIMEOUT = "5s"
#: Seconds a local Dask worker gets to exit before it is killed.
WORKER_EXIT_SECONDS = 60
#: Thread-count variables of OpenMP and the BLAS libraries, set for each local Dask worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_runners: dict[str, object] = {}


def _cached(kind: str, config: dict, device: str, make) -> object:
    """One runner per worker process and config: datasets load once, not once per cell."""
    ident = json.dumps([kind, config, device], sort_keys=True, default=str)
    if ident not in _runners:
        _runners[ident] = make()
    return _runners[ident]


def worker_runner(config: dict, device: str) -> CellRunner:
    """Rebuild, in a worker, the grid a config describes."""
    def make():
        run_config = RunConfig(**config)
        grid = build_grid(run_config, Registry(get_plugin_set(run_config.plugins)))
        return CellRunner(grid, resolve_device(device))
    return _cached("cells", config, device, make)


def _child_main(conn, config: dict, device: str) -> None:
    """Child process loop: build the grid, then run the cell keys it is sent."""
    try:
        runner = worker_runner(config, device)
    except BaseException as exc:
        conn.send(("failed", error_line(exc)))
        return
    conn.send(("ready", None))
    while True:
        key = conn.recv()
        if key is None:
            return
        conn.send(runner.run(key))


class IsolatedRunner:
    """Runs cells in a child process; kills and replaces it on timeout or death."""

    def __init__(self, config: dict, device: str, timeout: float):
        self.config, self.device, self.timeout = config, device, timeout
        self.process, self.conn = None, None

    def _start(self) -> str | None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_child_main, args=(child, self.config, self.device),
                                       daemon=True)
        self.process.start()
        child.close()
        try:
            status, message = self.conn.recv()
        except EOFError:
            status, message = "failed", f"worker process died at start (exit code {self.process.exitcode})"
        if status != "ready":
            self.stop()
            return message
        return None

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.process = None

    def run(self, key: str) -> CellResult:
        if self.process is None or not self.process.is_alive():
            problem = self._start()
            if problem:
                return CellResult("error", f"isolated worker failed to start: {problem}")
        self.conn.send(key)
        if not self.conn.poll(self.timeout):
            self.stop()
            return CellResult("timeout", f"cell ran past --timeout {self.timeout:g}s and was stopped",
                              seconds=self.timeout)
        try:
            return self.conn.recv()
        except EOFError:
            code = self.process.exitcode if self.process else None
            self.stop()
            return CellResult("error", f"worker process died during the cell (exit code {code})")


def isolated_runner(config: dict, device: str, timeout: float) -> IsolatedRunner:
    return _cached(f"isolated:{timeout}", config, device,
                   lambda: IsolatedRunner(config, device, timeout))


class LocalExecutor:
    """Cells one after another in this process (or in a killable child with a timeout)."""

    def __init__(self, grid: Grid, device, timeout: float | None = None):
        if timeout:
            self.runner = IsolatedRunner(grid.config.to_dict(), str(device), timeout)
        else:
            self.runner = CellRunner(grid, device)

    def results(self, keys: Iterable[str]) -> Iterator[tuple[str, CellResult]]:
        for key in keys:
            yield key, self.runner.run(key)

    def close(self) -> None:
        if isinstance(self.runner, IsolatedRunner):
            self.runner.stop()


def task_groups(cells: dict, keys: list[str], slots: int) -> list[list[str]]:
    """Cell keys as Dask tasks: one per noisy-input group (its inputs are drawn once).

    When there are fewer groups than twice the task slots, the largest groups
    are halved until every slot has work (their inputs are then drawn twice).
    """
    groups: dict[tuple, list[str]] = {}
    for key in keys:
        groups.setdefault(cells[key].noisy_group, []).append(key)
    tasks = list(groups.values())
    while len(tasks) < 2 * slots:
        largest = max(range(len(tasks)), key=lambda i: len(tasks[i]), default=None)
        if largest is None or len(tasks[largest]) < 2:
            break
        half = len(tasks[largest]) // 2
        tasks[largest:largest + 1] = [tasks[largest][:half], tasks[largest][half:]]
    return tasks


def host_threads(slots_on_host: int) -> int:
    """Threads per task slot so that the slots of one machine share its cores."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, slots_on_host))


def dask_cells(config: dict, device: str, keys: list[str], timeout: float | None,
               slots_per_host: dict[str, int]) -> list[tuple[str, CellResult]]:
    """The Dask task: run one noisy-input group's cells in a worker, with the worker's cached grid.

    Torch gets this machine's cores divided by the task slots on it, so the
    workers of one machine do not oversubscribe it.
    """
    import torch
    from distributed import get_worker

    worker = get_worker()
    host = worker.address.rsplit(":", 1)[0]
    torch.set_num_threads(host_threads(slots_per_host.get(host, worker.state.nthreads)))
    runner = isolated_runner(config, device, timeout) if timeout else worker_runner(config, device)
    return [(key, runner.run(key)) for key in keys]


class DaskExecutor:
    """Cells as tasks on a distributed cluster, one per noisy-input group; results come back as they finish."""

    def __init__(self, grid: Grid, device_name: str, workers: int | None = None,
                 scheduler: str | None = None, timeout: float | None = None):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--executor dask needs dask[distributed]: pip install 'denoise-bench[dask]'") from None
        self.config, self.device, self.timeout = grid.config.to_dict(), device_name, timeout
        self.cells = {cell.key: cell for cell in grid.cells}
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"cannot reach Dask scheduler at {scheduler}: {error_line(exc)}") from None
        else:
            workers = workers or 2
            threads = str(host_threads(workers))
            caps = {name: threads for name in THREAD_VARIABLES}
            # One task slot per worker; its BLAS/OpenMP threads share the cores. Workers may need
            # a child process of their own (hard timeouts), so they are not daemons.
            with dask.config.set({"distributed.worker.daemon": False,
                                  "distributed.nanny.pre-spawn-environ": {
                                      **dask.config.get("distributed.nanny.pre-spawn-environ", {}), **caps}}):
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=":0")  # any free port: no clash
            self.client = Client(self.cluster)

    def slots_per_host(self) -> dict[str, int]:
        """Task slots (threads) of the cluster's workers, summed per machine."""
        slots: dict[str, int] = {}
        for address, info in self.client.scheduler_info()["workers"].items():
            host = address.rsplit(":", 1)[0]
            slots[host] = slots.get(host, 0) + info.get("nthreads", 1)
        return slots

    def results(self, keys: Iterable[str]) -> Iterator[tuple[str, CellResult]]:
        from distributed import as_completed

        slots = self.slots_per_host()
        tasks = task_groups(self.cells, list(keys), max(1, sum(slots.values())))
        futures = {self.client.submit(dask_cells, self.config, self.device, group, self.timeout, slots,
                                      key=f"cells-{group[0]}", pure=False, priority=len(group)): group
                   for group in tasks}
        for future in as_completed(futures):
            try:
                yield from future.result()
            except Exception as exc:  # e.g. KilledWorker after repeated worker deaths
                for key in futures[future]:
                    yield key, CellResult("error", f"dask: {error_line(exc)}")

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            # A worker that imported torch takes seconds to exit on a busy machine; Dask's default
            # (4 s, then a kill and a warning per worker) is too short, so stop them patiently first.
            self.cluster.sync(_stop_workers, list(self.cluster.workers.values()))
            self.cluster.close()


async def _stop_workers(nannies: list) -> None:
    import asyncio

    await asyncio.gather(*(nanny.close(timeout=WORKER_EXIT_SECONDS) for nanny in nannies))


def check_options(name: str, workers: int | None, scheduler: str | None, timeout: float | None) -> None:
    """UsageError for executor options that do not go together (before anything runs)."""
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {name!r}; choose {', '.join(EXECUTORS)}")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout:g}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if name == "local" and (workers or scheduler):
        raise UsageError("--workers and --scheduler need --executor dask")
    if workers and scheduler:
        raise UsageError("give --workers (start a local cluster) or --scheduler (use one), not both")


def make_executor(name: str, grid: Grid, device, workers: int | None, scheduler: str | None,
                  timeout: float | None):
    """Validate the executor options and build one (connecting to Dask if asked)."""
    check_options(name, workers, scheduler, timeout)
    if name == "local":
        return LocalExecutor(grid, device, timeout)
    return DaskExecutor(grid, grid.config.device, workers, scheduler, timeout)
