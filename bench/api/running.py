"""One run of a grid into the store: checks first (nothing written), then plan, run, record.

The command line's ``run`` and ``sample`` and the Python API's ``evaluate`` all call ``execute``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.config import RunConfig, check_executor_options
from bench.errors import UsageError
from bench.store.database import Store, check_writable, has_done_cells


@dataclass(frozen=True)
class RunOptions:
    """How a grid runs (not what it computes): executor, cluster, hard timeout, output."""

    executor: str = "local"
    workers: int | None = None
    scheduler: str | None = None
    timeout: float | None = None
    #: Serve a local cluster's Dask dashboard at this address (None: off).
    dashboard: str | None = None
    #: No progress bars, no tables printed.
    quiet: bool = False
    #: The command line the run records (``sys.argv`` from the command line, a description from Python).
    argv: tuple[str, ...] = ()

    def check(self) -> None:
        """UsageError for options that do not go together, before anything runs."""
        check_executor_options(self.executor, self.workers, self.scheduler, self.timeout)
        if self.dashboard is not None and (self.executor != "dask" or self.scheduler):
            raise UsageError("--dashboard needs --executor dask with a local cluster (an existing "
                             "--scheduler serves its own dashboard)")


@dataclass
class RunOutcome:
    """What a run left: its summary (counts, failures), the store and the run's id."""

    summary: object
    store: str
    run_id: str | None
    grid: object


def execute(config: RunConfig, options: RunOptions, plugins=None, registry=None,
            on_done: Callable | None = None, before_run: Callable | None = None) -> RunOutcome:
    """Build the grid (usage errors first, nothing written), run it into the store.

    ``plugins`` (a ``bench.plugins.PluginSet``) and ``registry`` may be given when the caller
    already loaded them (``sample`` checks its flags against them; ``evaluate`` adds objects).
    ``before_run(grid, device)`` may raise a UsageError before anything is written;
    ``on_done(store, run_id, grid)`` is called with the store still open after the cells.
    """
    options.check()
    check_writable(config.store)  # a damaged, newer or read-only store: one line before any work
    early = start_cluster_early(config, options)
    try:
        from bench.device import resolve_device
        from bench.grid.planning import build_grid
        from bench.plugins import load_plugins
        from bench.registry import Registry

        plugins = plugins or load_plugins(config.plugins)
        registry = registry or Registry(plugins)
        grid = build_grid(config, registry, quiet=options.quiet)
        device = resolve_device(config.device)
        if before_run is not None:
            before_run(grid, device)
    except BaseException:
        close_started(early)  # started, but a usage error came first
        raise
    return record_run(config, options, grid, plugins, device, early, on_done)


def close_started(early) -> None:
    """Close a cluster started early (a future of it, or None) once it has started."""
    if early is not None and early.exception() is None:
        early.result().close()


def start_cluster_early(config: RunConfig, options: RunOptions):
    """A future of the Dask executor when every cell will be pending, else None.

    The cluster then starts while this process loads torch, the plugins and the
    data (the workers load theirs meanwhile).
    """
    if options.executor != "dask" or has_done_cells(config.store):
        return None
    from bench.grid.dask_executor import start_in_background

    return start_in_background(config.to_dict(), config.device, options.workers, options.scheduler,
                               options.timeout, options.dashboard)


def has_pending_cells(grid, store: Store) -> bool:
    """Whether any denoiser or sampler cell of the grid is not done in the store, or lacks the
    outputs ``save_images`` asks for."""
    from bench.grid.driver import all_cells, needs_outputs

    cells = all_cells(grid)
    done = store.statuses([cell.key for cell in grid.cells])
    samplers = grid.sampling.cells if grid.sampling else []
    done.update(store.statuses([cell.key for cell in samplers], "sample_cells"))
    return any(done.get(cell.key) != "done" or needs_outputs(grid, cell) for cell in cells)


def executor_for(grid, device, options: RunOptions, early):
    """The executor of the grid's pending cells: the cluster started early, or a new one."""
    if early is None and options.executor == "local":
        from bench.grid.executors import LocalExecutor

        executor = LocalExecutor(grid, device, options.timeout)
    elif early is None:
        from bench.grid.dask_executor import DaskExecutor

        executor = DaskExecutor(grid.config.to_dict(), grid.config.device, options.workers, options.scheduler,
                                options.timeout, options.dashboard)
        executor.attach(grid)
    else:
        executor = early.result()
        executor.attach(grid)
    if options.dashboard is not None:
        print(f"Dask dashboard: {executor.client.dashboard_link}", file=sys.stderr)
    return executor


def record_run(config: RunConfig, options: RunOptions, grid, plugins, device, early,
               on_done: Callable | None = None) -> RunOutcome:
    """Run the grid into the store as one run (the store opened once), measure costs if asked.

    The executor (none when nothing is pending: no cluster nor child process) is closed before
    costs are measured, since nothing may run beside them, and on any error.
    """
    from bench.grid.driver import measure_costs, run_grid
    from bench.provenance import versions, weights

    device_name = str(device) if options.executor == "local" else f"dask:{config.device}"
    executor = None
    # An existing store is opened first (to see what is pending); a new one only once the
    # executor stands, so a cluster that cannot be reached leaves no file behind.
    store = Store(config.store) if Path(config.store).is_file() and Path(config.store).stat().st_size else None
    try:
        if store is None or has_pending_cells(grid, store):
            executor, early = executor_for(grid, device, options, early), None
        with store or Store(config.store) as store:
            run_id = store.start_run(config.to_dict(), {**versions(plugins), "weights": weights(grid.denoisers)},
                                     device_name, list(options.argv))
            status = "interrupted"
            try:
                summary = run_grid(grid, store, run_id, executor, device_name, quiet=options.quiet)
                if executor is not None:
                    executor, finished = None, executor
                    finished.close()
                if config.cost:
                    summary.cost_problems = measure_costs(grid, store, run_id, device, options.quiet)
                status = "failed" if summary.failed else "done"
            finally:
                store.finish_run(run_id, status)
            if on_done is not None:
                on_done(store, run_id, grid)
    finally:
        if store is not None:
            store.close()
        if executor is not None:
            executor.close()
        close_started(early)
    return RunOutcome(summary, config.store, run_id, grid)


def summary_lines(summary, store: str) -> list[str]:
    """Counts by status, cost problems, and every skipped or failed cell with its reason."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    resaved = f", outputs saved again for {summary.resaved}" if summary.resaved else ""
    lines = [f"{summary.counts.total()} cells: {counts} ({summary.cached} from earlier runs{resaved}); "
             f"store: {store}"]
    lines += [f"  cost not measured: {problem}" for problem in summary.cost_problems]
    for title, rows in (("skipped", summary.skipped), ("FAILED", summary.failed)):
        lines += [f"  {title}: {cell.describe()}: {message}" for cell, message in rows]
    return lines
