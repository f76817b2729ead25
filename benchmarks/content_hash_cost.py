"""What re-hashing costs now that a cached file hash also needs the same ctime and inode.

A hash is reused only while (size, mtime, ctime, inode) stay the same; a file
touched by an archive extraction or a ``cp -p`` is read again. This times a
whole folder hashed from scratch (every file changed) against the cached
check (a stat per file), on Set12 (../shared/datasets/set12) and a 200-file
folder of 256x256 PNGs.

    .venv/bin/python benchmarks/content_hash_cost.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from skimage import io

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402
from timing import median_seconds  # noqa: E402

SET12 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "set12"


def measure(files: list[Path]) -> tuple[float, float]:
    """(seconds to hash every file anew, seconds for the cached check), medians."""
    from bench.data.content_hash import sha256_files

    cache = Path(tempfile.mkdtemp())
    sha256_files(files, cache)  # cache filled
    cached = median_seconds(lambda: sha256_files(files, cache), repeats=7, warm_up=False)
    fresh = median_seconds(lambda: sha256_files(files, Path(tempfile.mkdtemp())),  # an empty cache: every file is read
                           repeats=7, warm_up=False)
    return fresh, cached


def main() -> None:
    rows = []
    if SET12.is_dir():
        rows.append(("Set12 (12 PNGs)", sorted(SET12.glob("*.png"))))
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for i in range(200):
        io.imsave(folder / f"{i:03d}.png", rng.integers(0, 256, (256, 256), dtype=np.uint8), check_contrast=False)
    rows.append(("200 PNGs of 256x256", sorted(folder.glob("*.png"))))
    lines = ["| folder | size | hashed anew | cached check | ratio |", "|---|---|---|---|---|"]
    for name, files in rows:
        fresh, cached = measure(files)
        size = sum(f.stat().st_size for f in files) / 2**20
        lines.append(f"| {name} | {size:.1f} MB | {fresh * 1e3:.1f} ms | {cached * 1e3:.2f} ms | "
                     f"{fresh / cached:.0f}x |")
    body = ("## Content hashes: the cost of re-hashing (benchmarks/content_hash_cost.py)\n\n"
            "A folder's files are hashed again when their size, mtime, ctime or inode changed "
            "(ctime catches bytes rewritten with size and mtime kept). Median of 7.\n\n" + "\n".join(lines))
    update_section("content_hash_cost", body)
    print(body)


if __name__ == "__main__":
    main()
