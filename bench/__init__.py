"""denoise-bench: a benchmarking harness for image denoisers and score-based samplers."""

from bench.errors import Skip, UsageError
from bench.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["hookimpl", "hookspec", "Skip", "UsageError", "__version__"]
