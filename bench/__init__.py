"""denoise-bench: a benchmarking harness for image denoisers and score-based samplers.

The Python API (docs/python.md): ``bench.evaluate(denoisers, suite, ...)`` runs a grid and
returns ``bench.Results``; ``bench.denoiser(obj, name=..., sigma_aware=...)`` declares an
in-process model; ``bench.validator(dataset, sigma=...)`` scores a model inside a training loop;
``bench.suites()`` lists the named suites. Plugins use ``hookimpl``, ``Skip`` and ``UsageError``.
"""

from bench.errors import Skip, UsageError
from bench.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["evaluate", "validator", "denoiser", "suites", "Results", "hookimpl", "hookspec", "Skip",
           "UsageError", "__version__"]

#: Public name -> (module, attribute): imported on first use, so ``import bench`` (and the
#: command line's start-up) does not load torch and pandas.
_LAZY = {"evaluate": ("bench.api.evaluate", "evaluate"), "validator": ("bench.api.validator", "validator"),
         "denoiser": ("bench.api.inprocess", "denoiser"), "suites": ("bench.api.suites", "suites_table"),
         "Results": ("bench.api.results", "Results")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
