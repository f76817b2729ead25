"""Run cells: degrade (seeded), denoise, check, clamp, score. No I/O but saved outputs."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch

from bench.data.datasets import noise_name
from bench.device import synchronize
from bench.grid.cells import Cell, Denoiser, Grid
from bench.grid.inputs import Batch, make_batches
from bench.grid.outputs import output_dir, save_outputs
from bench.grid.sampler_runner import run_sampler_cell
from bench.grid.scoring import check_output, clamp_for_scoring, metric_values
from bench.noise.sigma_in import ORACLE, RESIDUAL, SigmaIn
from bench.plugins import error_line
from bench.store.database import CellResult


def run_cell(denoiser: Denoiser, mode: str, batches: list[Batch], metrics: dict, protocol: str,
             device: torch.device, keep: tuple[Path, set[str]] | None = None,
             sigma_in: SigmaIn = SigmaIn(ORACLE), estimates: list[torch.Tensor] | None = None,
             residual: bool = False) -> CellResult:
    """Denoise and score every batch; any exception becomes an error result.

    ``keep`` = (folder, image ids): save those outputs as PNG. ``sigma_in``: the level the
    denoiser is given; ``estimates``: per batch, each image's estimated level (``estimate:NAME``),
    recorded with each image's residual level where ``residual`` (real noise: the estimates' truth).
    """
    if unbuilt := denoiser.unbuilt_result():
        return unbuilt
    start = time.perf_counter()
    scores: dict[str, dict[str, float]] = {}
    image_seconds: dict[str, float] = {}
    try:
        for index, batch in enumerate(batches):
            synchronize(device)
            t0 = time.perf_counter()
            model = functools.partial(denoiser.model, ids=list(batch.ids)) \
                if denoiser.entry.metadata.get("outputs") else denoiser.model
            with torch.no_grad():
                out = batch.denoise(model, mode, sigma_in, estimates[index] if estimates else None)
            synchronize(device)
            per_image = (time.perf_counter() - t0) / len(batch.ids)
            out = clamp_for_scoring(check_output(out, batch.y), protocol)
            clean = clamp_for_scoring(batch.x, protocol)
            if keep:
                kept = [i for i, image_id in enumerate(batch.ids) if image_id in keep[1]]
                save_outputs(keep[0], [batch.ids[i] for i in kept], out[kept])
            values = {name: metric_values(f"metric {name}", fn(out, reference(entry, clean, batch)), batch.ids)
                      for name, (fn, entry) in metrics.items()}
            for i, image_id in enumerate(batch.ids):
                scores[image_id] = {name: v[i] for name, v in values.items()}
                image_seconds[image_id] = per_image
    except Exception as exc:
        return CellResult("error", error_line(exc), seconds=time.perf_counter() - start)
    recorded = None
    if estimates:
        recorded = {sigma_in.estimator: by_image(batches, estimates)}
        if residual:
            recorded[RESIDUAL] = by_image(batches, [batch.sigma for batch in batches])
    return CellResult("done", seconds=time.perf_counter() - start,
                      denoise_seconds=sum(image_seconds.values()),
                      scores=scores, image_seconds=image_seconds, estimates=recorded)


def by_image(batches: list[Batch], values: list[torch.Tensor]) -> dict[str, float]:
    """{image id: value} from one (B,) tensor per batch."""
    return {image_id: float(value) for batch, batch_values in zip(batches, values)
            for image_id, value in zip(batch.ids, batch_values.tolist())}


def reference(entry, clean: torch.Tensor, batch: Batch) -> torch.Tensor:
    """What a metric scores against: the clean image, or the noisy input for a metric that needs
    no reference (``no_reference``: it may ignore it)."""
    return batch.y if entry.metadata.get("no_reference") else clean


def place_models(grid: Grid, device: torch.device) -> None:
    """Move torch-module denoisers to the run's device, in eval mode."""
    for denoiser in grid.denoisers.values():
        if isinstance(denoiser.model, torch.nn.Module):
            denoiser.model = denoiser.model.to(device).eval()


class CellRunner:
    """Runs cells of one grid on one device, reusing noisy inputs across denoisers."""

    def __init__(self, grid: Grid, device: torch.device):
        self.grid, self.device = grid, device
        self.cells = {cell.key: cell for cell in grid.cells}
        self.sampler_cells = {cell.key: cell for cell in grid.sampling.cells} if grid.sampling else {}
        place_models(grid, device)
        self._group, self._batches = None, None
        self._estimates: dict[str, list[torch.Tensor]] = {}

    def batches(self, cell: Cell) -> list[Batch]:
        if cell.noisy_group != self._group:
            config = self.grid.config
            degradation = self.grid.degradations[cell.degradation][0]
            images = self.grid.datasets[cell.dataset]
            self._batches = make_batches(images, noise_name(cell.dataset, images), degradation,
                                         cell.level, cell.repetition, config.seed,
                                         config.batch_size, self.device, config.protocol)
            self._group, self._estimates = cell.noisy_group, {}
        return self._batches

    def estimates(self, cell: Cell, batches: list[Batch]) -> list[torch.Tensor] | None:
        """Each image's estimated level for an ``estimate:NAME`` cell, once per noise group and estimator."""
        name = self.grid.sigma_choices[cell.sigma_in].estimator
        if name is None:
            return None
        if name not in self._estimates:
            estimate = self.grid.estimators[name]
            self._estimates[name] = [torch.tensor(metric_values(f"estimator {name}", estimate(batch.y.clone()),
                                                                batch.ids), dtype=torch.float32)
                                     for batch in batches]
        return self._estimates[name]

    def run(self, key: str) -> CellResult:
        config = self.grid.config
        if key in self.sampler_cells:
            return run_sampler_cell(self.grid.sampling, self.sampler_cells[key], config.seed,
                                    self.device, config.store)
        cell = self.cells[key]
        keep = None
        if config.save_images:
            keep = (output_dir(config.store, cell.key),
                    set(self.grid.datasets[cell.dataset].ids[:config.save_images]))
        try:
            batches = self.batches(cell)
        except Exception as exc:
            return CellResult("error", f"degrading the inputs failed: {error_line(exc)}")
        try:
            estimates = self.estimates(cell, batches)
        except Exception as exc:
            return CellResult("error", f"estimating the noise level failed: {error_line(exc)}")
        truth = self.grid.degradations[cell.degradation][0].captured and self.grid.datasets[cell.dataset].reference
        return run_cell(self.grid.denoisers[cell.model], cell.mode, batches, self.grid.metrics_for(cell.dataset),
                        config.protocol, self.device, keep, self.grid.sigma_choices[cell.sigma_in], estimates,
                        residual=truth)
