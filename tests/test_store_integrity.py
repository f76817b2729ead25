"""The store's front door: damaged, foreign, newer, changed or read-only stores are one line and exit 2,
with nothing written; older stores are upgraded; read-only stores can be read."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import rows

from bench.store.database import SCHEMA_VERSION, Store, StoreError

RUN = ["-d", "skimage-gray[crop=32]", "--limit-images", "2", "-n", "gaussian:0.1", "-m", "noisy", "--quiet"]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A real store: one run of one cell, closed (its WAL checkpointed into the file)."""
    from bench.cli import main

    path = tmp_path_factory.mktemp("made") / "bench.sqlite"
    assert main(["run", *RUN, "-n", "gaussian:0.2", "--store", str(path)]) == 0
    return path


@pytest.fixture
def copy(made, tmp_path) -> Path:
    target = tmp_path / "copy.sqlite"
    shutil.copy(made, target)
    return target


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(cli, path: Path, message: str, commands=("run", "leaderboard", "status")) -> None:
    """Every command refuses the store in one line naming it and the problem; the file is unchanged
    and nothing (no ``-wal`` or ``-shm``) appears beside it."""
    before, beside = digest(path), sorted(os.listdir(path.parent))
    for command in commands:
        args = [*RUN, "-m", "median"] if command == "run" else []
        result = cli(command, *args, "--store", path)
        assert result.code == 2, (command, result.err)
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], (command, result.err)
    assert digest(path) == before, "the refused store was written to"
    assert set(os.listdir(path.parent)) <= set(beside), "files appeared beside the refused store"


