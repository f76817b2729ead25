"""Fetching that fails leaves nothing behind and says what to do: deadlines, leftovers, messages, `list`."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time

import pytest

from bench.data import fetching

SET12 = fetching.load_manifest("ffdnet-testsets", "Set12")


def one_line_exit_2(result, message: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


@pytest.fixture
def trickle(monkeypatch):
    """A server that announces a file's full size and sends one byte every 0.2 s (forever, in effect)."""
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(self.server.announced))
            self.end_headers()
            try:
                while not stop.is_set():
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:  # the client gave up
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.announced = 100000
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(fetching.MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv(fetching.DEADLINE_ENV, "1")
    yield server
    stop.set()
    server.shutdown()
    server.server_close()


def leftovers() -> list[str]:
    root = fetching.settings().root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_a_trickling_server_is_given_up_on_at_the_deadline_and_nothing_stays(cli, trickle):
    started = time.monotonic()
    result = cli("fetch", "set12", "--quiet")
    took = time.monotonic() - started
    one_line_exit_2(result, "gave up on")
    assert "after 1 s" in result.err and "too slow" in result.err, result.err
    assert took < 10, f"fetch took {took:.1f} s with a 1 s deadline"
    assert leftovers() == [], "no temporary file, no empty folder"


def fetch_in_thread(cli, *args) -> tuple[threading.Thread, list]:
    done: list = []
    thread = threading.Thread(target=lambda: done.append(cli(*args)), daemon=True)
    thread.start()
    return thread, done


def test_the_size_a_server_announces_never_extends_the_deadline(cli, trickle, monkeypatch):
    """Release weights have no pinned size: a server announcing a large file and trickling it is
    given up on at the caller's deadline (before, 1 GB announced stretched it to 20,000 s)."""
    monkeypatch.delenv(fetching.DEADLINE_ENV)
    monkeypatch.setattr(fetching, "BASE_DEADLINE", 1.0)
    trickle.announced = min(10**9, fetching.free_bytes(fetching.settings().root.parent) // 2)
    thread, done = fetch_in_thread(cli, "fetch", "swinir", "--quiet")
    thread.join(timeout=30)
    assert done, "still downloading 30 s past a 1 s deadline"
    one_line_exit_2(done[0], "gave up on")
    assert leftovers() == []


def test_a_download_announcing_more_than_the_free_space_is_refused_at_once(cli, trickle, monkeypatch):
    monkeypatch.delenv(fetching.DEADLINE_ENV)
    trickle.announced = 2 * fetching.free_bytes(fetching.settings().root.parent)
    thread, done = fetch_in_thread(cli, "fetch", "swinir", "--quiet")
    thread.join(timeout=30)
    assert done, "still downloading a file that cannot fit"
    one_line_exit_2(done[0], "more than the")
    assert "free in" in done[0].err and leftovers() == []


def test_the_default_deadline_grows_with_the_size_and_the_variable_is_checked(monkeypatch):
    monkeypatch.delenv(fetching.DEADLINE_ENV, raising=False)
    assert fetching.deadline_seconds(None) == fetching.BASE_DEADLINE
    assert fetching.deadline_seconds(10 * fetching.FLOOR_RATE) == fetching.BASE_DEADLINE + 10
    monkeypatch.setenv(fetching.DEADLINE_ENV, "soon")
    with pytest.raises(fetching.UsageError, match=fetching.DEADLINE_ENV):
        fetching.deadline_seconds(1)


def unreachable_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_a_failed_fetch_leaves_no_empty_folder_and_names_the_cause_in_whole_words(cli, monkeypatch):
    monkeypatch.setenv(fetching.MIRROR_ENV, unreachable_url())
    result = cli("fetch", "set12", "--quiet")
    one_line_exit_2(result, "Connection refused")
    assert "object at 0x" not in result.err and "Max retries" not in result.err, result.err
    assert leftovers() == []


def test_fetch_failing_does_not_tell_the_user_to_run_fetch_again(cli, monkeypatch):
    monkeypatch.setenv(fetching.MIRROR_ENV, unreachable_url())
    result = cli("fetch", "set12", "--quiet")
    assert "where there is internet (with the same" not in result.err, result.err
    assert "on a machine with internet and copy DIR to" in result.err, result.err
    # A run that needs the same files gets the fetch command to run elsewhere.
    run = cli("run", "-d", "set12", "-n", "gaussian:0.1", "-m", "noisy", "--offline", "--quiet",
              "--store", fetching.settings().root.parent / "s.sqlite")
    one_line_exit_2(run, "run `denoise-bench fetch set12` where there is internet")
    # fetch itself offline: what to do instead, not "run fetch".
    monkeypatch.setenv(fetching.OFFLINE_ENV, "1")
    result = cli("fetch", "set12")
    one_line_exit_2(result, "offline mode is on")
    assert "copy the data folder" in result.err


def test_one_line_shortens_at_a_word_boundary():
    text = "word " * 100
    short = fetching.one_line(ValueError(text), 42)
    assert len(short) <= 42 and short.endswith(" ...") and short[:-4].split() == ["word"] * 7


def test_a_stale_temporary_file_of_a_dead_process_is_removed_by_the_next_fetch(cli, mirror):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    folder = fetching.settings().root / "ffdnet-testsets" / "Set12"
    folder.mkdir(parents=True)
    stale = folder / f".01.png.{dead.pid}{fetching.PART_SUFFIX}"
    mine = folder / f".02.png.{os.getpid()}{fetching.PART_SUFFIX}.keep"
    stale.write_bytes(b"")
    mine.write_bytes(b"")
    assert cli("fetch", "set12", "--quiet").code == 0
    assert not stale.exists() and mine.exists()


def test_list_datasets_verifies_before_saying_cached(cli, mirror):
    assert cli("fetch", "set12", "--quiet").code == 0

    def set12_line():
        return next(line for line in cli("list", "datasets").out.splitlines() if line.startswith("set12 "))

    assert " cached, " in set12_line() and "not cached" not in set12_line()
    file = fetching.settings().root / "ffdnet-testsets" / "Set12" / "05.png"
    data = bytearray(file.read_bytes())
    data[100] ^= 0xFF  # same size, one byte flipped
    file.write_bytes(bytes(data))
    assert "not cached" in set12_line()


def test_a_rejected_mnist_download_leaves_no_archive(cli, mirror, store):
    (mirror.root / "MNIST").mkdir()
    (mirror.root / "MNIST" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not mnist")
    result = cli("fetch", "mnist", "--quiet")
    one_line_exit_2(result, "checksum mismatch for MNIST/raw/train-images-idx3-ubyte.gz")
    assert leftovers() == []


def test_fetching_weights_that_cannot_be_downloaded_is_one_line(cli, monkeypatch):
    import deepinv

    url = unreachable_url()
    monkeypatch.setattr(deepinv.models.dncnn, "get_weights_url", lambda model_name, file_name: f"{url}/{file_name}")
    result = cli("fetch", "deepinv:DnCNN[in_channels=1,out_channels=1,pretrained=download]", "--quiet")
    one_line_exit_2(result, "cannot be fetched")
    assert "Connection refused" in result.err and "on a machine with internet" in result.err, result.err
    assert not (fetching.settings().root / "torch-hub" / "checkpoints").exists()


def test_release_weights_are_fetched_under_the_same_deadline_and_leave_nothing(cli, trickle):
    started = time.monotonic()
    result = cli("fetch", "swinir", "--quiet")
    one_line_exit_2(result, "gave up on")
    assert time.monotonic() - started < 10
    assert leftovers() == [], "no temporary file, no empty folder"
