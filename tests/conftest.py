"""Shared fixtures: run the CLI in-process and capture what it prints."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

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
