"""Cells a run computed again because code under them changed (their keys moved), and what changed.

Each run records the harness's source hash, the libraries' versions and the plugins'
fingerprints (``bench.provenance.versions``); a store written by older code has none,
which reads as "harness code changed".
"""

from __future__ import annotations

import json

#: Columns that name a cell apart from its key: the same values under another key were recomputed.
CELL_IDENTITY = ["dataset", "degradation", "level", "denoiser", "repetition", "seed", "protocol", "subset",
                 "sigma_in"]


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
    """One line per run that recomputed done cells of earlier runs under new keys: how many, and why."""
    runs = store.query("SELECT run_id, versions FROM runs ORDER BY started, rowid")
    cells = store.query(f"SELECT key, run_id, {', '.join(CELL_IDENTITY)} FROM cells WHERE status = 'done'")
    lines = []
    for i in range(1, len(runs)):
        run_id = runs["run_id"][i]
        changes = code_changes(json.loads(runs["versions"][i - 1] or "{}"), json.loads(runs["versions"][i] or "{}"))
        made = cells[cells["run_id"] == run_id]
        earlier = cells[cells["run_id"].isin(runs["run_id"][:i])]
        if not changes or made.empty or earlier.empty:
            continue
        again = made.merge(earlier[CELL_IDENTITY].drop_duplicates(), on=CELL_IDENTITY)
        if len(again):
            lines.append(f"  run {run_id}: {len(again)} cell(s) recomputed, their keys moved: {'; '.join(changes)}")
    return lines
