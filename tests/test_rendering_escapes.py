"""Every string a renderer prints is escaped for its format, headers included.

Names a plugin or a config may give (a denoiser, a dataset, a degradation, its level's
name, a metric) carry Markdown's ``|`` and raw HTML, LaTeX's ten special characters and
control characters; each format's own grammar is then checked: cells per row, nothing
unescaped.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from bench.noise.levels import LevelScale
from bench.reports import rendering

HOSTILE = "a|b<script>alert(1)</script>&_%#${}~^\\x [l](javascript:x) *e* `c`\x1b[31m"
LATEX_SPECIAL = "&%$#_{}~^\\"


def wide_table() -> pd.DataFrame:
    columns = pd.MultiIndex.from_tuples([("gaussian", 15 / 255, "psnr"), ("salt|&_%", 0.1, "ps|nr_%"),
                                         ("salt|&_%", 0.2, "ps|nr_%")], names=["noise", "level", "metric"])
    index = pd.MultiIndex.from_tuples([("set<12>|%", HOSTILE), ("set<12>|%", "plain")],
                                      names=["dataset", "denoiser"])
    table = pd.DataFrame([[30.0, 20.0, 19.0], [29.0, 21.0, 18.0]], index=index, columns=columns)
    table.attrs["higher_is_better"] = {"psnr": True, "ps|nr_%": True}
    table.attrs["level_scales"] = {"salt|&_%": LevelScale("p&_|", 1.0, {"latex": r"\input{/etc/passwd}"})}
    return table


def long_table() -> pd.DataFrame:
    return pd.DataFrame({"dataset": ["set|<b>"], "denoiser": [HOSTILE], "metric": ["ps_nr"], "rank": [1],
                         "mean": [30.5], "col|<i>%&": ["x"]})


def markdown_cells(line: str) -> list[str]:
    """GitHub's table grammar: a row split on pipes not escaped by a backslash."""
    return re.split(r"(?<!\\)\|", line.strip().strip("|").replace("\\\\", "\0"))


def unescaped(text: str, char: str, markdown: bool = False) -> bool:
    """Whether ``char`` occurs without a backslash before it (in Markdown, ``_`` inside a word cannot
    emphasise and is allowed)."""
    pattern = r"(?<!\\)(?:(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))" if char == "_" and markdown \
        else r"(?<!\\)" + re.escape(char)
    return re.search(pattern, text.replace("\\\\", "")) is not None


@pytest.mark.parametrize("make", [wide_table, long_table])
def test_markdown_keeps_one_cell_per_column_and_passes_no_html_or_markup(make):
    text = rendering.render(make(), "markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    widths = {len(markdown_cells(line)) for line in table}
    assert len(widths) == 1, text
    unbolded = re.sub(r"\*\*([0-9.]+)\*\*", r"\1", text)
    for char in "<>*`_~&$":
        assert not unescaped(unbolded, char, markdown=True), f"unescaped {char!r} in\n{text}"
    assert "](" not in text and "\x1b" not in text
    assert re.search(r"\*\*30\.(00|500)\*\*", text), "the best value is still in bold"


def latex_cells(line: str) -> list[str]:
    return re.split(r"(?<!\\)&", line.removesuffix(r"\\").replace(r"\textbackslash{}", "BS"))


@pytest.mark.parametrize("make", [wide_table, long_table])
def test_latex_escapes_every_special_character_in_cells_and_headers(make):
    text = rendering.render(make(), "latex")
    body = text.split(r"\toprule")[1].split(r"\bottomrule")[0]
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    counts = {sum(int(re.search(r"\\multicolumn\{(\d+)\}", cell).group(1)) if "multicolumn" in cell else 1
                  for cell in latex_cells(row)) for row in rows}
    assert len(counts) == 1, text
    plain = re.sub(r"\\(textbf|multicolumn|textbackslash|textasciitilde|textasciicircum|cmidrule)"
                   r"(\{[^{}]*\}|\([a-z]*\))*", "", body).replace(r"\\", "").replace(r"$\sigma$", "")
    for char in "%#_$~^<>|":
        assert not unescaped(plain, char), f"unescaped {char!r} in\n{text}"
    assert r"\input" not in text and "\x1b" not in text
    assert r"$\sigma$=15" in text or make is long_table, "a degradation's plain symbol stays LaTeX"


def test_terminal_table_and_provenance_show_control_characters_as_escapes():
    text = rendering.render(wide_table(), "table")
    assert "\x1b" not in text and r"\x1b[31m" in text
    prov = {"store": "s--> <!--\n% x", "cells": 1, "generated": "now", "run_ids": ["r"], "devices": [],
            "seeds": [], "protocols": [], "runs": [{"versions": {"platform": "p\nq"}}]}
    markdown = rendering.render(long_table(), "markdown", prov)
    comment = markdown.split("<!--\n", 1)[1].split("\n-->\n", 1)[0]
    assert "-->" not in comment and "\n% x" not in comment
    latex = rendering.render(long_table(), "latex", prov)
    assert all(line.startswith("%") for line in latex.split(r"\begin{tabular}")[0].splitlines())


def test_escapes_do_not_touch_ordinary_names():
    assert rendering.markdown_escape("skimage-gray[crop=256]") == "skimage-gray[crop=256]"
    assert rendering.latex_escape("bm3d") == "bm3d"
    assert rendering.printable("σ=15") == "σ=15"
