"""The hooks a denoise-bench plugin can implement.

Every hook receives a ``register(name, factory, **metadata)`` callback; the
host owns the registry. A plugin implements only the hooks it needs.
"""

import pluggy

PROJECT = "denoise_bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_denoisers(register):
    """Register denoisers: ``factory(**params)`` returns ``obj(y, sigma) -> x_hat``.

    Metadata: ``sigma_aware`` (bool), ``description`` (str), ``native_poisson``
    (on Poisson data ``obj`` then gets the peak instead of sigma, through
    ``obj.denoise_poisson(y, peak)`` when it has that method).
    """


@hookspec
def register_datasets(register):
    """Register datasets: ``factory(**params)`` returns a ``bench.datasets.ImageSet``."""


@hookspec
def register_degradations(register):
    """Register degradations: ``factory()`` returns a ``bench.degradations.Degradation``."""


@hookspec
def register_metrics(register):
    """Register metrics: ``factory()`` returns ``metric(x_hat, x) -> (B,) tensor``.

    Metadata: ``higher_is_better`` (bool, required).
    """


@hookspec
def register_samplers(register):
    """Register score-based samplers: ``factory(**params)`` returns a sampler."""