def corrupt_page(path: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with garbage (as a bad disk sector would)."""
    page_size, root = rows(path, f"SELECT (SELECT page_size FROM pragma_page_size()), rootpage "
                                 f"FROM sqlite_master WHERE name = '{table}'")[0]
    with open(path, "r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(bytes((i * 37 + 11) % 256 for i in range(page_size)))


def test_garbage_text_and_truncated_files_are_refused(cli, copy, tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("results: psnr 30.1\n" * 50)
    refused(cli, text, "not an SQLite file")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(bytes((i * 97 + 5) % 256 for i in range(8192)))
    refused(cli, garbage, "not an SQLite file")
    size = copy.stat().st_size
    with open(copy, "r+b") as file:
        file.truncate(size // 2)
    refused(cli, copy, "damaged")


def test_a_corrupted_cells_page_is_refused_before_anything_is_written(cli, copy):
    corrupt_page(copy, "cells")
    refused(cli, copy, "damaged")


def test_a_store_from_a_newer_version_is_refused(cli, copy):
    with sqlite3.connect(copy) as db:
        db.execute("PRAGMA user_version = 99")
    refused(cli, copy, f"newer denoise-bench (store schema 99; this version reads up to {SCHEMA_VERSION})")


def test_a_changed_table_is_refused_before_a_run_writes(cli, copy):
    with sqlite3.connect(copy) as db:
        db.execute("ALTER TABLE cells ADD COLUMN note TEXT")
    runs = rows(copy, "SELECT count(*) FROM runs")
    refused(cli, copy, "table cells has columns", commands=("run",))
    assert rows(copy, "SELECT count(*) FROM runs") == runs


@pytest.mark.parametrize("table,column,value,shown", [
    ("scores", "value", "'abc'", "value = 'abc' is not a number"),
    ("runs", "config", "'{bad'", "config = '{bad' is not JSON"),
    ("cells", "metrics", "'[\"psnr\"'", "metrics = '[\"psnr\"' is not JSON")])
def test_a_store_with_a_bad_row_is_refused_naming_the_table_and_row(cli, copy, table, column, value, shown):
    """A store that passes the header, quick_check and schema but holds a value no reader can use."""
    (rowid,), = rows(copy, f"SELECT max(rowid) FROM {table}")
    with sqlite3.connect(copy) as db:
        db.execute(f"UPDATE {table} SET {column} = {value} WHERE rowid = {rowid}")
    refused(cli, copy, f"table {table}, row {rowid}, {shown}", commands=("leaderboard", "report", "status", "run"))


def test_a_foreign_sqlite_file_is_refused(cli, tmp_path):
    foreign = tmp_path / "app.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    refused(cli, foreign, "not a denoise-bench store")


def test_an_older_store_is_upgraded_once(cli, copy):
    """A version-1 store (no cells.subset) is upgraded by a reader and by a run; its cells still count."""
    with sqlite3.connect(copy) as db:  # what version 2 added, taken away
        for table, column in (("cells", "subset"), ("cells", "sigma_in"), ("metric_info", "low"),
                              ("metric_info", "high")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("DROP TABLE estimates")
        db.execute("PRAGMA user_version = 1")
    before = digest(copy)
    assert cli("run", *RUN, "-m", "no-such-denoiser", "--store", copy).code == 2
    assert digest(copy) == before, "a run refused for its arguments upgraded the store"
    board = cli("leaderboard", "--store", copy, "--format", "csv")
    assert board.code == 0 and "noisy" in board.out, board.err
    assert rows(copy, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert "subset" in [row[1] for row in rows(copy, "PRAGMA table_info(cells)")]
    assert cli("run", *RUN, "--store", copy).code == 0


def test_an_sqlite_error_inside_a_store_block_is_one_line_naming_the_file(copy):
    with pytest.raises(StoreError) as caught:
        with Store(copy) as store:
            store.db.execute("INSERT INTO cells (key) VALUES ('x'), ('x')")
    assert str(copy) in str(caught.value) and "UNIQUE constraint failed" in str(caught.value)
    with pytest.raises(StoreError) as caught, Store(copy, create=False) as store:
        store.query("SELECT * FROM no_such_table")  # through pandas, which wraps the error
    assert str(copy) in str(caught.value) and "no such table: no_such_table" in str(caught.value)


def test_a_folder_as_store_is_one_line(cli, tmp_path):
    result = cli("status", "--store", tmp_path)
    assert result.code == 2 and "is a folder, not a file" in result.err


def as_reader(path: Path, *args: str) -> subprocess.CompletedProcess:
    """``denoise-bench ARGS`` as a user who cannot write ``path`` or its folder (nobody, when we are root)."""
    user = 65534 if os.geteuid() == 0 else None
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=120,
                          user=user, env={**os.environ, "HOME": str(path.parent), "MPLCONFIGDIR": "/tmp"})


def reader_can_run_python() -> str | None:
    """Why the read-only user cannot start this interpreter (None when it can)."""
    if os.geteuid() != 0:
        return None
    try:
        done = subprocess.run([sys.executable, "-c", "import bench"], capture_output=True, timeout=120, user=65534)
    except PermissionError as exc:
        return f"user nobody cannot start {sys.executable}: {exc.strerror}"
    return None if done.returncode == 0 else f"user nobody cannot import bench: {done.stderr.decode()[-200:]}"


def test_a_read_only_store_in_a_read_only_folder_can_be_read_not_run(made):
    if reason := reader_can_run_python():
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="ro-store-"))
    try:
        store = folder / "bench.sqlite"
        shutil.copy(made, store)
        store.chmod(0o444)
        folder.chmod(0o555)
        before = digest(store)
        for command, shown in ((["leaderboard", "--format", "csv"], "noisy"), (["status"], "done      2")):
            result = as_reader(store, *command, "--store", str(store))
            assert result.returncode == 0 and shown in result.stdout, result.stderr
        run = as_reader(store, "run", *RUN, "--store", str(store))
        assert run.returncode == 2, run.stderr
        assert run.stderr.count("\n") == 1 and "read-only" in run.stderr and str(store) in run.stderr
        assert digest(store) == before and sorted(os.listdir(folder)) == ["bench.sqlite"]
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
