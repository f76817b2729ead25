"""The console entry point: the command line, where a Ctrl-C during start-up exits 130 quietly."""

import sys


def main() -> None:
    try:
        from bench.cli import main as cli_main  # imports torch and friends: seconds
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(cli_main())
