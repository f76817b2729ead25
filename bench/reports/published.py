"""Published references beside a leaderboard: the papers' PSNR/SSIM, and each row's difference.

``bench/data/published-awgn.csv`` (columns ``dataset, channels, sigma_255,
method, psnr, ssim, source``, and ``protocol``) holds what BM3D, DnCNN, FDnCNN,
FFDNet and DRUNet report on the standard sets under Gaussian noise; a user's
table in the same columns adds to it (and wins where both give the same
dataset, sigma, method and protocol; a table without ``protocol`` means ``paper``).
A delta means something only like with like, so a row matches a reference when

- its dataset label is the table's dataset (``urban100[gray=1]`` is
  ``urban100-gray``), its noise Gaussian with sigma * 255 equal to ``sigma_255``,
  and it covers the whole set;
- it ran under the reference's protocol (``paper``, ``clip``, ``uint8``; never ``default``);
- its denoiser is the reference's method with the paper's own weights: the
  ``published_as`` of its registration, declared by rows that load the authors'
  files (CBM3D counts as BM3D, whose ``bm3d`` row runs bm3d_rgb on colour;
  CDnCNN-B as DnCNN-B), and run without parameters beyond ``color=`` (a tuned
  or ``clip=true`` row is another method). A family's rows (``deepinv:DnCNN``)
  carry the library's own training, never a paper's, whatever they declare.

``why_unmatched`` gives, for rows that get no reference, the one-line reason.
"""

from __future__ import annotations

from importlib import resources
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.datasets import split_shown_name
from bench.errors import UsageError
from bench.noise.sigma_in import BLIND, ORACLE
from bench.registry import Registry
from bench.reports.tables import base_row
from bench.specs import parse_spec

COLUMNS = ("dataset", "channels", "sigma_255", "method", "psnr", "ssim", "source")
#: Optional column: the noisy-input convention of the paper's test script (default ``paper``).
PROTOCOL = "protocol"
PAPER_PROTOCOL = "paper"
KEY = ["dataset", "sigma_255", "method", PROTOCOL]
#: Row parameters that only pick among the paper's own models (gray or colour).
SAME_METHOD_PARAMS = frozenset({"color"})
METRICS = ("psnr", "ssim")
#: Leaderboard dataset labels whose published name differs.
DATASET_ALIASES = {"urban100[gray=1]": "urban100-gray"}
#: Papers name BM3D on colour images CBM3D (the ``bm3d`` row runs bm3d_rgb there).
METHOD_ALIASES = {"CBM3D": "BM3D", "CDnCNN-B": "DnCNN-B"}
#: Sigma * 255 within this of a reference's level matches it.
LEVEL_TOLERANCE = 1e-6
SHIPPED = "published-awgn.csv"


def read_table(path: Path | str, label: str) -> pd.DataFrame:
    """One reference table, checked; UsageError naming what is wrong."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise UsageError(f"published table not found: {label}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"published table {label} is not CSV: {' '.join(str(exc).split())}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise UsageError(f"published table {label} lacks column(s) {', '.join(missing)}; "
                         f"expected {', '.join(COLUMNS)}")
    for column in ("sigma_255", "psnr", "ssim"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table[column].notna() & values.isna()
        if bad.any():
            raise UsageError(f"published table {label}: {column} {table[column][bad].iloc[0]!r} "
                             f"(line {bad.idxmax() + 2}) is not a number")
        table[column] = values
    table["source"] = table["source"].fillna("").astype(str)
    if PROTOCOL not in table.columns:
        table[PROTOCOL] = PAPER_PROTOCOL
    table[PROTOCOL] = table[PROTOCOL].fillna(PAPER_PROTOCOL).astype(str)
    return table[list(COLUMNS) + [PROTOCOL]]


def references(files: list[str] = ()) -> pd.DataFrame:
    """The shipped table plus users' tables (a later table wins on the same dataset, sigma, method)."""
    shipped = resources.files("bench") / "data" / SHIPPED
    with resources.as_file(shipped) as path:
        tables = [read_table(path, SHIPPED)]
    tables += [read_table(Path(f).expanduser(), f) for f in files]
    table = pd.concat(tables, ignore_index=True)
    table["method"] = table["method"].replace(METHOD_ALIASES)
    return table.drop_duplicates(KEY, keep="last")


def method_of(registry: Registry, row: str) -> tuple[str | None, str]:
    """(the published method a leaderboard row stands for, or None; why not, if None)."""
    try:
        spec = parse_spec(row)
        entry = registry.get("denoisers", spec.name)
    except UsageError:
        return None, f"{row}: no such denoiser is loaded"
    declared = entry.metadata.get("published_as")
    if not declared:
        return None, f"{row}: declares no published counterpart"
    if entry.is_family:
        return None, (f"{row}: a {entry.name} row carries the library's own weights and settings, "
                      "not the paper's")
    variant = sorted(set(spec.params) - SAME_METHOD_PARAMS)
    if variant:
        return None, f"{row}: {', '.join(variant)}= makes it a variant of {declared}, not the published model"
    return declared, ""


def counterpart(registry: Registry, row: str) -> str | None:
    """The published method a leaderboard row stands for, or None."""
    return method_of(registry, row)[0]


