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


#: What ``learned=`` metadata must offer (``bench.training.model_store.Learner`` has it): checked by
#: its attributes, so the hook specs need not import the training layer above them.
LEARNER_ATTRIBUTES = ("name", "build", "sigma_aware", "defaults", "version", "auto_train")


def _is_learner(value) -> bool:
    return all(hasattr(value, name) for name in LEARNER_ATTRIBUTES) and callable(value.build) \
        and callable(value.defaults)


_is_learner.type_name = "bench.training.model_store.Learner"


def _is_fetchable(value) -> bool:
    return callable(getattr(value, "fetch", None)) and callable(getattr(value, "status", None))


_is_fetchable.type_name = "an object with fetch() and status()"
FETCH = MetadataKey(_is_fetchable)

DESCRIPTION = MetadataKey(str)


def _is_bounds(value) -> bool:
    return (isinstance(value, tuple) and len(value) == 2
            and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value))


_is_bounds.type_name = "a (low, high) tuple of numbers or None"


def _is_names(value) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) for v in value)


_is_names.type_name = "a tuple of names"

#: Per kind (the part of the hook name after ``register_``): the metadata keys it may declare.
METADATA: dict[str, dict[str, MetadataKey]] = {
    "denoisers": {"description": DESCRIPTION, "sigma_aware": MetadataKey(bool),
                  "native_poisson": MetadataKey(bool), "per_dataset": MetadataKey(bool),
                  "learned": MetadataKey(_is_learner), "per_level": MetadataKey(bool),
                  "per_channels": MetadataKey(bool), "noise_map": MetadataKey(bool),
                  "published_as": MetadataKey(str), "fetch": FETCH, "blind_members": MetadataKey(_is_names),
                  "outputs": MetadataKey(bool)},
    "datasets": {"description": DESCRIPTION, "uses_data_root": MetadataKey(bool), "fetch": FETCH},
    "degradations": {"description": DESCRIPTION},
    "metrics": {"description": DESCRIPTION, "higher_is_better": MetadataKey(bool, required=True),
                "bounds": MetadataKey(_is_bounds), "no_reference": MetadataKey(bool)},
    "samplers": {"description": DESCRIPTION},
    "estimators": {"description": DESCRIPTION, "gaussian_only": MetadataKey(bool)},
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
    - ``learned`` (``bench.training.model_store.Learner``): how the harness trains and stores it
      (``denoise-bench train``).
    - ``per_level`` (bool): the factory is also passed ``degradation=<family>`` (the noise
      family, ``gaussian`` or ``poisson``; a Gaussian noise map gives ``gaussian`` and its
      mean level) and ``level=<value>``: one model per level; a ``bench.Skip`` skips that
      level's cells only.
    - ``per_channels`` (bool): the factory is also passed ``channels=<C>``, the dataset's
      image channels (gray or colour models of one row).
    - ``noise_map`` (bool): on noise whose std varies in space (``gaussian-map``) the model
      is called with the per-pixel std, a (B, 1, H, W) tensor, instead of one level per image.
    - ``published_as`` (str): the method's name in published tables (``leaderboard
      --published``), e.g. ``"BM3D"``: declare it only where the row loads the paper's own
      weights (a family's rows, such as ``deepinv:``, are never compared: their weights are
      the library's).
    - ``blind_members`` (tuple of str): for a family (``name:``) that is ``sigma_aware``, the
      members that ignore sigma (``deepinv:DnCNN``): each is a blind row on the ``--sigma-in``
      axis, run once across its choices (on Poisson data it keeps the family's VST).
    - ``fetch`` (an object with ``fetch()`` and ``status() -> (cached, bytes)``): what
      ``denoise-bench fetch NAME`` downloads ahead, and ``list`` reports as cached.
    - ``outputs`` (bool): a family whose rows read a method's released result images from
      the folder its suffix names (``outputs:DIR``): ``obj(y, sigma, ids=[...])`` gets the batch's
      image ids, ``obj.check(images, dataset)`` refuses a folder that does not fit a dataset
      before anything runs, and the folder's path stays out of cell keys (``obj.fingerprint``,
      the files' content, stands for it).
    """


@hookspec
def register_datasets(register):
    """Register datasets: ``factory(**params)`` returns a ``bench.data.datasets.ImageSet``.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    - ``uses_data_root`` (bool): the factory takes ``root``, filled from ``--data-root``.
    - ``fetch`` (as for denoisers): data fetched by name (``denoise-bench fetch``).
    """


@hookspec
def register_degradations(register):
    """Register degradations: ``factory()`` returns a ``bench.noise.degradations.Degradation``.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    """


@hookspec
def register_metrics(register):
    """Register metrics: ``factory()`` returns ``metric(x_hat, x) -> (B,) tensor``.

    Metadata:

    - ``higher_is_better`` (bool, required): how leaderboards rank by it.
    - ``bounds`` ((low, high), None for unbounded): the values it can take; confidence
      intervals are clipped to them (SSIM's to [0, 1]... or [-1, 1]).
    - ``description`` (str): one line shown by ``denoise-bench list``.
    - ``no_reference`` (bool): it needs no clean reference (a no-reference quality score): it is
      called ``metric(x_hat, y)`` with the noisy input instead, and it is the only kind scored on a
      set of real noisy images without references (``rni15``).
    """


@hookspec
def register_samplers(register):
    """Register score-based samplers: ``factory(**params)`` returns a ``bench.sampling.samplers.Sampler``.

    It gives ``schedule()`` (sigma, step size per step), ``step(x, score, step_size,
    generator)`` for all chains at once, and optionally ``final_step(x, score_fn)``.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    """


@hookspec
def register_estimators(register):
    """Register noise-level estimators: ``factory(**params)`` returns ``estimate(y) -> (B,) tensor``,
    the Gaussian noise std of each noisy image of ``y`` (B, C, H, W), in [0, 1] units.

    ``--sigma-in estimate:NAME`` hands each image's estimate to sigma-aware denoisers;
    ``leaderboard --estimators`` scores the estimates against the true level.

    Metadata:

    - ``description`` (str): one line shown by ``denoise-bench list``.
    - ``gaussian_only`` (bool): it assumes Gaussian noise (refused on a Poisson grid).
    """
