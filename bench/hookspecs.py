"""The hooks a denoise-bench plugin can implement, and the metadata each may declare.

Every hook receives a ``register(name, factory, **metadata)`` callback; the
host owns the registry. A plugin implements only the hooks it needs. The
metadata keys of each kind are declared in ``METADATA``: an unknown key or a
value of the wrong type marks the plugin broken, as a misspelt hook does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pluggy

PROJECT = "denoise_bench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class MetadataKey:
    """One metadata key: the type its value must have, and whether it is required."""

    type: type | tuple[type, ...] | Callable[[object], bool]
    required: bool = False

    def accepts(self, value) -> bool:
        if isinstance(self.type, (type, tuple)):
            return isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        return self.type(value)

    @property
    def type_name(self) -> str:
        if isinstance(self.type, tuple):
            return " or ".join(t.__name__ for t in self.type)
        return getattr(self.type, "type_name", getattr(self.type, "__name__", str(self.type)))


def _is_learner(value) -> bool:
    from bench.model_store import Learner  # imports torch: only when a plugin declares one

    return isinstance(value, Learner)


_is_learner.type_name = "bench.model_store.Learner"

DESCRIPTION = MetadataKey(str)

#: Per kind (the part of the hook name after ``register_``): the metadata keys it may declare.
METADATA: dict[str, dict[str, MetadataKey]] = {
    "denoisers": {"description": DESCRIPTION, "sigma_aware": MetadataKey(bool),
                  "native_poisson": MetadataKey(bool), "per_dataset": MetadataKey(bool),
                  "learned": MetadataKey(_is_learner)},
    "datasets": {"description": DESCRIPTION, "uses_data_root": MetadataKey(bool)},
    "degradations": {"description": DESCRIPTION},
    "metrics": {"description": DESCRIPTION, "higher_is_better": MetadataKey(bool, required=True)},
    "samplers": {"description": DESCRIPTION},
}


@hookspec
def register_denoisers(register):
    """Register denoisers: ``factory(**params)`` returns ``obj(y, sigma) -> x_hat``.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    - ``sigma_aware`` (bool): ``obj`` uses the sigma it is given; on Poisson data it
      then works in the Anscombe domain at sigma = 1 / (2 sqrt(peak)) (``vst=none``
      hands it the raw data with the Gaussian-equivalent sigma instead).
    - ``native_poisson`` (bool): on Poisson data ``obj`` gets the peak instead of sigma,
      through ``obj.denoise_poisson(y, peak)`` when it has that method.
    - ``per_dataset`` (bool): the factory is also passed ``dataset=<label>`` (models fit
      to one dataset, such as oracles and learned denoisers).
    - ``learned`` (``bench.model_store.Learner``): how the harness trains and stores it
      (``denoise-bench train``).
    """


@hookspec
def register_datasets(register):
    """Register datasets: ``factory(**params)`` returns a ``bench.datasets.ImageSet``.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    - ``uses_data_root`` (bool): the factory takes ``root``, filled from ``--data-root``.
    """


@hookspec
def register_degradations(register):
    """Register degradations: ``factory()`` returns a ``bench.degradations.Degradation``.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    """


@hookspec
def register_metrics(register):
    """Register metrics: ``factory()`` returns ``metric(x_hat, x) -> (B,) tensor``.

    Metadata:

    - ``higher_is_better`` (bool, required): how leaderboards rank by it.
    - ``description`` (str): one line shown by ``denoise-bench list``.
    """


@hookspec
def register_samplers(register):
    """Register score-based samplers: ``factory(**params)`` returns a sampler.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    """
