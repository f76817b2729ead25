"""``denoise-bench run``: run a grid into the store, skipping cells already done."""

from __future__ import annotations

import sys

from bench.cli.options import add_data_arguments, add_device, add_max_cells, add_plugins, add_store
from bench.config import (EXECUTORS, PROTOCOLS, RunConfig, check_executor_options,
                          default_config_path, load_config, make_config)
from bench.errors import UsageError
from bench.grid.dask_executor import DASHBOARD_ADDRESS
from bench.store.database import Store, check_writable, has_done_cells, statuses_at


def configure(parser) -> None:
    parser.description = ("Run a grid. With no CONFIG the shipped default grid is the base; "
                    "flags replace its values.")
    parser.add_argument("config", nargs="?", help="TOML config file")
    parser.add_argument("-d", "--dataset", action="append", dest="datasets", metavar="DATASET")
    parser.add_argument("-n", "--noise", action="append", metavar="NOISE",
                        help="gaussian:0.1,25/255, poisson:4,16,64 or gaussian-map[shape=peaks]:25/255 "
                             "(a std varying in space, the level its mean) (repeatable)")
    parser.add_argument("-m", "--denoiser", action="append", dest="denoisers", metavar="DENOISER",
                        help="name or name[key=value,...] (repeatable)")
    parser.add_argument("--metric", action="append", dest="metrics", metavar="METRIC")
    parser.add_argument("--repetitions", type=int)
    parser.add_argument("--seed", type=int)
    add_max_cells(parser)
    add_store(parser, default=None)  # None: the config's (flags replace its values)
    add_plugins(parser, help="load a local plugin file (repeatable)", default=None)
    add_device(parser, default=None)
    parser.add_argument("--limit-images", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--sigma-in", type=comma_list, metavar="CHOICES",
                        help="the level sigma-aware denoisers receive, a grid axis: comma list of oracle "
                             "(default), xF (x0.5: F times the true level), N/255 (fixed), estimate:NAME "
                             "(an estimator's per-image estimate; `denoise-bench list estimators`), mean "
                             "(a noise map's mean for the rows that take the map)")
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="paper: round outputs to 8 bits before scoring, as DPIR's test script; "
                             "clip: also clip the noisy input to [0, 1]; uint8: clip and round it to 8 bits")
    add_data_arguments(parser)
    parser.add_argument("--save-images", type=int, metavar="N",
                        help="keep the denoised outputs of the first N images (PNG, for galleries)")
    add_executor_flags(parser)
    parser.add_argument("--models", metavar="DIR",
                        help="model store of learned denoisers (default: models/ beside the store)")
    parser.add_argument("--no-train", action="store_true", default=None,
                        help="fail instead of training a learned denoiser that has no checkpoint")
    parser.add_argument("--cost", action="store_true", default=None,
                        help="after the cells, measure each denoiser's parameters, FLOPs, latency and "
                             "peak memory per image (shown by `leaderboard --cost`)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or tables")
    parser.set_defaults(func=main)


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_executor_flags(parser) -> None:
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local (this process) or dask (a distributed cluster)")
    parser.add_argument("--workers", type=int, help="with --executor dask: start a local cluster of N workers")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="with --executor dask: use the cluster at this scheduler address")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="hard limit per cell: cells run in a child process that is stopped")
    parser.add_argument("--dashboard", nargs="?", const=DASHBOARD_ADDRESS, metavar="HOST:PORT",
                        help="with --workers: serve the local cluster's Dask dashboard "
                             f"(default {DASHBOARD_ADDRESS}, this machine only; off unless given)")


def check_dashboard(args) -> None:
    """UsageError for ``--dashboard`` without a local cluster to serve it."""
    if args.dashboard is not None and (args.executor != "dask" or args.scheduler):
        raise UsageError("--dashboard needs --executor dask with a local cluster (an existing "
                         "--scheduler serves its own dashboard)")


OVERRIDES = ("datasets", "noise", "denoisers", "metrics", "repetitions", "seed", "store",
             "plugins", "device", "limit_images", "batch_size", "protocol", "data_root", "offline",
             "save_images", "models", "no_train", "cost", "max_cells", "sigma_in")


def main(args) -> int:
    config = make_config(load_config(args.config or default_config_path()),
                         {name: getattr(args, name) for name in OVERRIDES})
    summary, _ = execute(config, args)
    return summary.exit_code


