"""The driver: plan a grid's cells in the store, run the pending ones, record results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from bench.grid.cells import Cell, Grid
from bench.grid.outputs import missing_outputs, output_dir
from bench.store.database import Store


@dataclass
class RunSummary:
    counts: Counter = field(default_factory=Counter)
    cached: int = 0
    #: Done cells run again only to save the outputs ``--save-images`` asks for (numbers kept).
    resaved: int = 0
    failed: list[tuple[Cell, str]] = field(default_factory=list)
    skipped: list[tuple[Cell, str]] = field(default_factory=list)
    cost_problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def all_cells(grid: Grid) -> list:
    """Denoiser cells, then sampler cells."""
    return list(grid.cells) + (list(grid.sampling.cells) if grid.sampling else [])


def needs_outputs(grid: Grid, cell) -> bool:
    """Whether a denoiser cell lacks outputs ``--save-images N`` asks for."""
    count = grid.config.save_images
    if not count or not isinstance(cell, Cell):
        return False
    return missing_outputs(output_dir(grid.config.store, cell.key), grid.datasets[cell.dataset].ids[:count])


def plan(grid: Grid, store: Store, run_id: str) -> dict[str, str]:
    """Record metric directions and every cell as pending; returns the statuses already stored."""
    config = grid.config
    for name, (_, entry) in grid.metrics.items():
        store.set_metric_info(name, entry.metadata["higher_is_better"], entry.metadata.get("bounds", (None, None)))
    for name, (degradation, _) in grid.degradations.items():
        store.set_level_scale(name, degradation.scale)
    whole = {label: images.whole_set_content for label, images in grid.datasets.items() if images.content}
    contents = {label: store.record_content(label, content) for label, content in whole.items()}
    store.plan_cells(run_id, grid.cells, config.seed, config.protocol, list(grid.metrics), contents)
    statuses = store.statuses([cell.key for cell in grid.cells])
    if grid.sampling:
        for name, higher in grid.sampling.metric_info.items():
            store.set_metric_info(name, higher)
        store.plan_sample_cells(run_id, grid.sampling.cells, config.seed, list(grid.sampling.metric_info))
        statuses.update(store.sample_statuses([cell.key for cell in grid.sampling.cells]))
    return statuses


def run_grid(grid: Grid, store: Store, run_id: str, executor, device: str,
             quiet: bool = False) -> RunSummary:
    """Run every cell (denoiser or sampler) not already done; each result is committed as it arrives.

    ``executor`` may be None when no cell is pending (then nothing runs).
    """
    config = grid.config
    statuses = plan(grid, store, run_id)
    cells = all_cells(grid)
    done = {cell.key for cell in cells if statuses.get(cell.key) == "done"}
    todo = [cell for cell in cells if cell.key not in done or needs_outputs(grid, cell)]
    summary = RunSummary(cached=len(done))
    summary.counts["done"] += summary.cached
    pending = {cell.key: cell for cell in todo}
    with tqdm(total=len(todo), desc="cells", unit="cell", disable=quiet, dynamic_ncols=True) as bar:
        for key, result in (executor.results(list(pending)) if pending else ()):
            cell = pending[key]
            bar.update()
            if key in done:  # run again for its outputs only: the stored numbers stand
                if result.status == "done":
                    summary.resaved += 1
                else:
                    summary.failed.append((cell, f"saving its outputs failed: {result.error}"))
                continue
            if isinstance(cell, Cell):
                store.record_cell(run_id, cell, config.seed, config.protocol, list(grid.metrics),
                                  device, result)
            else:
                store.record_sample_cell(run_id, cell, config.seed, device, result)
            summary.counts[result.status] += 1
            if result.status in ("error", "timeout"):
                summary.failed.append((cell, result.error))
            elif result.status == "skipped":
                summary.skipped.append((cell, result.error))
            bar.set_postfix_str(cell.describe())
    return summary


def measure_costs(grid: Grid, store: Store, run_id: str, device, quiet: bool = False) -> list[str]:
    """Measure each built denoiser's cost at the grid's image shapes (``run --cost``), after the cells.

    Runs in this process with no cell beside it, so latencies are clean; a
    measurement already in the store for the same model, device and shape is kept.
    Returns one line per denoiser whose measurement failed.
    """
    import torch

    from bench.grid import cost
    from bench.grid.cells import model_identity
    from bench.plugins import error_line
    from bench.seeding import identity_hash

    problems = []
    todo = []
    for request in cost.requests(grid):
        denoiser = grid.denoisers[request.model]
        identity = identity_hash([model_identity(denoiser), denoiser.entry.fingerprint])
        shape = "x".join(map(str, request.shape))
        if not store.has_cost(request.dataset, request.denoiser, identity, str(device), shape):
            todo.append((request, denoiser, identity, shape))
    with tqdm(todo, desc="cost", unit="shape", disable=quiet or not todo, dynamic_ncols=True) as bar:
        for request, denoiser, identity, shape in bar:
            model = denoiser.model
            if isinstance(model, torch.nn.Module):
                model = model.to(device).eval()
            image = grid.datasets[request.source].images[request.image_index]
            try:
                measured = cost.measure(model, image, request.shape, device, seed=grid.config.seed)
            except Exception as exc:  # a denoiser that fails here already failed its cells
                problems.append(f"{request.denoiser} on {request.dataset} at {shape}: {error_line(exc)}")
                continue
            store.record_cost(run_id, request.dataset, request.denoiser, identity, str(device),
                              request.images, measured)
    return problems
