"""``denoise-bench compare A B``: paired differences on the same noisy images, with a bootstrap CI."""

from __future__ import annotations

import sys

import pandas as pd

from bench.cli.options import add_store
from bench.errors import UsageError
from bench.reports import compare, rendering, tables
from bench.specs import Spec, parse_spec
from bench.store import selection
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
    selection.add_arguments(parser)
    parser.set_defaults(func=main)


def rows_of(scores: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one denoiser: its exact name, or its default-VST row on Poisson groups."""
    try:
        spec = parse_spec(name, "denoiser")
    except UsageError:
        spec = None
    names = {name}
    if spec is not None and "vst" not in spec.params:
        names.add(Spec(spec.name, {**spec.params, "vst": "anscombe"}).label)
    found = scores[scores["denoiser"].isin(names)]
    exact = found.groupby(compare.COMPARE_GROUP, dropna=False)["denoiser"].transform(lambda s: (s == name).any())
    return found[(found["denoiser"] == name) | ~exact].assign(denoiser=name)


def main(args) -> int:
    if args.a == args.b:
        raise UsageError("A and B are the same denoiser; name two different rows")
    if args.bootstrap < 100:
        raise UsageError(f"--bootstrap must be >= 100, got {args.bootstrap}")
    with open_existing(args.store) as store:
        store.selection = selection.from_args(args)
        higher = tables.check_metric(store, args.metric)
        scores = tables.scores_for(store, args.metric)
        provenance = tables.provenance(store)
        scales = store.level_scales()
    rows = {name: rows_of(scores, name) for name in (args.a, args.b)}
    for name, found in rows.items():
        if found.empty:
            known = ", ".join(sorted(scores["denoiser"].unique()))
            raise UsageError(f"no {args.metric} scores for denoiser {name!r}; rows: {known}")
    pairs = compare.paired(pd.concat(rows.values()), args.a, args.b)
    if pairs.empty:
        raise UsageError(f"{args.a!r} and {args.b!r} never ran on the same noisy images")
    table = tables.add_level_label(compare.compare(pairs, higher, n_boot=args.bootstrap), scales)
    table = tables.without_default_protocol(table)
    direction = "higher" if higher else "lower"
    sys.stdout.write(rendering.render(table, args.format, provenance if args.format != "table" else None))
    if args.format == "table":
        print(f"\nA = {args.a}, B = {args.b}; diff = A - B in {args.metric} ({direction} is better); "
              f"95% CI: paired bootstrap over images ({args.bootstrap} resamples); "
              "win_rate: share of noisy images where A is better.")
    return 0