def execute(config: RunConfig, args, plugins=None):
    """Build the grid (usage errors first, nothing written), run it into the store, report.

    Returns the run's summary and the store's path (``sample`` runs its grid here too, with the
    ``plugins`` it already loaded).
    """
    check_executor_options(args.executor, args.workers, args.scheduler, args.timeout)
    check_dashboard(args)
    check_writable(config.store)  # a damaged, newer or read-only store: one line before any work
    early = start_cluster_early(config, args)
    try:
        from bench.device import resolve_device
        from bench.grid.cells import build_grid
        from bench.plugins import load_plugins
        from bench.registry import Registry

        plugins = plugins or load_plugins(config.plugins)
        grid = build_grid(config, Registry(plugins), quiet=args.quiet)
        device = resolve_device(config.device)
        executor = None
        if has_pending_cells(grid, config.store):  # no cluster (nor child process) when all are done
            executor, early = executor_for(grid, device, args, early), None
        summary = record_run(config, args, grid, plugins, device, executor)
    finally:
        if early is not None and early.exception() is None:  # started, but a usage error came first
            early.result().close()
    print_summary(summary, config.store)
    return summary, config.store


def start_cluster_early(config: RunConfig, args):
    """A future of the Dask executor when every cell will be pending, else None.

    The cluster then starts while this process loads torch, the plugins and the
    data (the workers load theirs meanwhile).
    """
    if args.executor != "dask" or has_done_cells(config.store):
        return None
    from bench.grid.dask_executor import start_in_background

    return start_in_background(config.to_dict(), config.device, args.workers, args.scheduler, args.timeout,
                               args.dashboard)


def has_pending_cells(grid, store: str) -> bool:
    """Whether any denoiser or sampler cell of the grid is not done in the store, or lacks the
    outputs ``--save-images`` asks for."""
    from bench.grid.driver import needs_outputs

    done = statuses_at(store, [cell.key for cell in grid.cells])
    samplers = grid.sampling.cells if grid.sampling else []
    done.update(statuses_at(store, [cell.key for cell in samplers], "sample_cells"))
    return any(done.get(cell.key) != "done" or needs_outputs(grid, cell) for cell in [*grid.cells, *samplers])


def executor_for(grid, device, args, early):
    """The executor of the grid's pending cells: the cluster started early, or a new one."""
    if early is None:
        from bench.grid.executors import make_executor

        executor = make_executor(args.executor, grid, device, args.workers, args.scheduler, args.timeout,
                                 args.dashboard)
    else:
        executor = early.result()
        executor.attach(grid)
    if args.dashboard is not None:
        print(f"Dask dashboard: {executor.client.dashboard_link}", file=sys.stderr)
    return executor


def record_run(config: RunConfig, args, grid, plugins, device, executor):
    """Run the grid into the store as one run, measure costs if asked, print the boards.

    The executor (None when nothing is pending) is closed before costs are measured,
    since nothing may run beside them, and on any error.
    """
    from bench.grid.driver import measure_costs, run_grid
    from bench.provenance import versions, weights

    device_name = str(device) if args.executor == "local" else f"dask:{config.device}"
    try:
        with Store(config.store) as store:
            run_id = store.start_run(config.to_dict(), {**versions(plugins), "weights": weights(grid.denoisers)},
                                     device_name, sys.argv)
            status = "interrupted"
            try:
                summary = run_grid(grid, store, run_id, executor, device_name, quiet=args.quiet)
                if executor is not None:
                    executor, finished = None, executor
                    finished.close()
                if config.cost:
                    summary.cost_problems = measure_costs(grid, store, run_id, device, args.quiet)
                status = "failed" if summary.failed else "done"
            finally:
                store.finish_run(run_id, status)
            if not args.quiet and summary.counts["done"]:
                print_boards(store, grid, run_id)
    finally:
        if executor is not None:
            executor.close()
    return summary


def print_boards(store: Store, grid, run_id: str) -> None:
    """The denoisers' leaderboard of this run's grid and the samplers' table, where there is one."""
    from bench.reports import sample_tables  # pandas and scipy: only for these tables
    from bench.reports import rendering, tables
    from bench.store.selection import Selection

    boards = []
    if grid.cells:
        store.selection = Selection(run=run_id)
        boards.append(lambda: tables.leaderboard(store, grid.config.metrics[0]))
    if grid.sampling:
        boards.append(lambda: sample_tables.sample_leaderboard(store))
    for board in boards:
        try:
            print(rendering.render(board(), "table"))
        except UsageError:  # nothing of that kind finished
            pass


def print_summary(summary, store: str) -> None:
    """Counts by status, cost problems, and every skipped or failed cell with its reason (stderr)."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.counts.items()))
    resaved = f", outputs saved again for {summary.resaved}" if summary.resaved else ""
    print(f"{summary.counts.total()} cells: {counts} ({summary.cached} from earlier runs{resaved}); "
          f"store: {store}", file=sys.stderr)
    for problem in summary.cost_problems:
        print(f"  cost not measured: {problem}", file=sys.stderr)
    for title, rows in (("skipped", summary.skipped), ("FAILED", summary.failed)):
        for cell, message in rows:
            print(f"  {title}: {cell.describe()}: {message}", file=sys.stderr)
