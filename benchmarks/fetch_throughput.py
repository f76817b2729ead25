"""Download throughput: the project's verified downloader against pooch (what it replaced) and a bare copy.

A local HTTP server serves one file of random bytes; each method downloads it
into a fresh folder and checks its SHA-256 (the bare copy only writes it).
Best of ``--repeats``; the ratio is pooch's time over ours (>= 1: ours is no slower).

    python benchmarks/fetch_throughput.py [--mb 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

from bench.data import fetching  # noqa: E402


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def ours(url: str, out: Path, digest: str, size: int) -> None:
    fetching.download(url, out / "blob.bin", fetching.Pin(sha256=digest, bytes=size), "blob.bin", "bench",
                      progress=lambda n: None)


def with_pooch(url: str, out: Path, digest: str, size: int) -> None:
    import pooch

    pooch.retrieve(url, known_hash=f"sha256:{digest}", path=out, fname="blob.bin", progressbar=False)


def bare_copy(url: str, out: Path, digest: str, size: int) -> None:
    with requests.get(url, stream=True) as response, open(out / "blob.bin", "wb") as handle:
        for chunk in response.iter_content(1 << 16):
            handle.write(chunk)


def best_of(method, url: str, digest: str, size: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            method(url, Path(folder), digest, size)
            times.append(time.perf_counter() - start)
            assert (Path(folder) / "blob.bin").stat().st_size == size
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        data = os.urandom(args.mb << 20)
        (Path(root) / "blob.bin").write_bytes(data)
        digest, size = hashlib.sha256(data).hexdigest(), len(data)
        server, base = serve(Path(root))
        try:
            url = f"{base}/blob.bin"
            seconds = {name: best_of(method, url, digest, size, args.repeats)
                       for name, method in (("bare copy (requests, no hash)", bare_copy),
                                            ("pooch.retrieve (SHA-256)", with_pooch),
                                            ("fetching.download (SHA-256 + MD5, deadline)", ours))}
        finally:
            server.shutdown()
    rows = "\n".join(f"| {name} | {s:.3f} | {args.mb / s:.0f} |" for name, s in seconds.items())
    ratio = seconds["pooch.retrieve (SHA-256)"] / seconds["fetching.download (SHA-256 + MD5, deadline)"]
    body = (f"## Fetching: the verified downloader against pooch (`benchmarks/fetch_throughput.py`)\n\n"
            f"One {args.mb} MB file from a local HTTP server, best of {args.repeats}; goal: no slower than "
            f"pooch, which it replaced (ratio >= 0.9).\n\n| method | seconds | MB/s |\n|---|---|---|\n{rows}\n\n"
            f"pooch / ours: **{ratio:.2f}x**.")
    print(body)
    update_section("fetch_throughput", body)


if __name__ == "__main__":
    main()
