"""Shared fixtures: run the CLI in-process and capture what it prints."""

from __future__ import annotations

import signal
import sqlite3
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Call ``denoise-bench`` with a list of arguments; returns code, stdout, stderr."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "store" / "bench.sqlite"


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def done_stamps(store: Path, table: str = "cells") -> dict[str, str]:
    """{key: updated} of the done cells in a store a running driver may still be creating."""
    if not store.exists():  # connecting would create it under the driver
        return {}
    try:
        return dict(rows(store, f"SELECT key, updated FROM {table} WHERE status = 'done'"))
    except sqlite3.OperationalError:  # its schema is not there yet
        return {}


def sigkill_mid_grid(command: list, store: Path, table: str = "cells", after: int = 2) -> dict[str, str]:
    """Run a driver, SIGKILL it once ``after`` cells of ``table`` are done; returns ``done_stamps``."""
    driver = subprocess.Popen(command)
    deadline = time.time() + 120
    while time.time() < deadline and len(done_stamps(store, table)) < after:
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    return done_stamps(store, table)


@pytest.fixture
def write_plugin(tmp_path):
    """Write a local plugin file from source text and return its path."""

    def write(source: str, name: str = "my_plugin.py") -> Path:
        path = tmp_path / name
        path.write_text(source)
        return path

    return write


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for tests made of many small ops (thread hand-offs dominate on a busy CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- fetched data: a local mirror, a private data folder, no network ------------------------------

#: Copies of real files the manifests pin (Set12 from the FFDNet repository, DnCNN-S sigma=25).
TEST_DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def private_data_folder(tmp_path_factory, monkeypatch):
    """Every test fetches into its own folder, from no mirror, online unless it says otherwise."""
    from bench.data import fetching

    monkeypatch.setenv(fetching.DATA_ENV, str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv(fetching.MIRROR_ENV, raising=False)
    monkeypatch.delenv(fetching.OFFLINE_ENV, raising=False)


class MirrorServer:
    """http.server in a thread serving a folder laid out as a manifest's relative paths.

    ``requests`` lists the paths asked for; ``drop`` names paths whose connection is cut
    after half the announced bytes; ``corrupt`` names paths served with one byte flipped.
    """

    def __init__(self, root: Path):
        import http.server
        import threading

        self.root, self.requests, self.drop, self.corrupt = root, [], set(), set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                server.requests.append(path)
                file = root / path
                if not file.is_file():
                    return self.send_error(404)
                body = bytearray(file.read_bytes())
                if path in server.corrupt:
                    body[len(body) // 2] ^= 0xFF
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in server.drop:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local mirror of the pinned sources (Set12, DnCNN-S sigma=25), set as DENOISE_BENCH_MIRROR."""
    import shutil

    from bench.data import fetching

    root = tmp_path / "mirror"
    shutil.copytree(TEST_DATA / "set12", root / "Set12")
    (root / "model" / "specifics").mkdir(parents=True)
    shutil.copy(TEST_DATA / "dncnn" / "sigma=25.mat", root / "model" / "specifics")
    server = MirrorServer(root)
    monkeypatch.setenv(fetching.MIRROR_ENV, server.url)
    yield server
    server.stop()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket connection fails the test."""
    import socket

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def write_idx(path, array: np.ndarray) -> None:
    """torchvision's raw MNIST format: big-endian magic, sizes, then uint8 data."""
    magic = 0x0800 | array.ndim  # 0x08: unsigned byte
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_labelled_blocks(root: Path, sizes: dict[str, int]) -> Path:
    """A separable labelled 28x28 set in torchvision's MNIST layout (ROOT/MNIST/raw/*-ubyte):
    class k is a bright 8x8 block at the k-th of 10 places over faint noise. ``sizes``: prefix -> n."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in sizes.items():
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 28, 28))
        for i, k in enumerate(labels):
            top, left = 2 + 8 * (k // 4), 2 + 6 * (k % 4)
            images[i, top:top + 8, left:left + 8] = 230
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images.astype(np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return root
