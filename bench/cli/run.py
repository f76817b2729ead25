"""``denoise-bench run``: run a grid into the store, skipping cells already done."""

from __future__ import annotations

import sys

from bench.api.running import RunOptions, execute, summary_lines
from bench.api.suites import BASELINES
from bench.cli.options import add_data_arguments, add_device, add_max_cells, add_plugins, add_store
from bench.config import EXECUTORS, PROTOCOLS, make_config
from bench.errors import UsageError
from bench.grid.dask_executor import DASHBOARD_ADDRESS


def configure(parser) -> None:
    parser.description = ("Run a grid. With no CONFIG the shipped default grid is the base; "
                    "flags replace its values.")
    parser.add_argument("config", nargs="?", help="a named suite (`denoise-bench list suites`) or a TOML config file")
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
    parser.add_argument("--baselines", choices=BASELINES, default="published",
                        help="on a named suite with -m: its own rows shown by their published numbers "
                             "(published, the default), run too (run), or left out (none)")
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


OVERRIDES = ("datasets", "noise", "denoisers", "metrics", "repetitions", "seed", "store",
             "plugins", "device", "limit_images", "batch_size", "protocol", "data_root", "offline",
             "save_images", "models", "no_train", "cost", "max_cells", "sigma_in")


def run_options(args) -> RunOptions:
    """The executor flags as the API's run options."""
    return RunOptions(args.executor, args.workers, args.scheduler, args.timeout, args.dashboard,
                      quiet=args.quiet, argv=tuple(sys.argv))


def main(args) -> int:
    from bench.api.suites import is_suite, rows_to_run, suite_config
    from bench.plugins import load_plugins
    from bench.registry import Registry

    base = suite_config(args.config)
    run, reference = rows_to_run(base.get("denoisers", []), args.denoisers or [], args.baselines,
                                 is_suite(args.config))
    values = {name: getattr(args, name) for name in OVERRIDES}
    config = make_config(base, {**values, "denoisers": run})
    plugins = load_plugins(config.plugins)
    registry = Registry(plugins)
    boards = None if args.quiet else lambda store, run_id, grid: print_boards(store, run_id, grid, registry, reference)
    outcome = execute(config, run_options(args), plugins, registry, on_done=boards)
    print_summary(outcome)
    return outcome.summary.exit_code


def print_boards(store, run_id: str, grid, registry=None, reference: tuple[str, ...] = ()) -> None:
    """The denoisers' leaderboard of this run's grid (a suite's rows by their published numbers
    beside it, where it names ``reference`` rows) and the samplers' table, where there is one."""
    from bench.reports import sample_tables  # pandas and scipy: only for these tables
    from bench.reports import rendering, tables
    from bench.store.selection import Selection

    boards = []
    if grid.cells:
        store.selection = Selection(run=run_id)
        if reference:
            from bench.api.results import leaderboard

            boards.append(lambda: leaderboard(store, grid, registry, list(reference), [grid.config.metrics[0]]))
        else:
            boards.append(lambda: tables.leaderboard(store, grid.config.metrics[0]))
    if grid.sampling:
        boards.append(lambda: sample_tables.sample_leaderboard(store))
    for board in boards:
        try:
            print(rendering.render(board(), "table"))
        except UsageError:  # nothing of that kind finished
            pass


def print_summary(outcome) -> None:
    """Counts by status, cost problems, and every skipped or failed cell with its reason (stderr)."""
    for line in summary_lines(outcome.summary, outcome.store):
        print(line, file=sys.stderr)
