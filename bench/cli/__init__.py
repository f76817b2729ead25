"""The ``denoise-bench`` command line: one module per subcommand."""

from __future__ import annotations

import argparse
import sys

from bench import __version__, fetching
from bench.cli import compare, fetch, leaderboard, listing, report, run, sample, status, train
from bench.errors import UsageError

COMMANDS = (run, fetch, listing, leaderboard, sample, compare, report, status, train)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit code 2."""

    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="denoise-bench", description="Benchmark image denoisers and samplers.")
    parser.add_argument("--version", action="version", version=f"denoise-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.configure(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
        with fetching.using(fetch.settings_for(args)):
            return args.func(args)
    except UsageError as exc:
        print(f"denoise-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("denoise-bench: interrupted; finished cells are saved, rerun to resume", file=sys.stderr)
        return 130
