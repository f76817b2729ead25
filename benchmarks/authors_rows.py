"""The authors' rows against their papers: ffdnet, fdncnn, dncnn-b, dncnn-s on Set12; colour models on skimage-color.

Serves the authors' files (``../shared/datasets``: Set12, the FFDNet and DnCNN
MatConvNet models) from a local HTTP server set as ``DENOISE_BENCH_MIRROR``,
fetches them into a fresh data folder (SHA-256 checked against the shipped
manifests), stops the server, runs ``--offline --protocol paper`` and writes
``leaderboard --published`` into benchmarks/RESULTS.md (speed: ``authors_speed.py``).

    .venv/bin/python benchmarks/authors_rows.py [--store results/authors_rows.sqlite]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from published_set12 import cli, fetched_offline  # noqa: E402
from results_file import update_section  # noqa: E402


SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
#: mirror path -> shared file (the manifests' layout)
FILES = {"model/specifics/sigma=25.mat": "dncnn/sigma=25.mat",
         "model/specifics_color/color_sigma=25.mat": "models/color_sigma=25.mat",
         **{f"model/{name}.mat": f"models/{name}.mat"
            for name in ("FDnCNN_gray", "FDnCNN_color", "GD_Gray_Blind", "GD_Color_Blind")},
         **{f"models/{name}.mat": f"models/{name}.mat"
            for name in ("FFDNet_gray", "FFDNet_color", "FFDNet_Clip_gray", "FFDNet_Clip_color")}}
LEVELS = "gaussian:15/255,25/255,50/255"
#: (dataset, noise, rows, protocol)
RUNS = [("set12", LEVELS, ["ffdnet", "fdncnn", "dncnn-b"], "paper"),
        ("set12", "gaussian:25/255", ["dncnn-s"], "paper"),  # the one DnCNN-S level in ../shared
        ("set12", "gaussian:25/255", ["ffdnet[clip=true]"], "clip"),
        ("skimage-color", LEVELS, ["ffdnet", "fdncnn", "dncnn-b"], "paper"),
        ("skimage-color", "gaussian:25/255", ["dncnn-s"], "paper")]


def mirror_tree(root: Path) -> None:
    shutil.copytree(SHARED / "set12", root / "Set12")
    for path, source in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHARED / source, root / path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="results/authors_rows.sqlite")
    parser.add_argument("--note", default="", help="a line added to the section (e.g. what shared the CPU)")
    parser.add_argument("--tables-only", action="store_true", help="rewrite the section from an existing --store")
    args = parser.parse_args()
    if not args.tables_only:
        measure(args.store)
    write_section(args.store, args.note)


def measure(store: str) -> None:
    """Serve, fetch, then run every row offline into a fresh store."""
    Path(store).unlink(missing_ok=True)
    fetches = (["set12", "ffdnet", "fdncnn[color=false]", "fdncnn[color=true]", "dncnn-b", "dncnn-s[level=25/255]"],
               ["dncnn-s[level=25/255,color=true]"])
    with fetched_offline(mirror_tree, *fetches) as data:
        for dataset, noise, rows, protocol in RUNS:
            cli("run", "-d", dataset, "-n", noise, *[a for r in rows for a in ("-m", r)], "--protocol", protocol,
                "--metric", "psnr", "--data-root", data, "--offline", "--store", store, "--quiet")


def write_section(store: str, note: str) -> None:
    """``leaderboard --published`` from the store, into benchmarks/RESULTS.md."""
    csv = cli("leaderboard", "--store", store, "--published", "--metric", "psnr", "--format", "csv")
    table = pd.read_csv(io.StringIO(csv)).assign(sigma=lambda t: (t["level"] * 255).round().astype(int))
    table = table.sort_values(["dataset", "denoiser", "sigma"])
    shown = table[["dataset", "denoiser", "protocol", "sigma", "mean", "published", "delta"]].rename(
        columns={"mean": "PSNR here", "sigma": "sigma (/255)"})
    for column, style in (("PSNR here", "{:.2f}"), ("published", "{:.2f}"), ("delta", "{:+.2f}")):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else style.format(v))
    sources = table.dropna(subset=["published"]).drop_duplicates(["denoiser", "source"])[["denoiser", "source"]]
    body = ("### The authors' rows against their papers (`benchmarks/authors_rows.py`)\n\n"
            "The authors' MatConvNet files and Set12 served by a local HTTP server as `DENOISE_BENCH_MIRROR`, "
            "fetched once (SHA-256 checked), then run `--offline` (seed 0, one noise draw per image). "
            "`delta` = PSNR here - published, shown only where weights, protocol and whole set match "
            "(skimage-color and the Clip row have no published number).\n\n"
            + shown.to_markdown(index=False, disable_numparse=True) + "\n\nSources:\n\n" + "\n".join(f"- {r.denoiser}: {r.source}"
                                                                for r in sources.itertuples())
            + "\n\nSpeed: `benchmarks/authors_speed.py` (its section below), which times the rows "
              "interleaved in one process; the cells here come from separate runs, so their times are "
              f"not comparable.\n\n{note}")
    update_section("authors-rows", body)
    print(body)


if __name__ == "__main__":
    main()
