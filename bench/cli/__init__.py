"""The ``denoise-bench`` command line: one module per subcommand.

Only the chosen subcommand's module is imported (it pulls in torch, pandas,
plugins...), so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys

from bench import __version__
from bench.errors import UsageError

#: name -> (module under bench.cli, one-line help); the module's ``configure(parser)`` adds the rest.
COMMANDS = {
    "run": ("run", "run a benchmark grid"),
    "fetch": ("fetch", "download and verify datasets or weights by name"),
    "list": ("listing", "list registered denoisers, datasets, ... or plugins"),
    "leaderboard": ("leaderboard", "rank denoisers from a results store"),
    "sample": ("sample", "draw samples with a score-based sampler and score them"),
    "compare": ("compare", "paired comparison of two denoisers (bootstrap CI, win rate)"),
    "report": ("report", "write an HTML report (leaderboards, figures, galleries, provenance)"),
    "status": ("status", "summarise the runs and cells in a store"),
    "train": ("train", "train a learned denoiser (mlp-dae, conv-dae, drunet-small, ...)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit code 2, and a flag is only its full name
    (``--repetition`` is not taken for ``--repetitions``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(message + self.suggestion(message))

    def suggestion(self, message: str) -> str:
        """`` (did you mean --repetitions?)`` for an unrecognized flag close to a known one."""
        match = re.match(r"unrecognized arguments: (-[^\s=]+)", message)
        if not match:
            return ""
        parsers = [self] + [choice for action in self._actions
                            if isinstance(action, argparse._SubParsersAction) for choice in action.choices.values()]
        known = [flag for parser in parsers for flag in parser._option_string_actions]
        close = difflib.get_close_matches(match.group(1), known, n=1)
        return f" (did you mean {close[0]}?)" if close else ""


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in argv (options before it are top-level flags)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` is configured (all of them when argv is None)."""
    parser = _Parser(prog="denoise-bench", description="Benchmark image denoisers and samplers.")
    parser.add_argument("--version", action="version", version=f"denoise-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chosen = None if argv is None else chosen_command(argv)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if argv is None or name == chosen:
            importlib.import_module(f"bench.cli.{module}").configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(argv).parse_args(argv)
        from bench.cli.options import settings_for
        from bench.data import fetching

        with fetching.using(settings_for(args)):
            return args.func(args)
    except UsageError as exc:
        print(f"denoise-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("denoise-bench: interrupted; finished cells are saved, rerun to resume", file=sys.stderr)
        return 130
