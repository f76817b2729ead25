"""``denoise-bench leaderboard``: ranked tables (long, wide or a ranking summary) in several formats."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.api import boards
from bench.cli.options import add_plugins, add_selection, add_store, selection_of
from bench.errors import UsageError
from bench.files import provenance_beside, write_texts
from bench.reports import rendering
from bench.store.database import open_existing


def configure(parser) -> None:
    parser.description = ("Long layout: one row per (dataset, noise, level, denoiser) with mean, std, "
                    "95% CI over images (repetitions averaged per image first; their spread is rep_std), "
                    "rank and rank_tied (1 + the rows significantly better by a paired t-test over "
                    "images, Holm-corrected within the group). CSV is plain (RFC 4180) with its "
                    "provenance (runs, versions, device, seed, protocol) in a sidecar JSON; JSON holds it "
                    "inline; Markdown and LaTeX start with it as comments.")
    add_store(parser)
    parser.add_argument("--metric", action="append", dest="metrics", metavar="METRIC",
                        help="metric to rank by, repeatable (default: every metric in the store)")
    parser.add_argument("--format", choices=rendering.FORMATS, default="table")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("--wide", action="store_true",
                        help="one row per denoiser, one column per (noise, level, metric), as papers print them")
    layout.add_argument("--summary", action="store_true",
                        help="cross-dataset ranking: mean rank of each denoiser over datasets and levels")
    layout.add_argument("--samples", action="store_true",
                        help="the samplers' table: one row per (dataset, score, sampler, chains) and metric, "
                             "CI over repetitions (default metrics: classifier FD, classes, ...)")
    layout.add_argument("--estimators", action="store_true",
                        help="the noise estimators' table: bias, mean absolute error (95%% CI over images) "
                             "and relative error of each estimator's per-image level, per dataset and level "
                             "(from runs with --sigma-in estimate:NAME)")
    parser.add_argument("--cost", action="store_true",
                        help="add each denoiser's measured cost: parameters, GMACs (multiply-adds), latency, peak memory "
                             "(from `run --cost`)")
    parser.add_argument("--show-failed", action="store_true",
                        help="list cells that did not finish (error, timeout, skipped) with their reason")
    parser.add_argument("--published", action="append", nargs="?", const="", metavar="FILE",
                        help="add the published PSNR/SSIM of matching rows and the difference (delta); "
                             "FILE: your own table in the same columns (repeatable)")
    add_plugins(parser, help="load a local plugin file (its published_as metadata)")
    parser.add_argument("--output", help="write to this file instead of stdout")
    parser.add_argument("--provenance", metavar="FILE",
                        help="CSV: where the provenance JSON goes (default: beside --output, "
                             "NAME.provenance.json; none when the CSV goes to stdout)")
    add_selection(parser)
    parser.set_defaults(func=main)


def layout(args) -> str:
    return next((name for name in ("wide", "summary", "samples", "estimators") if getattr(args, name)), "long")


def provenance_path(args) -> Path | None:
    """Where a CSV's provenance goes: ``--provenance``, else beside ``--output``."""
    if args.provenance:
        return Path(args.provenance)
    if args.output:
        return provenance_beside(args.output)
    return None


def main(args) -> int:
    if args.provenance and args.format != "csv":
        raise UsageError("--provenance is for --format csv (JSON holds its provenance inline; "
                         "Markdown and LaTeX as comments)")
    registry = None
    if args.published is not None:
        from bench.plugins import get_plugin_set
        from bench.registry import Registry

        registry = Registry(get_plugin_set(args.plugins))
    with open_existing(args.store) as store:
        store.selection = selection_of(args)
        board = boards.leaderboard(store, args.metrics, layout(args),
                                   None if args.published is None else [f for f in args.published if f],
                                   registry, with_source=args.format in ("csv", "json"), cost=args.cost)
    text = boards.render(board, args.format)
    files = {}
    if args.output:
        files[Path(args.output)] = text
    else:
        sys.stdout.write(text)
    sidecar = provenance_path(args) if args.format == "csv" else None
    if sidecar:
        files[sidecar] = boards.provenance_text(board)
    write_texts(files)
    for note in board.notes:  # under the table, off stdout so CSV and JSON stay clean
        print(f"--published: {note}", file=sys.stderr)
    failed = board.failed
    if not failed.empty:
        counts = ", ".join(f"{n} {status}" for status, n in failed["status"].value_counts().sort_index().items())
        if args.show_failed:
            print(f"{len(failed)} cell(s) not ranked ({counts}):", file=sys.stderr)
            print(failed.to_string(index=False), file=sys.stderr)
        else:
            print(f"{len(failed)} cell(s) not ranked ({counts}); --show-failed lists them", file=sys.stderr)
    return 0
