"""Executors: where cells run. Each yields (cell key, CellResult) as cells finish.

- ``LocalExecutor``: in this process, or with ``timeout`` in a child process
  that is killed when a cell outlives it (a hard limit).
- ``bench.grid.dask_executor.DaskExecutor``: cells as tasks on a ``distributed``
  cluster; its workers run them with ``worker_runner`` / ``isolated_runner``.

Wherever a cell runs, a plugin that calls ``sys.exit`` or ``os._exit`` fails
that cell only (``run_contained``); a child process dies with its parent
(``die_with_parent``), so a killed driver leaves no cell running.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from bench.config import RunConfig
from bench.device import resolve_device
from bench.grid.cells import Grid
from bench.grid.planning import build_grid
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


class CellExit(SystemExit):
    """``os._exit`` called during a cell, turned into an exception (see ``exits_contained``)."""


@contextmanager
def exits_contained():
    """While the block runs, ``os._exit`` called from this thread raises ``CellExit`` instead.

    Other threads, and processes a plugin forks (whose ``os._exit`` ends them as it
    should), keep the real one.
    """
    real, pid, thread = os._exit, os.getpid(), threading.get_ident()

    def contained_exit(code: int) -> None:
        if os.getpid() != pid or threading.get_ident() != thread:
            real(code)
        raise CellExit(code)

    os._exit = contained_exit
    try:
        yield
    finally:
        os._exit = real


@contextmanager
def interrupts_told_apart() -> Iterator[Callable[[], bool]]:
    """While the block runs, a Ctrl-C (SIGINT) is noted; yields ``by_user()``: whether a
    KeyboardInterrupt came from one rather than from a plugin raising it itself.

    Outside the main thread no SIGINT arrives, and where SIGINT is ignored (a child process)
    there is none; under any other handler than Python's default, every one counts as the user's.
    """
    noted: list[bool] = []
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else signal.SIG_IGN
    if handler is not signal.default_int_handler:
        yield lambda: handler is not signal.SIG_IGN
        return

    def note(signum, frame):
        noted.append(True)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield lambda: bool(noted)
    finally:
        signal.signal(signal.SIGINT, handler)


def run_contained(runner, key: str) -> CellResult:
    """``runner.run(key)``, where ``sys.exit`` / ``os._exit`` or a KeyboardInterrupt raised by a
    plugin fail the cell, not the process (the user's Ctrl-C still stops the run)."""
    with exits_contained(), interrupts_told_apart() as by_user:
        try:
            return runner.run(key)
        except SystemExit as exc:
            call = "os._exit" if isinstance(exc, CellExit) else "sys.exit"
            return CellResult("error", f"the plugin called {call}({exc.code!r}) during the cell; "
                              "the cell was stopped and the run went on")
        except KeyboardInterrupt:
            if by_user():
                raise
            return CellResult("error", "the plugin raised KeyboardInterrupt during the cell (no Ctrl-C "
                              "was pressed); the cell was stopped and the run went on")


#: prctl option that makes the kernel signal a process when the thread that started it exits (Linux).
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, group: bool = False) -> None:
    """End this (child) process when ``parent`` dies, even by SIGKILL: the kernel's parent-death
    signal on Linux, a watcher thread elsewhere.

    ``group``: make this process a process group's leader, so that the processes a plugin starts
    during a cell join its group, and end the whole group (them too) with the parent.
    """
    if group:
        os.setpgid(0, 0)

    def end(*_) -> None:
        if group:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(1)

    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        death_signal = signal.SIGTERM if group else signal.SIGKILL  # SIGTERM: ``end`` takes the group along
        if group:
            signal.signal(signal.SIGTERM, end)
        if libc.prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) == 0:
            if os.getppid() != parent:  # it died before the signal was armed
                end()
            if not group:
                return

    def watch() -> None:  # also where a busy main thread would run the SIGTERM handler late
        while os.getppid() == parent:
            threading.Event().wait(0.5 if group else 1.0)
        end()

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def end_group(process) -> None:
    """Kill a child started with ``die_with_parent(..., group=True)`` and every process in its group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # gone already, or not (yet) a group's leader
        process.kill()


def _child_main(conn, config: dict, device: str, parent: int) -> None:
    """Child process loop: build the grid, then run the cell keys it is sent.

    Ctrl-C is the parent's to handle (it stops this process); a dead parent ends it.
    """
    die_with_parent(parent, group=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
        conn.send(run_contained(runner, key))


def death_reason(exitcode: int | None) -> str:
    """How a child process ended, in words: its exit code or the signal that killed it."""
    if exitcode is None:
        return "it was still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class IsolatedRunner:
    """Runs cells in a child process; kills and replaces it on timeout (None: no limit) or death."""

    def __init__(self, config: dict, device: str, timeout: float | None):
        self.config, self.device, self.timeout = config, device, timeout
        self.process, self.conn = None, None

    def _start(self) -> str | None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_child_main, args=(child, self.config, self.device, os.getpid()),
                                       daemon=True)
        self.process.start()
        child.close()
        try:
            status, message = self.conn.recv()
        except EOFError:
            self.process.join(timeout=5)
            status, message = "failed", f"worker process died at start ({death_reason(self.process.exitcode)})"
        if status != "ready":
            self.stop()
            return message
        return None

    def stop(self) -> None:
        """End the child and the processes its cells started (its process group)."""
        if self.process is not None:
            end_group(self.process)
            self.process.join()
        self.process = None

    def run(self, key: str) -> CellResult:
        if self.process is None or not self.process.is_alive():
            problem = self._start()
            if problem:
                return CellResult("error", f"isolated worker failed to start: {problem}")
        self.conn.send(key)
        if self.timeout is not None and not self.conn.poll(self.timeout):
            self.stop()
            return CellResult("timeout", f"cell ran past --timeout {self.timeout:g}s and was stopped",
                              seconds=self.timeout)
        try:
            return self.conn.recv()
        except EOFError:
            self.process.join(timeout=5)  # reaped, so that its exit code is known
            reason = death_reason(self.process.exitcode)
            self.stop()
            return CellResult("error", f"the process running the cell died during it ({reason}); "
                              "the cell was stopped and the run went on")


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
            yield key, run_contained(self.runner, key)

    def close(self) -> None:
        if isinstance(self.runner, IsolatedRunner):
            self.runner.stop()
