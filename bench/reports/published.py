"""Published references beside a leaderboard: the papers' PSNR/SSIM, and each row's difference.

``bench/data/published-awgn.csv`` (columns ``dataset, channels, sigma_255,
method, psnr, ssim, source``) holds what BM3D, DnCNN, FFDNet and DRUNet report
on the standard sets under Gaussian noise; a user's table in the same columns
adds to it (and wins where both give the same dataset, sigma and method).
A leaderboard row matches a reference when its dataset label is the table's
dataset (``urban100[gray=1]`` is ``urban100-gray``), its noise is Gaussian with
sigma * 255 equal to ``sigma_255``, it covers the whole set, and its denoiser is
the reference's method: the ``published_as`` metadata of its registration (a
family such as ``deepinv:`` may declare ``"{suffix}"``: ``deepinv:DRUNet`` is
``DRUNet``; CBM3D counts as BM3D, whose ``bm3d`` row runs bm3d_rgb on colour).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import UsageError
from bench.registry import Registry
from bench.specs import parse_spec

COLUMNS = ("dataset", "channels", "sigma_255", "method", "psnr", "ssim", "source")
KEY = ["dataset", "sigma_255", "method"]
METRICS = ("psnr", "ssim")
#: Leaderboard dataset labels whose published name differs.
DATASET_ALIASES = {"urban100[gray=1]": "urban100-gray"}
#: Papers name BM3D on colour images CBM3D (the ``bm3d`` row runs bm3d_rgb there).
METHOD_ALIASES = {"CBM3D": "BM3D"}
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
    return table[list(COLUMNS)]


def references(files: list[str] = ()) -> pd.DataFrame:
    """The shipped table plus users' tables (a later table wins on the same dataset, sigma, method)."""
    shipped = resources.files("bench") / "data" / SHIPPED
    with resources.as_file(shipped) as path:
        tables = [read_table(path, SHIPPED)]
    tables += [read_table(Path(f).expanduser(), f) for f in files]
    table = pd.concat(tables, ignore_index=True)
    table["method"] = table["method"].replace(METHOD_ALIASES)
    return table.drop_duplicates(KEY, keep="last")


def counterpart(registry: Registry, row: str) -> str | None:
    """The published method a leaderboard row stands for, or None."""
    try:
        spec = parse_spec(row)
        entry = registry.get("denoisers", spec.name)
    except UsageError:
        return None
    declared = entry.metadata.get("published_as")
    if not declared or str(spec.params.get("pretrained", "")).lower() == "none":
        return None  # random weights are nobody's published numbers
    return declared.format(suffix=spec.name[len(entry.name):]) if entry.is_family else declared


def set_sizes() -> dict[str, int]:
    """Images in each named set, so rows over part of a set (--limit-images) do not match."""
    from bench.data.standard import PINNED_SETS, URBAN100_IMAGES

    sizes = {s.name: len(s.manifest().files) for s in PINNED_SETS}
    sizes.update({"urban100": URBAN100_IMAGES, "urban100-gray": URBAN100_IMAGES})
    return sizes


def add_published(table: pd.DataFrame, refs: pd.DataFrame, registry: Registry) -> pd.DataFrame:
    """``published``, ``delta`` (mean - published) and ``source`` columns for a long leaderboard."""
    methods = {row: counterpart(registry, row) for row in table["denoiser"].unique()}
    sizes = set_sizes()
    published, sources = [], []
    for row in table.itertuples(index=False):
        dataset = DATASET_ALIASES.get(row.dataset, row.dataset)
        match = refs[(refs["dataset"] == dataset) & (refs["method"] == methods[row.denoiser])
                     & ((refs["sigma_255"] - row.level * 255).abs() < LEVEL_TOLERANCE)] \
            if row.noise == "gaussian" and row.metric in METRICS else refs.iloc[:0]
        whole = dataset not in sizes or row.n % sizes[dataset] == 0
        value = match[row.metric].iloc[0] if len(match) and whole else np.nan
        published.append(value)
        sources.append(match["source"].iloc[0] if not np.isnan(value) else "")
    out = table.copy()
    at = list(out.columns).index("mean") + 1
    out.insert(at, "published", published)
    out.insert(at + 1, "delta", out["mean"] - out["published"])
    out.insert(at + 2, "source", sources)
    return out


def beside(table: pd.DataFrame, files: list[str], plugin_files: list[str],
           with_source: bool = True) -> pd.DataFrame:
    """A long leaderboard with the shipped and users' references beside its rows."""
    from bench.plugins import get_plugin_set

    out = add_published(table, references(files), Registry(get_plugin_set(plugin_files)))
    return out if with_source else out.drop(columns="source")
