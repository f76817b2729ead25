"""``bench.validator``: a benchmark number inside a training loop, drawn once, written nowhere.

``v = bench.validator("set12", sigma=25/255, protocol="paper")`` loads the set and draws its
noisy inputs once (the seeded draw every grid uses), keeps clean and noisy tensors on the
device, and ``v(model)`` scores a model on them through the code a grid cell runs
(``bench.grid.runner.run_cell``): the number ``bench.evaluate`` stores for that model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api.inprocess import called, denoiser, resolve_sigma_aware, restored
from bench.data.datasets import noise_name
from bench.errors import UsageError
from bench.grid.cells import Denoiser
from bench.grid.inputs import Batch, make_batches
from bench.grid.runner import run_cell
from bench.registry import Entry
from bench.specs import Spec, parse_spec


@dataclass
class Validator:
    """Call it with a model: the mean of ``metric`` over the set's images (``per_image=True``: a
    dict image id -> value too)."""

    dataset: str
    sigma: float
    protocol: str
    metric: str
    batches: list[Batch]
    #: (the metric, its registry entry), as a grid's ``metrics`` holds them.
    scorer: tuple
    device: torch.device

    @property
    def images(self) -> int:
        return sum(len(batch.ids) for batch in self.batches)

    def __call__(self, model, per_image: bool = False, sigma_aware: bool | None = None):
        declared = denoiser(model, sigma_aware=sigma_aware)
        sigma_aware = resolve_sigma_aware(declared, "model")
        entry = Entry("denoisers", "model", lambda: model, "python", "", {"sigma_aware": sigma_aware})
        row = Denoiser(Spec("model"), entry, model=called(model, sigma_aware))
        with restored([model]):
            if isinstance(model, torch.nn.Module):
                model.eval()
            result = run_cell(row, "sigma", self.batches, {self.metric: self.scorer}, self.protocol, self.device)
        if result.status != "done":
            raise UsageError(f"validating on {self.dataset}: {result.error}")
        values = {image: scores[self.metric] for image, scores in result.scores.items()}
        mean = sum(values.values()) / len(values)
        return (mean, values) if per_image else mean


def validator(dataset: str, sigma: float, *, protocol: str = "default", metric: str = "psnr",
              limit_images: int | None = None, seed: int = 0, repetition: int = 0, device: str = "auto",
              batch_size: int = 8, plugins=None, data_root: str | None = None,
              offline: bool | None = None) -> Validator:
    """A ``Validator`` of Gaussian noise at ``sigma`` (in [0, 1] units: 25/255) on a named dataset.

    The noisy draw is that of a grid with the same dataset, level, seed and repetition, so
    ``v(model)`` equals the mean ``bench.evaluate(model, datasets=dataset, noise=...)`` stores.
    """
    from bench.config import make_config
    from bench.data import fetching
    from bench.device import resolve_device
    from bench.grid.cells import build_degradation, load_dataset
    from bench.plugins import load_plugins
    from bench.registry import Registry

    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise UsageError(f"sigma must be a number in [0, 1] units (25/255), got {sigma!r}")
    config = make_config({}, {"datasets": [dataset], "noise": [f"gaussian:{float(sigma)!r}"], "denoisers": ["noisy"],
                              "metrics": [metric], "protocol": protocol, "limit_images": limit_images, "seed": seed,
                              "device": device, "batch_size": batch_size, "plugins": plugins,
                              "data_root": data_root, "offline": offline})
    registry = Registry(load_plugins(config.plugins))
    _, degradation, _ = build_degradation(registry, "gaussian")
    level = degradation.parse_level(f"{float(sigma)!r}")
    spec = parse_spec(dataset, "dataset")
    with fetching.using(fetching.FetchSettings.resolve(config.data_root, config.offline, True)):
        images = load_dataset(registry, spec, config)
    target = resolve_device(config.device)
    batches = make_batches(images, noise_name(spec.label, images), degradation, level, repetition, config.seed,
                           config.batch_size, target, config.protocol)
    scorer = (registry.build("metrics", Spec(metric)), registry.get("metrics", metric))
    return Validator(spec.label, level, config.protocol, metric, batches, scorer, target)
