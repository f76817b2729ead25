"""Leaderboard tables as text: an aligned table, CSV, Markdown, LaTeX (booktabs) and JSON.

Markdown, LaTeX and JSON carry their provenance (``bench.reports.tables.provenance``);
CSV stays plain RFC 4180. Wide tables get one column per (noise, level, metric),
the best value per column in bold. Every string a renderer prints (cells, headers,
provenance lines) is escaped for its format: Markdown's ``|``, inline markup and raw
HTML, LaTeX's ten special characters, and control characters in every text format
(CSV and JSON are escaped by their own writers)."""

from __future__ import annotations

import html
import json
import re
import unicodedata

import numpy as np
import pandas as pd

from bench.errors import UsageError
from bench.noise import levels
from bench.noise.levels import LevelScale

FORMATS = ("table", "csv", "markdown", "latex", "json")
#: Decimals shown per metric (tables keep full precision in CSV and JSON).
DECIMALS = {"psnr": 2, "ssim": 4}
#: Versions named in the provenance header (all of them are in JSON).
HEADER_LIBRARIES = ("denoise-bench", "torch", "deepinv", "scikit-image", "numpy", "python")


def provenance_lines(prov: dict) -> list[str]:
    """The provenance as a few readable lines (for comment headers and footers)."""
    versions: dict[str, list[str]] = {}
    plugins: dict[str, list[str]] = {}
    for run in prov["runs"]:
        for name in HEADER_LIBRARIES:
            value = run["versions"].get(name)
            if value and value not in versions.setdefault(name, []):
                versions[name].append(value)
        for name, value in (run["versions"].get("plugins") or {}).items():
            if str(value) not in plugins.setdefault(name, []):
                plugins[name].append(str(value))

    def join(found):
        return ", ".join(f"{k} {'|'.join(v)}" for k, v in found.items()) or "unknown"

    weights = {label: digest for run in prov["runs"] for label, digest in (run["versions"].get("weights") or {}).items()}
    platform = sorted({r["versions"].get("platform") for r in prov["runs"] if r["versions"].get("platform")})
    return [f"denoise-bench results from {prov['store']} ({prov['cells']} cells), generated {prov['generated']}",
            f"runs: {', '.join(prov['run_ids']) or 'none'}",
            f"versions: {join(versions)}",
            f"plugins: {join(plugins)}",
            f"device: {', '.join(prov['devices']) or 'unknown'}; platform: {', '.join(platform) or 'unknown'}; "
            f"seed: {', '.join(map(str, prov['seeds'])) or 'unknown'}; "
            f"protocol: {', '.join(prov['protocols']) or 'unknown'}"] + \
        ([f"weights: {', '.join(f'{k}@{v}' for k, v in sorted(weights.items()))}"] if weights else [])


# rendering --------------------------------------------------------------------------------

def flat_name(column: tuple, scales: dict[str, LevelScale]) -> str:
    """``('gaussian', 0.0588, 'psnr')`` -> ``gaussian sigma=15 psnr`` (CSV and JSON headers)."""
    noise, level, metric = column
    return f"{noise} {levels.label(scales, noise, level)} {metric}"


def is_wide(table: pd.DataFrame) -> bool:
    return isinstance(table.columns, pd.MultiIndex)


def flatten(table: pd.DataFrame) -> pd.DataFrame:
    """A wide table as plain columns: dataset, denoiser, then one per (noise, level, metric)."""
    flat = table.copy()
    flat.columns = [flat_name(c, table.attrs.get("level_scales", {})) for c in flat.columns]
    flat = flat.reset_index()
    flat.attrs = {}
    return flat


def best_mask(table: pd.DataFrame) -> pd.DataFrame:
    """True where a value is the best of its column within its dataset (or rank 1 in a long table)."""
    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    if is_wide(table):
        higher = table.attrs.get("higher_is_better", {})
        for column in table.columns:
            if not pd.api.types.is_numeric_dtype(table[column]):
                continue
            values = table[column].groupby(level="dataset")
            best = values.transform("max" if higher.get(column[2], True) else "min")
            mask[column] = table[column].notna() & (table[column] == best)
    elif {"rank", "mean"} <= set(table.columns):
        mask["mean"] = table["rank"] == 1
    elif "mean_rank" in table.columns:
        by = table["metric"] if "metric" in table.columns else pd.Series(0, index=table.index)
        mask["mean_rank"] = table["mean_rank"] == table["mean_rank"].groupby(by).transform("min")
    return mask


