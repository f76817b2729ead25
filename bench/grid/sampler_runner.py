"""Run one sampler cell: all chains as one batch on the device, checked, saved and scored.

Beside the metrics each cell records its cost: ``nfe`` (model evaluations per
chain) as a score, and the chains' wall time (the store's ``sample_seconds``).
A row that needs no score (``real-data``) draws held-out real images instead.

A crash, a chain that turns NaN or inf, or samples of the wrong shape make an
``error`` cell with the reason; the grid goes on. The samples go to
``<store folder>/samples/<cell key>/`` (tensor file, PNG grid or 2-D scatter,
metrics JSON) for the report's figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.device import synchronize
from bench.grid.outputs import to_uint8
from bench.grid.sampler_cells import SamplerCell, SamplingData, SamplingGrid
from bench.plugins import error_line
from bench.sampling import sample_metrics
from bench.sampling.samplers import Sampler, SampleResult, initial_state, make_generator, run_chains
from bench.sampling.score import as_score
from bench.seeding import noise_seed
from bench.store.database import CellResult

#: The "image id" under which a sampler cell's metrics travel in a CellResult.
SCORE_ID = "samples"
#: Samples shown in a saved grid.
GRID_MAX = 64


def samples_dir(store_path: str | Path, cell_key: str) -> Path:
    return Path(store_path).parent / "samples" / cell_key


def chain_seed(seed: int, cell: SamplerCell) -> int:
    """The chains' seed: shared by every score model and sampler of one (dataset, init, chains,
    repetition), so they start from the same points (common random numbers)."""
    return noise_seed(seed, cell.dataset, f"chains:{cell.chains}", f"init:{cell.init}", 0.0, cell.repetition)


def check_samples(result: SampleResult, x0: torch.Tensor) -> None:
    """ValueError when the sampler returned samples of another shape or dtype than its chains."""
    samples = result.samples
    if not isinstance(samples, torch.Tensor) or samples.shape != x0.shape:
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"sampler returned samples of shape {shape}, expected {tuple(x0.shape)}")
    if not samples.is_floating_point():
        raise ValueError(f"sampler returned {samples.dtype} samples, expected floats")


def save_grid(path: Path, samples: torch.Tensor) -> None:
    from skimage import io
    from skimage.util import montage

    tiles = np.stack([to_uint8(image) for image in samples[:GRID_MAX].float()])
    grid = montage(tiles, padding_width=1, fill=255, channel_axis=-1 if tiles.ndim == 4 else None)
    io.imsave(path, grid.astype(np.uint8), check_contrast=False)


def save_samples(folder: Path, cell: SamplerCell, result: SampleResult, metrics: dict,
                 data: SamplingData) -> None:
    """samples.pt, metrics.json and a picture (grid.png for images, scatter.png for 2-D points)."""
    from bench.sampling.figures import save_scatter

    folder.mkdir(parents=True, exist_ok=True)
    samples = result.samples.cpu()
    meta = {"sampler": cell.sampler, "score": cell.score, "dataset": cell.dataset, "chains": cell.chains,
            "init": cell.init, "repetition": cell.repetition, "status": result.status,
            "error": result.message, "nfe": result.nfe, "resolved": result.resolved, "metrics": metrics}
    torch.save({"samples": samples, **meta}, folder / "samples.pt")
    (folder / "metrics.json").write_text(json.dumps(meta, indent=2) + "\n")
    if samples.dim() == 4:
        save_grid(folder / "grid.png", samples)
    elif samples.dim() == 2 and samples.shape[1] == 2:
        save_scatter(folder / "scatter.png", samples, data.truth,
                     data.training if data.training is not None else data.items,
                     f"{cell.sampler}\nscore={cell.score}")


def score_samples(samples: torch.Tensor, cell: SamplerCell, data: SamplingData,
                  device: torch.device) -> dict[str, float]:
    values = sample_metrics.evaluate(samples, data.reference, data.truth, data.training)
    if data.judge is not None:
        values.update(data.judge.evaluate(samples, device))
    return values


def costs(result: SampleResult) -> dict[str, float]:
    """What the cell spent (``sample_metrics.COSTS``)."""
    return {"nfe": result.nfe}


def draw_real(sampler: Sampler, cell: SamplerCell, data: SamplingData, generator) -> SampleResult:
    """The real-data row: held-out items, no chains (NFE 0)."""
    start = time.perf_counter()
    if data.held_out is None or len(data.held_out) == 0:
        raise ValueError(f"{cell.dataset} holds nothing out of its reference and training data")
    samples = sampler.draw(data.held_out, cell.chains, generator)
    return SampleResult(samples, "done", 0, nfe=0, seconds=time.perf_counter() - start)


def run_score_chains(grid: SamplingGrid, sampler: Sampler, cell: SamplerCell, data: SamplingData,
                     generator, device: torch.device) -> SampleResult:
    """All chains of the cell from their seeded start through the sampler bound to its score model."""
    model = grid.scores[cell.model].model
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
    sampler = sampler.bind(model)
    x0 = initial_state(cell.init, cell.chains, data.starts(cell.init), sampler.start_sigma, generator)
    synchronize(device)
    result = run_chains(sampler, as_score(model), x0, generator)
    synchronize(device)
    check_samples(result, x0)
    result.resolved = sampler.resolved()
    return result


def run_sampler_cell(grid: SamplingGrid, cell: SamplerCell, seed: int, device: torch.device,
                     store_path: str | Path | None) -> CellResult:
    """Sample, check, save and score one cell; every failure becomes the cell's status."""
    if cell.skip_reason:
        return CellResult("skipped", cell.skip_reason)
    sampler = grid.samplers[cell.sampler][0]
    if sampler.uses_score and (unbuilt := grid.scores[cell.model].unbuilt_result()):
        return unbuilt
    data = grid.data[cell.dataset, cell.reference_n]
    start = time.perf_counter()
    try:
        generator = make_generator(chain_seed(seed, cell), device)
        if sampler.uses_score:
            result = run_score_chains(grid, sampler, cell, data, generator, device)
        else:
            result = draw_real(sampler, cell, data, generator)
    except Exception as exc:
        return CellResult("error", error_line(exc), seconds=time.perf_counter() - start)
    metrics: dict[str, float] = {}
    status, error = "error", result.message
    if result.status == "done":
        try:
            metrics = {**score_samples(result.samples.cpu(), cell, data, device), **costs(result)}
            status = "done"
        except Exception as exc:
            error = f"metrics: {error_line(exc)}"
    if store_path is not None:
        save_samples(samples_dir(store_path, cell.key), cell, result, metrics, data)
    return CellResult(status, error, seconds=time.perf_counter() - start,
                      denoise_seconds=result.seconds, scores={SCORE_ID: metrics} if metrics else None,
                      steps=result.steps)
