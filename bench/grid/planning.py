"""A config's whole grid: its denoiser cells and the sampler cells of its ``[[sampling]]`` tables."""

from __future__ import annotations

from bench.config import RunConfig
from bench.data import fetching
from bench.grid.cells import Grid, build_denoiser_grid
from bench.grid.sampler_cells import build_sampling
from bench.registry import Registry
from bench.training.model_store import ModelContext, using_context


def build_grid(config: RunConfig, registry: Registry, quiet: bool = False) -> Grid:
    """Resolve every name, parse every level, load data and build denoisers (nothing written).

    Learned denoisers load (or first train, unless ``config.no_train``) from the
    model store ``bench.training.model_store.ModelContext.for_run`` derives from the config.
    """
    with using_context(ModelContext.for_run(config, registry, quiet)), \
            fetching.using(fetching.FetchSettings.resolve(config.data_root, config.offline, quiet)):
        grid = build_denoiser_grid(config, registry)
        grid.sampling = build_sampling(config, registry)
        return grid
