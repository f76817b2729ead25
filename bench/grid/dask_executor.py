"""The Dask executor: cells as tasks on a ``distributed`` cluster.

A LocalCluster with ``workers`` processes, or an existing ``scheduler``. One
task per noisy-input group, so its inputs are drawn once; each task carries
only the config and the cell keys, a worker builds the grid once and keeps it,
and results come back per task; only the driver writes the store. A task whose
worker dies (a plugin that kills its process) is split: each of its cells is
sent again on its own, so only the cell that kills its worker fails. The local
cluster's dashboard is off unless asked for, and then on 127.0.0.1. This module
imports neither torch nor dask at the top, so a run can start its cluster
before it loads anything heavy.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator

from bench.errors import UsageError
from bench.plugins import error_line
from bench.store.database import CellResult

#: Seconds to wait for a scheduler before calling the address unreachable.
CONNECT_TIMEOUT = "5s"
#: Seconds a local Dask worker gets to exit before it is killed.
WORKER_EXIT_SECONDS = 60
#: Times a local cluster runs a task again after its worker died (Dask's default is 3): ``Dispatch``
#: retries instead, splitting a group into single cells, then running a suspect cell alone.
ALLOWED_FAILURES = 0
#: The error of a cell whose Dask worker died each time it ran it, the last time alone.
WORKER_DEATH = ("the Dask worker running this cell died, also when it ran alone (killed by a signal, out of "
                "memory or an exit outside Python); the other cells of its group ran again")
#: Where ``--dashboard`` with no address serves the local cluster's dashboard: this machine only.
DASHBOARD_ADDRESS = "127.0.0.1:8787"
#: Thread-count variables of OpenMP and the BLAS libraries, set for each local Dask worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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

    from bench.grid.executors import isolated_runner, run_contained, worker_runner

    worker = get_worker()
    host = worker.address.rsplit(":", 1)[0]
    torch.set_num_threads(host_threads(slots_per_host.get(host, worker.state.nthreads)))
    runner = isolated_runner(config, device, timeout) if timeout else worker_runner(config, device)
    return [(key, run_contained(runner, key)) for key in keys]


class DaskExecutor:
    """Cells as tasks on a distributed cluster, one per noisy-input group; results come back as they finish."""

    def __init__(self, config: dict, device_name: str, workers: int | None = None,
                 scheduler: str | None = None, timeout: float | None = None, dashboard: str | None = None):
        """``dashboard``: where a local cluster serves its dashboard (None: no dashboard)."""
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--executor dask needs dask[distributed]: pip install 'denoise-bench[dask]'") from None
        self.config, self.device, self.timeout = config, device_name, timeout
        self.cells: dict = {}
        self.cluster = None
        self._warming: list = []  # futures of the warm-up tasks, kept so they are not cancelled
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise UsageError(f"cannot reach Dask scheduler at {scheduler}: {error_line(exc)}") from None
        else:
            workers = workers or 2
            threads = str(host_threads(workers))
            # One task slot per worker; its BLAS/OpenMP threads share the cores. Dask's default
            # MALLOC_TRIM_THRESHOLD_ is dropped: it turns off glibc's adaptive mmap threshold, and
            # numpy-heavy denoisers (TV, NL-means) then ran 40% slower (see benchmarks/RESULTS.md).
            # Workers may need a child process of their own (hard timeouts): not daemons.
            environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}),
                       **{name: threads for name in THREAD_VARIABLES}, "MALLOC_TRIM_THRESHOLD_": None}
            saved = dict(os.environ)
            try:
                with dask.config.set({"distributed.worker.daemon": False,
                                      "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                                      "distributed.nanny.pre-spawn-environ": environ}):
                    # Scheduler and workers listen on 127.0.0.1 (LocalCluster's default host); so does
                    # the scheduler's HTTP server (health and metrics), on any free port: no clash.
                    self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                dashboard_address=dashboard or "127.0.0.1:0",
                                                scheduler_kwargs={"dashboard": dashboard is not None})
            finally:  # the nannies set their variables in this process's environment: undo that
                for name in set(os.environ) - set(saved):
                    del os.environ[name]
                os.environ.update(saved)
            self.client = Client(self.cluster)

    def warm(self) -> None:
        """Have every worker build its grid now (its first task would otherwise)."""
        self._warming = [self.client.submit(warm_worker, self.config, self.device, self.timeout,
                                            workers=[address], allow_other_workers=False, pure=False,
                                            key=f"warm-{address}", priority=1)
                         for address in self.client.scheduler_info()["workers"]]

    def attach(self, grid) -> None:
        """The grid whose cells ``results`` will be asked for (the cluster may start before it is built)."""
        self.cells = {cell.key: cell for cell in grid.cells}
        if grid.sampling:
            self.cells.update({cell.key: cell for cell in grid.sampling.cells})

    def slots_per_host(self) -> dict[str, int]:
        """Task slots (threads) of the cluster's workers, summed per machine."""
        slots: dict[str, int] = {}
        for address, info in self.client.scheduler_info()["workers"].items():
            host = address.rsplit(":", 1)[0]
            slots[host] = slots.get(host, 0) + info.get("nthreads", 1)
        return slots

    def submit(self, tasks: list[tuple[str, list[str]]], slots: dict[str, int]) -> dict:
        """Send (key prefix, cell keys) tasks in one message; returns {future: its cell keys}."""
        futures = self.client.map(dask_cells, [self.config] * len(tasks), [self.device] * len(tasks),
                                  [keys for _, keys in tasks], [self.timeout] * len(tasks),
                                  [slots] * len(tasks), key=[f"{prefix}-{keys[0]}" for prefix, keys in tasks],
                                  pure=False)
        return dict(zip(futures, (keys for _, keys in tasks)))

    def results(self, keys: Iterable[str]) -> Iterator[tuple[str, CellResult]]:
        """Results as tasks finish; see ``Dispatch`` for what happens when a worker dies."""
        from distributed import as_completed

        slots = self.slots_per_host()
        dispatch = Dispatch(self, task_groups(self.cells, list(keys), max(1, sum(slots.values()))), slots,
                            as_completed(with_results=True, raise_errors=False))
        dispatch.feed()
        for future, found in dispatch.finished:
            found = dispatch.settle(future, found)
            dispatch.feed()
            yield from found

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            # A worker that imported torch takes seconds to exit on a busy machine; Dask's default
            # (4 s, then a kill and a warning per worker) is too short, so stop them patiently first.
            self.cluster.sync(_stop_workers, list(self.cluster.workers.values()))
            self.cluster.close()


