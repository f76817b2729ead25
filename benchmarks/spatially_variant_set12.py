"""Set12 with spatially variant Gaussian noise: FFDNet and FDnCNN told the map, or only its mean.

The FFDNet authors' ``Demo_AWGN_spatially_variant_noise.m`` draws noise whose std is
MATLAB's ``peaks`` surface (flipped upside down) scaled to [0, 50]/255; its mean on
Set12's sizes is 23.57/255, so ``gaussian-map[shape=peaks]:23.57/255`` is that map.
Beside it, the default ramp from 0 to 50/255 (``gaussian-map:25/255``). Serves Set12 and
the authors' files from a local HTTP server (as ``authors_rows.py`` does), fetches them,
then runs ``--offline --protocol paper``: ``ffdnet`` and ``fdncnn`` given the map
(``oracle``) and its mean (``mean``), ``bm3d`` given the mean, ``dncnn-b`` (blind) and
``noisy``, on the same noisy pixels. The paper shows this experiment on one image
(the demo's image 05) in a figure; its numbers could not be checked here, so the table
stands on its own: the gap between map and mean is the measurement.

    .venv/bin/python benchmarks/spatially_variant_set12.py [--store results/spatially_variant_set12.sqlite]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from authors_rows import mirror_tree  # noqa: E402
from published_set12 import cli, fetched_offline  # noqa: E402
from results_file import update_section  # noqa: E402
from robustness_set12 import measured, psnr_rows  # noqa: E402

NOISES = ("gaussian-map[shape=peaks]:23.57/255", "gaussian-map:25/255")
ROWS = ("ffdnet", "fdncnn", "bm3d", "dncnn-b", "noisy")


def table(store: str) -> str:
    lines = ["| noise | row | sigma_in | PSNR (dB) | 95% CI | delta vs oracle (dB) |", "|---|---|---|---|---|---|"]
    lines += [f"| {row.noise} {row.level_label} | {row.denoiser} | {row.sigma_in} | {measured(row)} |"
              for row in psnr_rows(store).itertuples()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="results/spatially_variant_set12.sqlite")
    parser.add_argument("--note", default="", help="a line added to the section (e.g. what shared the CPU)")
    args = parser.parse_args()
    Path(args.store).unlink(missing_ok=True)
    start = time.perf_counter()
    with fetched_offline(mirror_tree, ["set12", "ffdnet", "fdncnn[color=false]", "dncnn-b"]) as data:
        cli("run", "-d", "set12", *[a for n in NOISES for a in ("-n", n)], *[a for r in ROWS for a in ("-m", r)],
            "--sigma-in", "oracle,mean", "--protocol", "paper", "--metric", "psnr", "--data-root", data,
            "--offline", "--store", args.store, "--quiet")
    seconds = time.perf_counter() - start
    body = ("### Set12 with spatially variant noise (`benchmarks/spatially_variant_set12.py`)\n\n"
            "`gaussian-map[shape=peaks]:23.57/255` is the FFDNet authors' demo map (std from 0 to 50/255, "
            "MATLAB's `peaks`); `gaussian-map:25/255` a horizontal ramp from 0 to 50/255. `oracle` hands "
            "FFDNet and FDnCNN the map, `mean` its mean (the level every other row receives); seed 0, "
            f"`--protocol paper`, whole Set12. Wall time {seconds:.0f} s (CPU).\n\n" + table(args.store)
            + (f"\n\n{args.note}" if args.note else ""))
    update_section("spatially-variant-set12", body)
    print(body)


if __name__ == "__main__":
    main()
