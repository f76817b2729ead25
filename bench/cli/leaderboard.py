"""``denoise-bench leaderboard``: ranked tables (long, wide or a ranking summary) in several formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from bench.cli.options import add_plugins, add_store
from bench.errors import UsageError
from bench.files import provenance_beside, write_texts
from bench.reports import cost_columns, estimators, published, rendering, sample_tables, tables
from bench.store import selection
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
    selection.add_arguments(parser)
    parser.set_defaults(func=main)


def build_table(store, args) -> pd.DataFrame:
    """The table the flags ask for; UsageError (nothing written) for an unknown metric."""
    if args.samples:
        return sample_tables.sample_leaderboard(store, args.metrics)
    if args.estimators:
        return estimators.estimator_table(store)
    if args.published is not None and (args.wide or args.summary):
        raise UsageError("--published adds columns to the long layout; drop --wide and --summary")
    if args.wide:
        metrics = args.metrics or tables.default_metrics(store) or ["psnr"]
        return tables.wide(store, list(dict.fromkeys(metrics)))
    boards = [tables.ranking_summary(store, m) if args.summary else tables.leaderboard(store, m)
              for m in dict.fromkeys(args.metrics or tables.scored_metrics(store) or ["psnr"])]
    table = pd.concat(boards, ignore_index=True) if len(boards) > 1 else boards[0]
    if args.published is not None:
        table = published.beside(table, [f for f in args.published if f], args.plugins,
                                 with_source=args.format in ("csv", "json"))
    return table


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
    with open_existing(args.store) as store:
        store.selection = selection.from_args(args)
        table = build_table(store, args)
        notes = table.attrs.get("published_notes", [])
        if args.cost:
            table = cost_columns.add(table, store, "wide" if args.wide else "summary" if args.summary else "long")
        provenance = sample_tables.sample_provenance(store) if args.samples else tables.provenance(store)
        failed = sample_tables.failed_sample_cells(store) if args.samples else tables.failed_cells(store)
    files = {}
    text = rendering.render(table, "csv") if args.format == "csv" else \
        rendering.render(table, args.format, provenance)
    if args.output:
        files[Path(args.output)] = text
    else:
        sys.stdout.write(text)
    sidecar = provenance_path(args) if args.format == "csv" else None
    if sidecar:
        files[sidecar] = json.dumps(provenance, indent=2) + "\n"
    write_texts(files)
    for note in notes:  # under the table, off stdout so CSV and JSON stay clean
        print(f"--published: {note}", file=sys.stderr)
    if not failed.empty:
        counts = ", ".join(f"{n} {status}" for status, n in failed["status"].value_counts().sort_index().items())
        if args.show_failed:
            print(f"{len(failed)} cell(s) not ranked ({counts}):", file=sys.stderr)
            print(failed.to_string(index=False), file=sys.stderr)
        else:
            print(f"{len(failed)} cell(s) not ranked ({counts}); --show-failed lists them", file=sys.stderr)
    return 0