def set_sizes() -> dict[str, int]:
    """Images in each named set, so rows over part of a set (--limit-images) do not match."""
    from bench.data.standard import PINNED_SETS, URBAN100_IMAGES

    sizes = {s.name: len(s.manifest().files) for s in PINNED_SETS}
    sizes.update({"urban100": URBAN100_IMAGES, "urban100-gray": URBAN100_IMAGES})
    return sizes


def add_published(table: pd.DataFrame, refs: pd.DataFrame, registry: Registry) -> pd.DataFrame:
    """``published``, ``delta`` (mean - published) and ``source`` columns for a long leaderboard.

    ``out.attrs["published_notes"]``: one line per reason a reported method's row got no number.
    """
    sizes = set_sizes()
    protocols = table["protocol"] if "protocol" in table.columns else pd.Series("default", index=table.index)
    given = table["sigma_in"] if "sigma_in" in table.columns else pd.Series(ORACLE, index=table.index)
    bases = [base_row(row, sigma_in) for row, sigma_in in zip(table["denoiser"], given)]
    methods = {base: method_of(registry, base) for base in dict.fromkeys(bases)}
    published, sources, notes = [], [], {}
    for row, protocol, sigma_in, base in zip(table.itertuples(index=False), protocols, given, bases):
        shown, subset = split_shown_name(row.dataset)
        dataset = DATASET_ALIASES.get(shown, shown)
        level = (refs["dataset"] == dataset) & ((refs["sigma_255"] - row.level * 255).abs() < LEVEL_TOLERANCE) \
            if row.noise == "gaussian" and row.metric in METRICS else pd.Series(False, index=refs.index)
        method, why = methods[base]
        reported = refs[level & (refs["method"] == method)]
        match = reported[reported[PROTOCOL] == protocol]
        whole = subset is None and (dataset not in sizes or row.n % sizes[dataset] == 0)
        true_level = sigma_in in (ORACLE, BLIND)
        value = match[row.metric].iloc[0] if len(match) and whole and true_level \
            and pd.notna(match[row.metric].iloc[0]) else np.nan
        published.append(value)
        sources.append(match["source"].iloc[0] if not np.isnan(value) else "")
        if method is None and level.any() and why:
            notes.setdefault(why, None)
        elif len(match) and not true_level:
            notes.setdefault(f"{row.denoiser}: given {sigma_in} of the true level; a published number is "
                             "for the true level", None)
        elif len(match) and subset is not None:
            notes.setdefault(f"{row.denoiser} on {row.dataset}: the set was not scored whole; a published "
                             "mean covers the whole set", None)
        elif method is not None and level.any() and not len(reported):
            notes.setdefault(f"{row.denoiser}: the published table has no {method} number for {dataset} "
                             f"at sigma={row.level * 255:.4g}/255", None)
        elif len(reported) and not len(match):
            notes.setdefault(f"{row.denoiser}: {method} is published under --protocol "
                             f"{'/'.join(sorted(set(reported[PROTOCOL])))}, this row ran under {protocol}", None)
        elif len(match) and not whole:
            notes.setdefault(f"{row.denoiser} on {row.dataset}: {row.n} of {sizes[dataset]} images scored; "
                             "a published mean covers the whole set", None)
    out = table.copy()
    at = list(out.columns).index("mean") + 1
    out.insert(at, "published", published)
    out.insert(at + 1, "delta", out["mean"] - out["published"])
    out.insert(at + 2, "source", sources)
    out.attrs["published_notes"] = list(notes)
    if not any(pd.notna(v) for v in published) and not notes:
        out.attrs["published_notes"] = ["no row has a published counterpart: published tables cover Gaussian "
                                        "noise on the standard sets (set12, bsd68, cbsd68, kodak24, mcmaster, "
                                        "urban100)"]
    return out


def beside(table: pd.DataFrame, files: list[str], plugin_files: list[str],
           with_source: bool = True) -> pd.DataFrame:
    """A long leaderboard with the shipped and users' references beside its rows."""
    from bench.plugins import get_plugin_set

    out = add_published(table, references(files), Registry(get_plugin_set(plugin_files)))
    notes = out.attrs.get("published_notes", [])
    out = out if with_source else out.drop(columns="source")
    out.attrs["published_notes"] = notes
    return out


def reference_rows(refs: pd.DataFrame, registry: Registry, rows: list[str], datasets: list[str],
                   levels: list[float], protocol: str, metrics: list[str]) -> pd.DataFrame:
    """Long-table rows holding only the published numbers of ``rows`` (a suite's reference rows,
    not run) on ``datasets`` at Gaussian ``levels`` under ``protocol``: ``mean`` empty,
    ``published`` and ``source`` filled, so they sit beside a user's rows."""
    found = []
    for row in rows:
        method = method_of(registry, row)[0]
        if method is None:
            continue
        for dataset, level, metric in product(datasets, levels, metrics):
            name = DATASET_ALIASES.get(dataset, dataset)
            match = refs[(refs["dataset"] == name) & (refs["method"] == method) & (refs[PROTOCOL] == protocol)
                         & ((refs["sigma_255"] - level * 255).abs() < LEVEL_TOLERANCE)]
            if metric in METRICS and len(match) and pd.notna(match[metric].iloc[0]):
                found.append({"metric": metric, "dataset": dataset, "noise": "gaussian", "level": level,
                              "denoiser": row, "protocol": protocol, "published": float(match[metric].iloc[0]),
                              "source": match["source"].iloc[0]})
    return pd.DataFrame(found)
