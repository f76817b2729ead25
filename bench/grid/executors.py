"""Executors: where cells run. Each yields (cell key, CellResult) as cells finish.

- ``LocalExecutor``: in this process, or with ``timeout`` in a child process
  that is killed when a cell outlives it (a hard limit).
- ``bench.grid.dask_executor.DaskExecutor``: cells as tasks on a ``distributed``
  cluster; its workers run them with ``worker_runner`` / ``isolated_runner``.
"""

from __future__ import annotations

import json
import multiprocessing
from typing import Iterable, Iterator

from bench.config import RunConfig, check_executor_options
from bench.device import resolve_device
from bench.grid.cells import Grid, build_grid
from bench.grid.runner import CellRunner
from bench.plugins import error_line, get_plugin_set
from bench.registry import Registry
from bench.store.database import CellResult

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


def make_executor(name: str, grid: Grid, device, workers: int | None, scheduler: str | None,
                  timeout: float | None):
    """Validate the executor options and build one (connecting to Dask if asked)."""
    check_executor_options(name, workers, scheduler, timeout)
    if name == "local":
        return LocalExecutor(grid, device, timeout)
    from bench.grid.dask_executor import DaskExecutor

    executor = DaskExecutor(grid.config.to_dict(), grid.config.device, workers, scheduler, timeout)
    executor.attach(grid)
    return executor
