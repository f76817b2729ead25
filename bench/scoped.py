"""Run-wide settings that factories read: a context variable set for the duration of a block."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def set_for_block(variable: ContextVar[T], value: T) -> Iterator[T]:
    """``variable`` holds ``value`` inside the ``with`` block, and its old value after it."""
    token = variable.set(value)
    try:
        yield value
    finally:
        variable.reset(token)
