"""``denoise-bench status``: runs, and cells done, failed (with errors) and pending."""

from __future__ import annotations

from bench.cli.options import add_store
from bench.data.content_hash import manifest_changes
from bench.store.database import open_existing
from bench.store.recomputed import recomputed_lines


def configure(parser) -> None:
    add_store(parser)
    parser.set_defaults(func=main)


def main(args) -> int:
    with open_existing(args.store) as store:
        runs = store.query("SELECT run_id, started, finished, status, device FROM runs ORDER BY started")
        counts = store.query("SELECT status, count(*) AS cells FROM cells GROUP BY status ORDER BY status")
        failed = store.query("SELECT denoiser, dataset, degradation AS noise, level, repetition, status, "
                             "error FROM cells WHERE status IN ('error', 'timeout') ORDER BY denoiser")
        pending = store.query("SELECT denoiser, dataset, degradation AS noise, level, repetition "
                              "FROM cells WHERE status = 'pending' ORDER BY denoiser")
        stale = stale_lines(store)
        recomputed = recomputed_lines(store)
    runs["status"] = runs["status"].replace("running", "running (or killed)")
    print(f"store: {args.store}\n\nruns:")
    print(runs.fillna("").to_string(index=False))
    print("\ncells:")
    print(counts.to_string(index=False) if not counts.empty else "  (none)")
    for title, table in (("failed", failed), ("pending", pending)):
        if not table.empty:
            print(f"\n{title}:")
            print(table.to_string(index=False))
    if stale:
        print("\nno longer counted:")
        print("\n".join(stale))
    if recomputed:
        print("\nrecomputed since the code changed:")
        print("\n".join(recomputed))
    return 0


def stale_lines(store) -> list[str]:
    """Why cells made on a dataset's earlier content no longer count, one line per dataset content."""
    lines = []
    superseded = store.superseded_cells()
    for dataset, cells in superseded.groupby("dataset", sort=True):
        contents = store.contents(dataset)
        current = contents[0]
        for content_id, part in cells.groupby("content_id", sort=False):
            earlier = next(c for c in contents if c["content_id"] == content_id)
            done = int((part["status"] == "done").sum())
            lines.append(f"  {dataset}: {done} done cell(s) were scored on files that have changed since "
                         f"({manifest_changes(earlier['manifest'], current['manifest'])}); "
                         "they no longer count, rerun to score the current files")
    return lines
