"""``denoise-bench leaderboard``: the ranked table for one metric, in several formats."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import leaderboard as lb
from bench.config import DEFAULT_STORE
from bench.store import open_existing


def configure(sub) -> None:
    parser = sub.add_parser("leaderboard", help="rank denoisers from a results store")
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")
    parser.add_argument("--metric", default="psnr", help="metric to rank by (default psnr)")
    parser.add_argument("--format", choices=lb.FORMATS, default="table")
    parser.add_argument("--output", help="write to this file instead of stdout")
    parser.set_defaults(func=main)


def main(args) -> int:
    with open_existing(args.store) as store:
        table = lb.leaderboard(store, args.metric)
        failed = lb.failed_cells(store)
    text = lb.render(table, args.format)
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(output)
    else:
        sys.stdout.write(text)
    if not failed.empty:
        print(f"{len(failed)} failed cell(s), not ranked:", file=sys.stderr)
        print(failed.to_string(index=False), file=sys.stderr)
    return 0
