"""``denoise-bench report``: one self-contained HTML file with tables, figures and galleries."""

from __future__ import annotations

import json
import sys

from bench.cli.options import add_plugins, add_store
from bench.errors import UsageError
from bench.files import output_target
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.reports import html
from bench.store import selection
from bench.store.database import open_existing

DEFAULT_OUTPUT = "results/report.html"


def configure(parser) -> None:
    parser.description = "One HTML file with everything embedded; it opens offline."
    add_store(parser)
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help=f"HTML file (default {DEFAULT_OUTPUT})")
    parser.add_argument("--metric", action="append", dest="metrics", metavar="METRIC",
                        help="metrics to show, repeatable (default psnr and ssim)")
    parser.add_argument("--galleries", type=int, default=1, metavar="N",
                        help="gallery images per (dataset, noise, level) among the saved ones (default 1; 0: none)")
    parser.add_argument("--figures", metavar="DIR", help="also write every figure as PNG and SVG into DIR")
    add_plugins(parser, help="local plugin file providing a dataset to reload for galleries (repeatable)")
    selection.add_arguments(parser)
    parser.set_defaults(func=main)


def run_plugins(store) -> list[str]:
    """Local plugin files the store's runs used (their datasets reload for galleries)."""
    files = []
    for text in store.query("SELECT config FROM runs")["config"]:
        files += json.loads(text or "{}").get("plugins") or []
    return list(dict.fromkeys(files))


def main(args) -> int:
    if args.galleries < 0:
        raise UsageError(f"--galleries must be >= 0, got {args.galleries}")
    output_target(args.output)  # a folder or socket is refused before any figure is written
    with open_existing(args.store) as store:
        store.selection = selection.from_args(args)
        registry = Registry(get_plugin_set(list(dict.fromkeys(run_plugins(store) + args.plugins))))
        text = html.build(store, registry, args.metrics, args.galleries, args.figures)
    path = html.write(text, args.output)
    print(f"report: {path} ({len(text) / 1e6:.1f} MB)", file=sys.stderr)
    return 0
