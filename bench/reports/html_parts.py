"""Pieces of an HTML page: sections, tables, embedded figures (the report and a notebook's view)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

import pandas as pd

from bench.noise import levels
from bench.reports import figures, rendering


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)

    def html(self) -> str:
        anchor = html.escape(self.title.lower().replace(" ", "-"))
        return f'<section id="{anchor}">\n<h2>{html.escape(self.title)}</h2>\n' + "\n".join(self.parts) + "\n</section>"


def html_table(table: pd.DataFrame) -> str:
    """A leaderboard as an HTML table: grouped header for wide tables, the best in bold."""
    shown = rendering.formatted(table, "html")
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns if c in shown.columns]
    if rendering.is_wide(table):
        index = table.index.to_frame(index=False)
        keys = list(table.columns)
        scales = table.attrs.get("level_scales", {})
        head = [
            [f'<th rowspan="3">{html.escape(c)}</th>' for c in index.columns]
            + [f'<th colspan="{n}">{html.escape(str(k))}</th>' for k, n in rendering.spans([c[0] for c in keys])],
            [f'<th colspan="{n}">{html.escape(levels.label(scales, k[0], k[1], "unicode"))}</th>'
             for k, n in rendering.spans([(c[0], c[1]) for c in keys])],
            [f"<th>{html.escape(c[2].upper())}</th>" for c in keys]]
        body = [[f"<td>{html.escape(str(v))}</td>" for v in row]
                + [_td(v, True) for v in values]
                for row, values in zip(index.itertuples(index=False), shown.itertuples(index=False))]
    else:
        head = [[f"<th>{html.escape(str(c))}</th>" for c in shown.columns]]
        body = [[_td(v, num) for v, num in zip(row, numeric)] for row in shown.itertuples(index=False)]
    rows = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in body)
    header = "\n".join("<tr>" + "".join(cells) + "</tr>" for cells in head)
    return f"<table>\n<thead>\n{header}\n</thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def _td(text: str, numeric: bool) -> str:
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def plain_table(frame: pd.DataFrame) -> str:
    """Any small frame as an escaped HTML table (provenance, failed cells)."""
    return frame.to_html(index=False, escape=True, na_rep="", border=0)


def image(png: bytes, alt: str, caption: str = "") -> str:
    """A figure embedded as a base64 PNG data URI."""
    data = base64.b64encode(png).decode("ascii")
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">{text}</figure>'


def save_figure(fig, folder, stem: str) -> None:
    if folder is not None:
        figures.save_figure(fig, folder, stem)
