"""Start-up cost of the command line: what each command imports and how long it takes to answer.

Each command runs as a fresh process, several times; the best wall time is kept
(a busy machine only adds time). The floor is ``python -c "import torch"``: a
`run` cannot start its first cell sooner. Also recorded: ``python -X importtime``
of ``import bench.cli`` (total and the heaviest imports) and which heavy
libraries ``list`` and a one-cell `noisy` run import.

    python benchmarks/startup.py [--repeats 3] [--save before.json] [--before before.json]

``--save`` keeps the figures as JSON; ``--before`` adds a column from such a file
(the figures of an earlier commit, measured the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

PYTHON = sys.executable
CLI = [PYTHON, "-m", "bench"]
HEAVY = ("torch", "torchvision", "deepinv", "pandas", "scipy.stats", "skimage.restoration",
         "matplotlib", "distributed")
ONE_CELL = ["run", "-d", "lfw-faces[split=test]", "-n", "gaussian:0.1", "-m", "noisy", "--quiet"]


def best_wall(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def first_cell(store: str, repeats: int) -> tuple[float, float]:
    """(import torch, then start-up until the first cell starts), in one fresh process; best of repeats.

    The cell's start is when ``bench.grid.runner.run_cell`` is first called.
    """
    code = f"""
import sys, time
start = time.perf_counter()
import torch
after_torch = time.perf_counter()
import bench.grid.runner as runner
first = []
run_cell = runner.run_cell
def stamped(*args, **kwargs):
    first.append(first[0] if first else time.perf_counter())
    return run_cell(*args, **kwargs)
runner.run_cell = stamped
from bench.cli import main
main({ONE_CELL!r} + ['--store', sys.argv[1]])
print(after_torch - start, first[0] - after_torch, file=sys.stderr)
"""
    found = []
    for i in range(repeats):
        done = subprocess.run([PYTHON, "-c", code, f"{store}.first{i}"], capture_output=True, text=True,
                              check=True)
        found.append(tuple(float(v) for v in done.stderr.strip().splitlines()[-1].split()))
    return min(t for t, _ in found), min(b for _, b in found)


def imported(args: list[str]) -> list[str]:
    """Which heavy libraries a command imports (run in-process in a fresh interpreter)."""
    code = ("import sys; from bench.cli import main; main(sys.argv[1:]); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, check=True)
    return [m for m in done.stderr.strip().splitlines()[-1].split(",") if m]


def import_profile() -> tuple[float, list[tuple[str, float]]]:
    """``-X importtime`` of ``import bench.cli``: total seconds and the top-level heavy imports."""
    done = subprocess.run([PYTHON, "-X", "importtime", "-c", "import bench.cli"],
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit():
            rows.append((name.rstrip(), int(cumulative) / 1e6))
    total = next(seconds for name, seconds in rows if name.strip() == "bench.cli")
    heavy = sorted(((n.strip(), s) for n, s in rows if n.strip() in HEAVY), key=lambda r: -r[1])
    return total, heavy


def measure(repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        store = str(Path(folder) / "one.sqlite")
        figures = {
            "python -c pass": best_wall([PYTHON, "-c", "pass"], repeats),
            "python -c 'import torch'": best_wall([PYTHON, "-c", "import torch"], repeats),
            "denoise-bench --version": best_wall(CLI + ["--version"], repeats),
            "denoise-bench --help": best_wall(CLI + ["--help"], repeats),
            "denoise-bench run --help": best_wall(CLI + ["run", "--help"], repeats),
            "denoise-bench list denoisers": best_wall(CLI + ["list", "denoisers"], repeats),
            # a fresh store each time, so the cell really runs
            "denoise-bench run (one noisy cell)": min(
                best_wall(CLI + ONE_CELL + ["--store", f"{store}.{i}"], 1) for i in range(repeats)),
        }
        total, heavy = import_profile()
        torch_seconds, beyond = first_cell(store, repeats)
        return {"wall": figures, "torch_in_process": torch_seconds, "before_first_cell": beyond,
                "import_bench_cli": total, "heavy_imports": heavy,
                "list_imports": imported(["list", "denoisers"]),
                "run_imports": imported(ONE_CELL + ["--store", str(Path(folder) / "imports.sqlite")]),
                "load": os.getloadavg()}


def table(now: dict, before: dict | None) -> str:
    if before is None:
        rows = [f"| `{name}` | {seconds:.2f} |" for name, seconds in now["wall"].items()]
        return "\n".join(["| command | now (s) |", "|---|---|", *rows])
    rows = []
    for name, seconds in now["wall"].items():
        old = before["wall"].get(name)
        rows.append(f"| `{name}` | {'-' if old is None else f'{old:.2f}'} | {seconds:.2f} |")
    return "\n".join(["| command | before (s) | now (s) |", "|---|---|---|", *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", help="write the figures to this JSON file")
    parser.add_argument("--before", help="JSON figures of an earlier commit, shown beside")
    args = parser.parse_args()
    now = measure(args.repeats)
    if args.save:
        Path(args.save).write_text(json.dumps(now, indent=2))
    before = json.loads(Path(args.before).read_text()) if args.before else None

    def profile(figures: dict) -> str:
        heavy = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in figures["heavy_imports"]) or "none"
        return (f"`import bench.cli` {figures['import_bench_cli']:.2f} s (heavy imports inside it: {heavy}); "
                f"`list denoisers` imports {', '.join(figures['list_imports']) or 'none of them'}; "
                f"a one-cell `noisy` run imports {', '.join(figures['run_imports']) or 'none of them'}")

    def load(figures: dict) -> str:
        return ", ".join(f"{v:.1f}" for v in figures["load"])

    first = (f"**{now['before_first_cell']:.2f} s** (after {now['torch_in_process']:.2f} s of `import torch`)")
    if before and "before_first_cell" in before:
        first += (f"; before: {before['before_first_cell']:.2f} s "
                  f"(after {before['torch_in_process']:.2f} s of `import torch`)")
    lines = [f"- now: {profile(now)}."] + ([f"- before: {profile(before)}."] if before else [])
    body = f"""## Start-up: how fast the command line answers (`benchmarks/startup.py`)

Best of {args.repeats} fresh processes each. Goals: `--help` and `--version` under 0.5 s; a one-cell
`noisy` run (`{' '.join(ONE_CELL)}`) no more than 1 s beyond `import torch` before its first cell.

{table(now, before)}

Start-up of the one-cell `noisy` run beyond `import torch`, until its cell starts (in one process:
`import torch` timed, then `bench.cli.main` until `bench.grid.runner.run_cell` is first called): {first}.

{chr(10).join(lines)}

Load average while measuring (1, 5, 15 min): {load(now)}{f" (before: {load(before)})" if before else ""};
the 2 cores were shared with other jobs, so absolute figures are noisy."""
    update_section("startup", body)
    print(body)


if __name__ == "__main__":
    main()
