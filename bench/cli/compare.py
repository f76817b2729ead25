"""``denoise-bench compare A B``: paired differences on the same noisy images, with a bootstrap CI."""

from __future__ import annotations

import sys

from bench.api import boards
from bench.cli.options import add_selection, add_store, selection_of
from bench.reports import compare, rendering, tables
from bench.store.database import open_existing


def configure(parser) -> None:
    parser.description = ("Differences A - B on the same noisy images (dataset, noise, level, seed, "
                    "repetition, image), averaged per image; a paired percentile-bootstrap 95% CI "
                    "over images and the share of images A wins. A name without [vst=...] also "
                    "matches its default Poisson row (name[vst=anscombe]).")
    parser.add_argument("a", metavar="A", help="denoiser row name, as in the leaderboard")
    parser.add_argument("b", metavar="B", help="denoiser row name, as in the leaderboard")
    parser.add_argument("--metric", default="psnr", help="metric (default psnr)")
    add_store(parser)
    parser.add_argument("--format", choices=rendering.FORMATS, default="table")
    parser.add_argument("--bootstrap", type=int, default=compare.N_BOOT, metavar="N",
                        help=f"bootstrap resamples (default {compare.N_BOOT})")
    add_selection(parser)
    parser.set_defaults(func=main)


def main(args) -> int:
    with open_existing(args.store) as store:
        store.selection = selection_of(args)
        table, higher = boards.comparison(store, args.a, args.b, args.metric, args.bootstrap)
        provenance = tables.provenance(store)
    direction = "higher" if higher else "lower"
    sys.stdout.write(rendering.render(table, args.format, provenance if args.format != "table" else None))
    if args.format == "table":
        print(f"\nA = {args.a}, B = {args.b}; diff = A - B in {args.metric} ({direction} is better); "
              f"95% CI: paired bootstrap over images ({args.bootstrap} resamples); "
              "win_rate: share of noisy images where A is better.")
    return 0
