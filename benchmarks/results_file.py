"""Write one benchmark's section of benchmarks/RESULTS.md, leaving the others alone."""

from __future__ import annotations

import platform
import re
from datetime import date
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = ("# Benchmark results\n\n"
          "Each section is written by the script it names; rerun it to refresh. "
          "Ratios compare against a reference measured in the same process.\n")


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {date.today().isoformat()}")


def update_section(name: str, body: str) -> None:
    """Replace (or append) the section between this benchmark's markers."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"<!-- begin {name} -->\n{body.strip()}\n\n_Measured on {machine()}._\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
