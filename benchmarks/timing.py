"""Timing for the benchmark scripts: the median wall time of repeated calls."""

from __future__ import annotations

import statistics
import time


def median_seconds(call, repeats: int = 5, warm_up: bool = True) -> float:
    """Median seconds of ``repeats`` calls of ``call()``, after one untimed call if ``warm_up``."""
    if warm_up:
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
