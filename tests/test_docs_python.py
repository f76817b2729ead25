"""docs/python.md: every code block runs, top to bottom, as one script (a new user's session)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_page_has_its_examples():
    blocks = code_blocks(DOC.read_text())
    assert len(blocks) >= 5 and any("bench.validator" in b for b in blocks) and any("awgn-gray" in b for b in blocks)


def test_every_code_block_of_the_python_page_runs(mirror, tmp_path):
    """Set12 for the suite block comes from the local mirror (DENOISE_BENCH_MIRROR)."""
    script = tmp_path / "walkthrough.py"
    script.write_text("\n\n".join(code_blocks(DOC.read_text())))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation PSNR" in done.stdout and "declared sigma_aware=True" in done.stdout
    assert "30.44" in done.stdout  # DnCNN-S's published Set12 number beside the user's row
