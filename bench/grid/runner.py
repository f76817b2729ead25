"""Run cells: degrade (seeded), denoise, check, clamp, score. No I/O but saved outputs."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.datasets import ImageSet
from bench.device import synchronize
from bench.grid.cells import Cell, Denoiser, Grid
from bench.grid.outputs import output_dir, save_outputs
from bench.grid.sampler_runner import run_sampler_cell
from bench.noise.degradations import Degradation
from bench.noise.vst import AnscombeDenoiser
from bench.plugins import error_line
from bench.seeding import noise_seed
from bench.store.database import CellResult


@dataclass
class Batch:
    """Images of one shape: ids, clean x, noisy y, Gaussian-equivalent sigma and level."""

    ids: list[str]
    x: torch.Tensor
    y: torch.Tensor
    sigma: torch.Tensor
    level: torch.Tensor

    def denoise(self, model, mode: str) -> torch.Tensor:
        """Call a denoiser the way the cell's mode says (see ``bench.grid.cells.call_mode``)."""
        if mode == "anscombe":
            return AnscombeDenoiser(model)(self.y, self.level)
        if mode == "peak":  # one that also serves Gaussian data takes the peak by name
            return getattr(model, "denoise_poisson", model)(self.y, self.level)
        return model(self.y, self.sigma)


class DenoiserOutputError(Exception):
    """A denoiser returned something that cannot be scored."""


def shape_batches(images: ImageSet, batch_size: int) -> list[list[int]]:
    """Indices of same-shaped images, in chunks of at most batch_size, in dataset order."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, image in enumerate(images.images):
        groups[tuple(image.shape)].append(i)
    return [idx[i:i + batch_size] for idx in groups.values() for i in range(0, len(idx), batch_size)]


def noisy_input(y: torch.Tensor, protocol: str) -> torch.Tensor:
    """The noisy input as the protocol hands it over: as drawn (default, paper), clipped to [0, 1]
    (clip: the FFDNet Clip demos), or clipped and rounded to 8 bits (uint8: the NTIRE challenges)."""
    if protocol in ("clip", "uint8"):
        y = y.clamp(0.0, 1.0)
    return torch.round(y * 255.0) / 255.0 if protocol == "uint8" else y


def make_batches(images: ImageSet, dataset: str, degradation: Degradation, level: float,
                 repetition: int, base_seed: int, batch_size: int, device: torch.device,
                 protocol: str = "default") -> list[Batch]:
    """Seeded noisy inputs for a whole dataset, drawn per image on the CPU (``noisy_input`` of the protocol)."""
    batches = []
    for idx in shape_batches(images, batch_size):
        ids = [images.ids[i] for i in idx]
        clean = [images.images[i] for i in idx]
        seeds = [noise_seed(base_seed, dataset, i, degradation.name, level, repetition) for i in ids]
        y = degradation.apply(clean, level, seeds).to(device)
        levels = torch.full((len(ids),), float(level), device=device)
        batches.append(Batch(ids, torch.stack(clean).to(device), noisy_input(y, protocol),
                             degradation.sigma(y, level), levels))
    return batches


def check_output(out, y: torch.Tensor) -> torch.Tensor:
    """The denoiser's output as a float tensor shaped like y, or DenoiserOutputError."""
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise DenoiserOutputError(f"returned {type(out).__name__}, expected a tensor")
    if out.shape != y.shape:
        raise DenoiserOutputError(f"returned shape {tuple(out.shape)}, expected {tuple(y.shape)}")
    if not out.is_floating_point():
        raise DenoiserOutputError(f"returned dtype {out.dtype}, expected a float tensor")
    if not torch.isfinite(out).all():
        raise DenoiserOutputError("returned NaN or inf values")
    return out.to(device=y.device, dtype=torch.float32)


def clamp_for_scoring(images: torch.Tensor, protocol: str) -> torch.Tensor:
    """Clamp to [0, 1]; the papers' protocols also round to 8 bits (as DPIR's test script)."""
    images = images.clamp(0.0, 1.0)
    if protocol != "default":
        images = torch.round(images * 255.0) / 255.0
    return images


def run_cell(denoiser: Denoiser, mode: str, batches: list[Batch], metrics: dict, protocol: str,
             device: torch.device, keep: tuple[Path, set[str]] | None = None) -> CellResult:
    """Denoise and score every batch; any exception becomes an error result.

    ``keep`` = (folder, image ids): save those outputs as PNG.
    """
    if unbuilt := denoiser.unbuilt_result():
        return unbuilt
    start = time.perf_counter()
    scores: dict[str, dict[str, float]] = {}
    image_seconds: dict[str, float] = {}
    try:
        for batch in batches:
            synchronize(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = batch.denoise(denoiser.model, mode)
            synchronize(device)
            per_image = (time.perf_counter() - t0) / len(batch.ids)
            out = clamp_for_scoring(check_output(out, batch.y), protocol)
            clean = clamp_for_scoring(batch.x, protocol)
            if keep:
                kept = [i for i, image_id in enumerate(batch.ids) if image_id in keep[1]]
                save_outputs(keep[0], [batch.ids[i] for i in kept], out[kept])
            values = {name: fn(out, clean).cpu().tolist() for name, (fn, _) in metrics.items()}
            for i, image_id in enumerate(batch.ids):
                scores[image_id] = {name: v[i] for name, v in values.items()}
                image_seconds[image_id] = per_image
    except Exception as exc:
        return CellResult("error", error_line(exc), seconds=time.perf_counter() - start)
    return CellResult("done", seconds=time.perf_counter() - start,
                      denoise_seconds=sum(image_seconds.values()),
                      scores=scores, image_seconds=image_seconds)


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

    def batches(self, cell: Cell) -> list[Batch]:
        if cell.noisy_group != self._group:
            config = self.grid.config
            degradation = self.grid.degradations[cell.degradation][0]
            self._batches = make_batches(self.grid.datasets[cell.dataset], cell.dataset, degradation,
                                         cell.level, cell.repetition, config.seed,
                                         config.batch_size, self.device, config.protocol)
            self._group = cell.noisy_group
        return self._batches

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
        return run_cell(self.grid.denoisers[cell.model], cell.mode, batches, self.grid.metrics,
                        config.protocol, self.device, keep)