def plain_value(value):
    """A JSON-ready Python value: numpy scalars unwrapped, NaN as null (full precision)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def float_text(values: pd.Series, places: pd.Series | int) -> pd.Series:
    """Floats with a fixed number of decimals (per row when ``places`` is a Series), NaN blank;
    a non-zero value that would read 0.000 or -0.000 gets two significant digits (``-3.2e-05``)."""
    places = places if isinstance(places, pd.Series) else pd.Series(places, index=values.index)
    return pd.Series([float_cell(v, p) for v, p in zip(values, places)], index=values.index, dtype=object)


def float_cell(value: float, places: int) -> str:
    if pd.isna(value):
        return ""
    text = f"{value:.{places}f}"
    if value != 0 and float(text) == 0:
        return f"{value:.2g}"
    return text


def formatted(table: pd.DataFrame, style: str) -> pd.DataFrame:
    """Cells as strings for a style (table, markdown, latex, html): the best in bold, escaped."""
    per_row = (table["metric"].map(lambda m: DECIMALS.get(m, 3)) if "metric" in table.columns
               else pd.Series(3, index=table.index))
    mask = best_mask(table)
    decimals, na_text = table.attrs.get("decimals", {}), table.attrs.get("na_text", {})  # see cost_columns
    shown = pd.DataFrame(index=table.index)
    for column in table.columns:
        values = table[column]
        key = column[2] if isinstance(column, tuple) else column
        if column == "level":
            text = values.map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
        elif pd.api.types.is_integer_dtype(values):
            text = values.map(str)
        elif pd.api.types.is_float_dtype(values) and key in decimals:
            text = float_text(values, decimals[key]).where(values.notna(), na_text.get(key, ""))
        elif pd.api.types.is_float_dtype(values):
            if isinstance(column, tuple):
                places = DECIMALS.get(column[2], 3)
            else:
                places = 2 if column in ("mean_rank", "mean_rank_tied") else per_row
            text = float_text(values, places)
        else:
            text = values.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
        if style == "latex":
            text = text.where(mask[column], text.map(latex_escape))
            text = text.where(~mask[column], text.map(lambda t: rf"\textbf{{{latex_escape(t)}}}"))
        elif style == "markdown":
            text = text.map(markdown_escape)
            text = text.where(~mask[column], "**" + text + "**")
        elif style == "table":
            text = text.map(printable)
        elif style == "html":
            text = text.map(html.escape)
            text = text.where(~mask[column], "<strong>" + text + "</strong>")
        shown[column] = text
    if is_wide(table):
        shown.columns = pd.MultiIndex.from_tuples(shown.columns)
    return shown


def printable(text) -> str:
    """Control and invisible format characters as escapes (``\\x1b``, ``\\n``): a name can neither
    rewrite a terminal nor end a comment line."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c)[0] == "C" else c for c in str(text))


#: Characters that can start Markdown inline markup, math (GitHub renders ``$...$``) or raw HTML
#: (all may be backslash-escaped); ``_`` only where it can (not inside a word: ``rank_tied`` stays).
MARKDOWN_SPECIAL = re.compile(r"([\\`*|<>~&$])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def markdown_escape(text) -> str:
    """Plain text for a Markdown table cell: markup, raw HTML and ``|`` shown as typed."""
    escaped = MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(0), printable(text))
    return escaped.replace("](", "]\\(")


#: A level symbol a degradation may give as LaTeX source (``$\\sigma$``, ``$w$``, ``$\\sigma_n$``: a Greek
#: letter or plain letters, one subscript); anything else is escaped.
GREEK = ("alpha|beta|gamma|Gamma|delta|Delta|epsilon|varepsilon|zeta|eta|theta|Theta|kappa|lambda|Lambda|mu|nu|"
         "xi|Xi|pi|Pi|rho|sigma|Sigma|tau|phi|Phi|varphi|chi|psi|Psi|omega|Omega")
LATEX_SYMBOL = re.compile(rf"\$(\\({GREEK})|[A-Za-z]+)(_[A-Za-z0-9]|_\{{[A-Za-z0-9]+\}})?\$|[A-Za-z]+")


