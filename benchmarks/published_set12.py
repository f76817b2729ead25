"""Set12 against the published tables: bm3d (15, 25, 50) and dncnn-s (25) under the paper protocol.

Serves the real pinned files (``../shared/datasets``: Set12 and DnCNN-S sigma=25,
else the copies in ``tests/data``) from a local HTTP server set as
``DENOISE_BENCH_MIRROR``, fetches them into a fresh data folder (checked against
the shipped manifests' SHA-256), runs the harness and writes
``leaderboard --published`` into benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/published_set12.py [--store results/published_set12.sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

from bench.cli import main as denoise_bench  # noqa: E402
from bench.data import fetching  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SOURCES = (SHARED / "set12", SHARED / "dncnn" / "sigma=25.mat") if SHARED.is_dir() else \
    (REPO / "tests" / "data" / "set12", REPO / "tests" / "data" / "dncnn" / "sigma=25.mat")
RUNS = (["-m", "bm3d", "-n", "gaussian:15/255,25/255,50/255"],
        ["-m", "dncnn-s", "-n", "gaussian:25/255"])


def mirror_tree(root: Path) -> None:
    """The manifests' layout: Set12/NN.png and model/specifics/sigma=25.mat."""
    set12, mat = SOURCES
    shutil.copytree(set12, root / "Set12")
    (root / "model" / "specifics").mkdir(parents=True)
    shutil.copy(mat, root / "model" / "specifics" / mat.name)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(root: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def fetched_offline(build_tree, *fetches: list[str]):
    """A fresh data folder holding what each ``fetches`` list fetches from a local server of
    ``build_tree(root)``'s files (checked against the manifests); the server is stopped before it is used."""
    with tempfile.TemporaryDirectory() as tmp:
        mirror, data = Path(tmp) / "mirror", Path(tmp) / "data"
        build_tree(mirror)
        server = serve(mirror)
        os.environ[fetching.MIRROR_ENV] = f"http://127.0.0.1:{server.server_address[1]}"
        for names in fetches:
            cli("fetch", *names, "--data-root", data, "--quiet")
        server.shutdown()  # from here on, only the verified cache
        yield data


def cli(*args: str) -> str:
    """Run denoise-bench in-process; its stdout, or exit with its code."""
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        code = denoise_bench([str(a) for a in args])
    finally:
        sys.stdout = saved
    if code != 0:
        sys.exit(f"denoise-bench {' '.join(map(str, args))} exited with {code}")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="results/published_set12.sqlite")
    parser.add_argument("--note", default="", help="a line added to the section (e.g. what shared the CPU)")
    args = parser.parse_args()
    Path(args.store).unlink(missing_ok=True)
    with fetched_offline(mirror_tree, ["set12", "dncnn-s[level=25/255]"]) as data:
        seconds = {}
        for run in RUNS:
            start = time.perf_counter()
            cli("run", "-d", "set12", *run, "--protocol", "paper", "--data-root", data, "--offline",
                "--store", args.store, "--quiet")
            seconds[run[1]] = time.perf_counter() - start
    csv = cli("leaderboard", "--store", args.store, "--published", "--metric", "psnr", "--metric", "ssim",
              "--format", "csv")
    table = pd.read_csv(io.StringIO(csv)).assign(sigma=lambda t: (t["level"] * 255).round())
    psnr = table[table["metric"] == "psnr"].set_index(["denoiser", "sigma"])
    ssim = table[table["metric"] == "ssim"].set_index(["denoiser", "sigma"])
    lines = ["| denoiser | sigma (/255) | PSNR here | published | delta | SSIM here | source |",
             "|---|---|---|---|---|---|---|"]
    for (denoiser, sigma), row in psnr.iterrows():
        lines.append(f"| {denoiser} | {sigma:g} | {row['mean']:.2f} | {row['published']:.2f} | "
                     f"{row['delta']:+.2f} | {ssim.loc[(denoiser, sigma), 'mean']:.4f} | {row['source']} |")
    body = ("### Set12 against the published tables (`benchmarks/published_set12.py`)\n\n"
            "Set12 (the FFDNet repository's files, SHA-256 checked) and DnCNN-S sigma=25 served by a "
            "local HTTP server as `DENOISE_BENCH_MIRROR`, fetched once, then run `--offline` under "
            "`--protocol paper` (seed 0, one noise draw per image; the papers used MATLAB's `randn`). "
            "`delta` = PSNR here - published.\n\n" + "\n".join(lines) + "\n\n"
            f"Wall time: bm3d, 3 levels x 12 images: {seconds['bm3d']:.0f} s; dncnn-s, 12 images: "
            f"{seconds['dncnn-s']:.0f} s (CPU). {args.note}")
    update_section("published-set12", body)
    print(body)


if __name__ == "__main__":
    main()
