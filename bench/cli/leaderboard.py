"""``denoise-bench leaderboard``: ranked tables (long, wide or a ranking summary) in several formats."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench import leaderboard as lb
from bench.config import DEFAULT_STORE
from bench.store import open_existing


def configure(sub) -> None:
    parser = sub.add_parser(
        "leaderboard", help="rank denoisers from a results store",
        description="Long layout: one row per (dataset, noise, level, denoiser) with mean, std, "
                    "95% CI over images (repetitions averaged per image first; their spread is rep_std), "
                    "rank and rank_tied (1 + the rows significantly better by a paired t-test over "
                    "images, Holm-corrected within the group). "
                    "Every export starts with its provenance (runs, versions, device, seed, protocol).")
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")
    parser.add_argument("--metric", action="append", dest="metrics", metavar="METRIC",
                        help="metric to rank by, repeatable (default psnr; with --wide psnr and ssim)")
    parser.add_argument("--format", choices=lb.FORMATS, default="table")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("--wide", action="store_true",
                        help="one row per denoiser, one column per (noise, level, metric), as papers print them")
    layout.add_argument("--summary", action="store_true",
                        help="cross-dataset ranking: mean rank of each denoiser over datasets and levels")
    parser.add_argument("--show-failed", action="store_true",
                        help="list cells that did not finish (error, timeout, skipped) with their reason")
    parser.add_argument("--output", help="write to this file instead of stdout")
    parser.set_defaults(func=main)


def build_table(store, args) -> pd.DataFrame:
    """The table the flags ask for; UsageError (nothing written) for an unknown metric."""
    if args.wide:
        metrics = args.metrics or [m for m in lb.WIDE_METRICS if m in lb.scored_metrics(store)] or ["psnr"]
        return lb.wide(store, list(dict.fromkeys(metrics)))
    tables = [lb.ranking_summary(store, m) if args.summary else lb.leaderboard(store, m)
              for m in dict.fromkeys(args.metrics or ["psnr"])]
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def main(args) -> int:
    with open_existing(args.store) as store:
        table = build_table(store, args)
        provenance = lb.provenance(store)
        failed = lb.failed_cells(store)
    text = lb.render(table, args.format, provenance)
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(output)
    else:
        sys.stdout.write(text)
    if not failed.empty:
        counts = ", ".join(f"{n} {status}" for status, n in failed["status"].value_counts().sort_index().items())
        if args.show_failed:
            print(f"{len(failed)} cell(s) not ranked ({counts}):", file=sys.stderr)
            print(failed.to_string(index=False), file=sys.stderr)
        else:
            print(f"{len(failed)} cell(s) not ranked ({counts}); --show-failed lists them", file=sys.stderr)
    return 0