def latex_level(scales: dict[str, LevelScale], noise: str, level) -> str:
    """A level's LaTeX label: the degradation's own symbol when it is a plain ``$\\name$``, else escaped."""
    symbol = levels.scale_of(scales, noise).symbols.get("latex")
    if symbol is not None and LATEX_SYMBOL.fullmatch(symbol):
        return levels.label(scales, noise, level, "latex")
    return latex_escape(levels.label(scales, noise, level, "ascii"))


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text (control characters shown as escapes first)."""
    out = []
    for char in printable(text):
        out.append({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                    "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
                    "|": r"\textbar{}"}.get(char, char))
    return "".join(out)


def header_names(table: pd.DataFrame, style: str) -> list[str]:
    """One header string per column of a wide table, for one-line-header formats."""
    scales = table.attrs.get("level_scales", {})
    return [f"{noise} {levels.label(scales, noise, level, style)} {metric}" for noise, level, metric in table.columns]


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs tabular; wide tables get a three-row header (noise, level, metric)."""
    shown = formatted(table, "latex")
    if is_wide(table):
        index = table.index.to_frame(index=False)
        lead = [latex_escape(c) for c in index.columns]
        body = [[latex_escape(v) for v in row] + list(values)
                for row, values in zip(index.itertuples(index=False), shown.itertuples(index=False))]
        header = [_span_row(lead, [c[0] for c in table.columns], lambda n: latex_escape(n)),
                  _cmidrules(len(lead), [c[0] for c in table.columns]),
                  _span_row([""] * len(lead), [(c[0], c[1]) for c in table.columns],
                            lambda c: latex_level(table.attrs.get("level_scales", {}), c[0], c[1])),
                  " & ".join([""] * len(lead) + [latex_escape(c[2].upper()) for c in table.columns]) + r" \\"]
        align = "l" * len(lead) + "r" * len(table.columns)
    else:
        header = [" & ".join(latex_escape(c) for c in shown.columns) + r" \\"]
        body = [list(row) for row in shown.itertuples(index=False)]
        align = "".join("r" if pd.api.types.is_numeric_dtype(table[c]) else "l" for c in shown.columns)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", *header, r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def spans(keys: list) -> list[tuple[object, int]]:
    """Runs of equal neighbouring keys as (key, count): the column spans of a grouped header."""
    runs: list[tuple[object, int]] = []
    for key in keys:
        if runs and runs[-1][0] == key:
            runs[-1] = (key, runs[-1][1] + 1)
        else:
            runs.append((key, 1))
    return runs


def _span_row(lead: list[str], keys: list, label) -> str:
    """A LaTeX header row where runs of equal keys become one \\multicolumn."""
    cells = list(lead) + [label(key) if count == 1 else rf"\multicolumn{{{count}}}{{c}}{{{label(key)}}}"
                          for key, count in spans(keys)]
    return " & ".join(cells) + r" \\"


def _cmidrules(offset: int, keys: list) -> str:
    """booktabs rules under each spanned group of a header row."""
    rules, start = [], offset + 1
    for _, count in spans(keys):
        rules.append(rf"\cmidrule(lr){{{start}-{start + count - 1}}}")
        start += count
    return " ".join(rules)


def render(table: pd.DataFrame, fmt: str, provenance: dict | None = None) -> str:
    """The table as text in one of FORMATS (CSV and JSON keep full precision).

    With ``provenance`` (``bench.reports.tables.provenance``): a comment header in Markdown and
    LaTeX, a ``provenance`` field in JSON, a footer in the terminal table; CSV
    stays plain, whatever is passed.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    lines = provenance_lines(provenance) if provenance else []
    plain = flatten(table) if is_wide(table) else table
    if fmt == "csv":  # plain RFC 4180: provenance goes to a sidecar file (see the CLI)
        return plain.to_csv(index=False)
    if fmt == "json":
        rows = [{k: plain_value(v) for k, v in row.items()} for row in plain.to_dict("records")]
        if provenance is None:
            return json.dumps(rows, indent=2) + "\n"
        return json.dumps({"provenance": provenance, "rows": rows}, indent=2) + "\n"
    lines = [printable(line) for line in lines]
    if fmt == "latex":
        return "".join(f"% {line}\n" for line in lines) + to_latex(table)
    escape = markdown_escape if fmt == "markdown" else printable
    shown = formatted(table, "markdown" if fmt == "markdown" else "table")
    align = ["right" if pd.api.types.is_numeric_dtype(table[c]) else "left" for c in table.columns
             if c in shown.columns]
    if is_wide(table):
        shown.columns = header_names(table, "unicode")
        index = table.index.to_frame(index=False).map(escape)
        shown = pd.concat([index, shown.reset_index(drop=True)], axis=1)
        align = ["left"] * table.index.nlevels + align
    shown.columns = [escape(c) for c in shown.columns]
    text = shown.to_markdown(index=False, disable_numparse=True, colalign=align,
                             tablefmt="github" if fmt == "markdown" else "simple") + "\n"
    if fmt == "markdown":  # "--" would end the comment early
        return ("<!--\n" + "\n".join(line.replace("--", "- -") for line in lines) + "\n-->\n"
                if lines else "") + text
    return text + "".join(f"  {line}\n" for line in lines)
