"""Cells a run computed again because code under them changed (their keys moved), and what changed.

Each run records the harness's source hash, the libraries' versions and the plugins'
fingerprints (``bench.provenance.versions``); a store written by older code has none,
which reads as "harness code changed".
"""

from __future__ import annotations

import json

#: Per table: what its rows are called and the columns that name a cell apart from its key (the
#: same values under another key were recomputed).
IDENTITIES = {
    "cells": ("cell(s)", ["dataset", "degradation", "level", "denoiser", "repetition", "seed", "protocol",
                          "subset", "sigma_in"]),
    "sample_cells": ("sampler cell(s)", ["dataset", "score", "sampler", "chains", "init", "repetition", "seed"]),
}


def code_changes(before: dict, after: dict) -> list[str]:
    """What changed between two runs' recorded versions: harness code, library versions, plugins."""
    old, new = before.get("harness") or {}, after.get("harness") or {}
    changes = []
    if old.get("source") != new.get("source"):
        changes.append("harness code changed")
    old_libraries, new_libraries = old.get("libraries") or {}, new.get("libraries") or {}
    changes += [f"{name} {old_libraries.get(name)} -> {version}" for name, version in sorted(new_libraries.items())
                if old_libraries and old_libraries.get(name) != version]
    old_plugins, new_plugins = before.get("plugins") or {}, after.get("plugins") or {}
    changes += [f"plugin {name} changed" for name, fingerprint in sorted(new_plugins.items())
                if name in old_plugins and old_plugins[name] != fingerprint]
    return changes


def recomputed_lines(store) -> list[str]:
    """One line per run and kind of cell that recomputed done cells of earlier runs under new keys:
    how many, and why."""
    runs = store.query("SELECT run_id, versions FROM runs ORDER BY started, rowid")
    tables = {table: store.query(f"SELECT key, run_id, {', '.join(columns)} FROM {table} WHERE status = 'done'")
              for table, (_, columns) in IDENTITIES.items()}
    lines = []
    for i in range(1, len(runs)):
        changes = code_changes(json.loads(runs["versions"][i - 1] or "{}"), json.loads(runs["versions"][i] or "{}"))
        for table, (what, columns) in IDENTITIES.items():
            cells = tables[table]
            made = cells[cells["run_id"] == runs["run_id"][i]]
            earlier = cells[cells["run_id"].isin(runs["run_id"][:i])]
            again = made.merge(earlier[columns].drop_duplicates(), on=columns) if changes else made[:0]
            if len(again):
                lines.append(f"  run {runs['run_id'][i]}: {len(again)} {what} recomputed, their keys moved: "
                             f"{'; '.join(changes)}")
    return lines