class Dispatch:
    """Which tasks run on a Dask cluster, and what a task whose worker died becomes.

    Every task is sent at once, until a worker dies; from then on, at most one
    per live task slot, so a worker holds only the task it runs. A group whose
    worker died is split into single cells; a single cell whose worker died is
    a suspect, run again alone (nothing else running); a suspect whose worker
    dies again is the cell that kills it, and only it fails (``WORKER_DEATH``).
    """

    def __init__(self, executor: DaskExecutor, groups: list[list[str]], slots: dict[str, int], finished):
        self.executor, self.slots, self.finished = executor, slots, finished
        self.waiting = deque(("cells", group) for group in groups)
        self.suspects: deque = deque()
        self.running: dict = {}  # future -> its cell keys
        self.alone: set = set()  # futures of suspects running alone
        self.throttled = False  # one task per live slot, once a worker has died

    def settle(self, future, found) -> list[tuple[str, CellResult]]:
        """The results of a finished task; none where its cells were sent again."""
        from distributed import KilledWorker

        group = self.running.pop(future)
        alone = future in self.alone
        self.alone.discard(future)
        if future.status != "error":
            return found
        problem = future.exception()
        if isinstance(problem, KilledWorker):
            self.throttled = True
            if len(group) > 1:  # which cell killed it is unknown: each runs again on its own
                self.waiting.extendleft(("cell", [key]) for key in reversed(group))
                return []
            if not alone:  # its worker may have died of another task: once more, alone
                self.suspects.append(group)
                return []
            message = WORKER_DEATH
        else:
            message = f"dask: {error_line(problem)}"
        return [(key, CellResult("error", message)) for key in group]

    def feed(self) -> None:
        """Send waiting tasks (all, or until every live slot has one); a suspect only onto an idle cluster."""
        if self.suspects or self.alone:
            if not self.running and self.suspects:
                self.send([("suspect", self.suspects.popleft())], alone=True)
            return
        if not self.throttled:
            free = len(self.waiting)
        else:
            free = max(1, sum(self.executor.client.nthreads().values())) - len(self.running)
        self.send([self.waiting.popleft() for _ in range(min(free, len(self.waiting)))])

    def send(self, tasks: list[tuple[str, list[str]]], alone: bool = False) -> None:
        if tasks:
            sent = self.executor.submit(tasks, self.slots)
            self.running.update(sent)
            self.finished.update(sent)
            if alone:
                self.alone.update(sent)


async def _stop_workers(nannies: list) -> None:
    import asyncio

    await asyncio.gather(*(nanny.close(timeout=WORKER_EXIT_SECONDS) for nanny in nannies))


def warm_worker(config: dict, device: str, timeout: float | None) -> None:
    """Build the grid in a worker before its first cell (a task pinned to each worker)."""
    if not timeout:
        from bench.grid.executors import worker_runner

        worker_runner(config, device)


def start_in_background(config: dict, device_name: str, workers: int | None, scheduler: str | None,
                        timeout: float | None, dashboard: str | None = None) -> Future:
    """Start (or connect to) the cluster in a thread and warm its workers; ``.result()`` is the executor.

    For a run whose every cell is pending: the cluster starts while the driver
    builds its grid. A failure (an unreachable scheduler) is raised by ``.result()``.
    """
    def start() -> DaskExecutor:
        executor = DaskExecutor(config, device_name, workers, scheduler, timeout, dashboard)
        executor.warm()
        return executor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dask-start")
    future = pool.submit(start)
    pool.shutdown(wait=False)
    return future
