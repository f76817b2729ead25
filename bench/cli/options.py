"""The options several commands share, declared once: store, plugin files, device, data folder.

Each keeps one name (``args.store``, ``args.plugins``, ``args.device``,
``args.data_root``, ``args.offline``) whichever command declares it. Light on
imports: every command's start-up reads this module.
"""

from __future__ import annotations

from bench.config import DEFAULT_MAX_CELLS, DEFAULT_STORE
from bench.data import fetching

DEVICES = ("auto", "cpu", "cuda")


def add_store(parser, default: str | None = DEFAULT_STORE) -> None:
    """``--store``; ``default=None`` where a run config supplies it."""
    parser.add_argument("--store", default=default, help=f"SQLite store (default {DEFAULT_STORE})")


def add_plugins(parser, help: str = "also load a local plugin file (repeatable)",
                default: list | None = None) -> None:
    """``--plugin PATH`` (repeatable) into ``args.plugins``; the default is [] unless given."""
    parser.add_argument("--plugin", action="append", dest="plugins", metavar="PATH",
                        default=[] if default is None else default, help=help)


def add_max_cells(parser) -> None:
    """``--max-cells N``: lift the grid-size limit (a run config's ``max_cells``)."""
    parser.add_argument("--max-cells", type=int, metavar="N",
                        help=f"run a grid of up to N cells (default limit {DEFAULT_MAX_CELLS:,}: "
                             "a larger grid is refused before anything is written)")


def add_device(parser, default: str | None = "auto") -> None:
    """``--device auto|cpu|cuda``; ``default=None`` where a run config supplies it."""
    parser.add_argument("--device", choices=DEVICES, default=default)


def add_data_arguments(parser, offline: bool = True) -> None:
    """``--data-root`` (and ``--offline``), shared by every command that loads data."""
    parser.add_argument("--data-root", help="data folder of fetched datasets and weights (default: "
                        f"${fetching.DATA_ENV}, else the user cache); also MNIST's torchvision root")
    if offline:
        parser.add_argument("--offline", action="store_true", default=None,
                            help=f"never touch the network (also {fetching.OFFLINE_ENV}=1)")


def settings_for(args) -> fetching.FetchSettings:
    """The fetch settings a command's flags ask for (flags, then environment, then cache)."""
    return fetching.FetchSettings.resolve(getattr(args, "data_root", None), getattr(args, "offline", None),
                                          bool(getattr(args, "quiet", False)))


def add_selection(parser) -> None:
    """The four filter flags, shared by the commands that read tables."""
    group = parser.add_argument_group("which cells (repeatable; globs such as 'nlm*')")
    group.add_argument("--dataset", action="append", dest="select_datasets", metavar="PATTERN", default=[])
    group.add_argument("--noise", action="append", dest="select_noises", metavar="PATTERN", default=[],
                       help="a degradation name, or name:levels such as gaussian:25/255")
    group.add_argument("--denoiser", action="append", dest="select_denoisers", metavar="PATTERN", default=[])
    group.add_argument("--run", dest="select_run", metavar="RUN_ID",
                       help="only the cells of one run's grid (a run id, or `last`)")


def selection_of(args):
    """The ``bench.store.selection.Selection`` the four flags ask for (pandas: imported here, not at start-up)."""
    from bench.store.selection import Selection

    return Selection(tuple(args.select_datasets), tuple(args.select_noises),
                     tuple(args.select_denoisers), args.select_run)
