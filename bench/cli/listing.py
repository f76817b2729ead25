"""``denoise-bench list``: every registered name, with its plugin and description."""

from __future__ import annotations

import json

import pandas as pd

from bench.cli.options import add_data_arguments, add_plugins
from bench.plugins import get_plugin_set
from bench.registry import KINDS, Registry

WHAT = KINDS + ("plugins", "suites")


def configure(parser) -> None:
    parser.add_argument("what", nargs="?", choices=WHAT + ("all",), default="all")
    add_plugins(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_data_arguments(parser, offline=False)
    parser.set_defaults(func=main)


def plugin_rows(registry: Registry) -> list[dict]:
    return [{"name": i.name, "source": i.source, "version": i.version, "fingerprint": i.fingerprint,
             "hooks": i.hooks, "status": "broken" if i.broken else "ok", "error": i.error}
            for i in registry.plugins.infos.values()]


def cache_column(entry) -> str:
    """For names fetched on first use: whether they are in the data folder, and their size."""
    fetchable = entry.metadata.get("fetch")
    if fetchable is None:
        return ""
    cached, size = fetchable.status()
    unpinned = getattr(fetchable, "unpinned", list)()  # release weights whose hash only a download recorded
    note = f", {len(unpinned)} unpinned" if unpinned else ""
    return f"{'cached' if cached else 'not cached'}, {size / 1e6:.1f} MB{note}" if size else "not cached"


def entry_rows(registry: Registry, kind: str) -> list[dict]:
    return [{"name": e.name, "plugin": e.plugin, "description": e.description,
             **{k: v for k, v in e.metadata.items() if k not in ("description", "fetch")},
             **({"cached": cache_column(e)} if "fetch" in e.metadata else {})}
            for e in registry.entries(kind)]


def suite_rows() -> list[dict]:
    """Each named suite: its grid and its cost (cells; denoiser calls where the sets' sizes are pinned)."""
    from bench.api.suites import suites_table

    table = suites_table()
    return table.astype(object).where(table.notna(), None).to_dict("records")


def rows_of(registry: Registry, kind: str) -> list[dict]:
    if kind == "plugins":
        return plugin_rows(registry)
    if kind == "suites":
        return suite_rows()
    return entry_rows(registry, kind)


def main(args) -> int:
    registry = Registry(get_plugin_set(args.plugins))
    kinds = WHAT if args.what == "all" else (args.what,)
    tables = {kind: rows_of(registry, kind) for kind in kinds}
    if args.json:
        print(json.dumps(tables if args.what == "all" else tables[args.what], indent=2, default=str))
        return 0
    for kind, rows in tables.items():
        print(f"{kind}:")
        if not rows:
            print("  (none)\n")
            continue
        frame = pd.DataFrame(rows)
        columns = (["name", "status", "source", "hooks", "error"] if kind == "plugins"
                   else ["suite", "datasets", "noise", "protocol", "cells", "denoiser calls", "description"]
                   if kind == "suites"
                   else ["name", "plugin"] + ["cached"] * ("cached" in frame) + ["description"])
        frame = frame[columns].astype(object).fillna("")
        print(frame.to_markdown(index=False, tablefmt="simple"), end="\n\n")
    return 0
