"""Exceptions that carry a user-facing message."""


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit code 2, nothing written."""


class Skip(Exception):
    """Raised by a plugin factory when it cannot run here (missing extra, weights...)."""
