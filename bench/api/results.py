"""``Results``: what ``bench.evaluate`` returns, the tables of its run read from the store.

Every table covers the cells of the run's grid (computed now or reused from earlier runs),
read through the same functions as ``denoise-bench leaderboard``, ``compare`` and ``report``.
"""

from __future__ import annotations

import html
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from bench.api import boards
from bench.api.running import RunOutcome, summary_lines
from bench.reports import published, tables
from bench.store.database import open_existing
from bench.store.selection import Selection


class Results:
    """The run's leaderboard (``.table()``), per-image scores, comparisons, costs and report."""

    def __init__(self, outcome: RunOutcome, registry, rows: list, reference: list[str], folder=None):
        self.outcome, self.registry = outcome, registry
        self.store, self.run_id = outcome.store, outcome.run_id
        self.config = outcome.grid.config
        #: A suite's rows shown by their published numbers (not run).
        self.reference = reference
        #: In-process rows with no stable identity: computed and shown, never reused.
        self.uncached = {row.name: row.uncached for row in rows if row.uncached}
        self._folder = folder  # a temporary store (``store=":memory:"``) lives as long as this object

    @property
    def summary(self):
        return self.outcome.summary

    @property
    def exit_code(self) -> int:
        """What the command line would exit with: 1 where a cell failed, else 0."""
        return self.summary.exit_code

    def notes(self) -> list[str]:
        """The run's summary: counts by status, then each skipped or failed cell with its reason."""
        return summary_lines(self.summary, self.store)

    @contextmanager
    def _opened(self):
        with open_existing(self.store) as store:
            store.selection = Selection(run=self.run_id)
            yield store

    def table(self, metric: str | list[str] | None = None, published_numbers: bool = True) -> pd.DataFrame:
        """The leaderboard (the columns of ``leaderboard --format csv``), with the published
        number and delta where a row holds a paper's weights, and a suite's reference rows by
        their published numbers. ``.attrs["notes"]`` says what is not cached or not matched."""
        metrics = [metric] if isinstance(metric, str) else metric or list(self.config.metrics)
        with self._opened() as store:
            table = leaderboard(store, self.outcome.grid, self.registry, self.reference, metrics, published_numbers)
        table.attrs["notes"] = [*table.attrs["notes"], *(f"{name}: not cached ({why}); its cells are computed "
                                                         "on every call" for name, why in self.uncached.items())]
        return table

    def per_image(self, metric: str | None = None) -> pd.DataFrame:
        """One row per (cell, image, metric): the numbers the tables are made from."""
        with self._opened() as store:
            return boards.per_image(store, metric)

    def compare(self, a: str, b: str, metric: str = "psnr", bootstrap: int = 2000) -> pd.DataFrame:
        """A - B on the same noisy images: mean difference, paired bootstrap 95% CI over images,
        win rate and verdict (``denoise-bench compare``)."""
        with self._opened() as store:
            return boards.comparison(store, a, b, metric, bootstrap)[0]

    def costs(self) -> pd.DataFrame:
        """Per (dataset, denoiser): seconds per image as run, and the measured parameters, GMACs,
        latency and memory where the run measured them (``cost=True`` in the config)."""
        from bench.reports import cost_columns

        with self._opened() as store:
            cells = tables.latest_done_cells(store)
            timed = cells.assign(seconds_per_image=cells["denoise_seconds"] / cells["n_images"])
            table = (timed.groupby(["dataset", "denoiser"], sort=False)["seconds_per_image"].median()
                     .reset_index())
            if cost_columns.measured(store):
                table = table.merge(cost_columns.per_dataset(store), on=["dataset", "denoiser"], how="left")
        return table

    def report(self, path: str | Path = "results/report.html", galleries: int = 1) -> Path:
        """The HTML report of this run's cells (``denoise-bench report``)."""
        with self._opened() as store:
            return boards.report(store, self.registry, path, galleries=galleries)[0]

    def to_csv(self, path: str | Path) -> Path:
        """The leaderboard as CSV, its provenance beside it (``NAME.provenance.json``)."""
        table = self.table()
        with self._opened() as store:
            board = boards.Board(table, tables.provenance(store), pd.DataFrame())
        return boards.write_csv(board, path)

    def _repr_html_(self) -> str:
        from bench.reports.html_parts import html_table

        table = self.table()
        notes = "".join(f"<li>{html.escape(line)}</li>" for line in [*table.attrs["notes"], *self.notes()])
        return html_table(table) + (f"<ul>{notes}</ul>" if notes else "")

    def __repr__(self) -> str:
        from bench.reports import rendering

        table = self.table()
        return rendering.render(table, "table") + "\n".join(["", *table.attrs["notes"], *self.notes()])


def leaderboard(store, grid, registry, reference: list[str], metrics: list[str] | None = None,
                published_numbers: bool = True) -> pd.DataFrame:
    """A run's long leaderboard from its open store: published numbers and deltas beside its rows
    (``published_numbers``), and the ``reference`` rows (a suite's, not run) by their published
    numbers alone. ``.attrs["notes"]``: the published table's notes."""
    board = boards.leaderboard(store, metrics, "long", [] if published_numbers else None, registry)
    table = board.table
    if published_numbers and reference:
        levels = sorted({cell.level for cell in grid.cells if grid.degradations[cell.degradation][0].family == "gaussian"})
        extra = published.reference_rows(published.references(), registry, reference, list(grid.config.datasets),
                                         levels, grid.config.protocol, list(dict.fromkeys(table["metric"])))
        if not extra.empty:
            scales = {name: degradation.scale for name, (degradation, _) in grid.degradations.items()}
            extra = tables.add_level_label(extra, scales)
            table = pd.concat([table, extra.reindex(columns=table.columns)], ignore_index=True)
    table.attrs["notes"] = list(board.notes)
    return table
