"""Figures of sampler cells: 2-D scatters over the truth, image sample grids, denoising strips.

``matplotlib.figure.Figure`` only, never pyplot, so the user's backend is untouched.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text


def draw_scatter(axes, samples: torch.Tensor, truth, training: torch.Tensor, title: str) -> None:
    """2-D samples over the true density (or over the training points when the truth is unknown)."""
    points = samples.float().cpu().numpy()
    ref = training.float().cpu().numpy()
    low, high = ref.min(0) - 0.75, ref.max(0) + 0.75
    if truth is not None:
        gx, gy = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
        grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1))
        density = truth.log_prob(grid).exp().reshape(gx.shape).numpy()
        axes.contourf(gx, gy, density, levels=20, cmap="Blues")
    else:
        axes.scatter(ref[:, 0], ref[:, 1], s=2, c="lightgray")
    finite = np.isfinite(points).all(1)
    axes.scatter(points[finite, 0], points[finite, 1], s=4, c="crimson", linewidths=0)
    axes.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), aspect="equal", xticks=[], yticks=[])
    axes.set_title(title, fontsize=7)


def literal_text(figure: Figure) -> Figure:
    """Show every text drawn so far as typed: a name with ``$`` in it (``$\\x$``) is not read as
    mathtext, which failed the whole figure. Call it before saving (tick labels, made when
    drawing, keep their own mathtext)."""
    for text in figure.findobj(Text):
        if "$" in text.get_text():
            text.set_parse_math(False)
    return figure


def save_scatter(path: Path, samples: torch.Tensor, truth, training: torch.Tensor, title: str) -> None:
    figure = Figure(figsize=(4.2, 4.2), dpi=110)
    draw_scatter(figure.subplots(), samples, truth, training, title)
    figure.tight_layout()
    literal_text(figure).savefig(path)


def tile(images: torch.Tensor, columns: int) -> np.ndarray:
    """(N, 1, H, W) images in [0, 1] as one gray mosaic, ``columns`` wide, 1-pixel white gaps."""
    images = images.float().clamp(0, 1)[:, 0].cpu().numpy()
    n, h, w = images.shape
    rows = -(-n // columns)
    canvas = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1))
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
    return canvas


def sample_grids(panels: list[tuple[str, torch.Tensor]], columns: int = 10, count: int = 100,
                 size: float = 2.8) -> Figure:
    """One mosaic of the first ``count`` samples per panel (title, (N, 1, H, W) samples), side by side."""
    figure = Figure(figsize=(size * len(panels), size * 1.2), dpi=120)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, samples) in zip(axes, panels):
        ax.imshow(tile(samples[:count], columns), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("\n".join(textwrap.wrap(title.replace("\n", " "), 42)), fontsize=6)
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def denoising_strip(clean: torch.Tensor, rows: list[tuple[str, list[torch.Tensor]]],
                    sigmas: list[float]) -> Figure:
    """Denoising examples at several sigma: columns = sigma; first row noisy, then each denoiser.

    ``clean`` is (1, H, W); each row gives one (1, H, W) image per sigma. The first
    column holds the clean image, then the row names.
    """
    figure = Figure(figsize=(1.1 * (len(sigmas) + 1), 1.1 * len(rows)), dpi=120)
    axes = figure.subplots(len(rows), len(sigmas) + 1, squeeze=False)
    for r, (name, images) in enumerate(rows):
        for c, image in enumerate([clean if r == 0 else None, *images]):
            ax = axes[r, c]
            ax.set_axis_off()
            if image is not None:
                ax.imshow(image.float().clamp(0, 1)[0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            if r == 0:
                ax.set_title("clean" if c == 0 else f"σ={sigmas[c - 1]:g}", fontsize=7)
        if r > 0:
            axes[r, 0].text(0.5, 0.5, "\n".join(textwrap.wrap(name, 14)), ha="center", va="center",
                            fontsize=6, transform=axes[r, 0].transAxes)
    axes[0, 1].text(-0.05, 0.5, "noisy", ha="right", va="center", fontsize=6, transform=axes[0, 1].transAxes)
    figure.tight_layout(pad=0.3)
    return figure


def cost_curves(curves: dict[str, list[tuple[float, float]]], floors: dict[str, float], metric: str,
                title: str) -> Figure:
    """A metric against NFE (log axis): one line per sampler family (points (nfe, value)), and a
    dashed horizontal line per floor (e.g. real data at the same number of samples)."""
    figure = Figure(figsize=(6.4, 4.2 + 0.22 * (len(curves) + len(floors))), dpi=110)
    axes = figure.subplots()
    for label, points in curves.items():
        points = sorted(points)
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    for i, (label, value) in enumerate(floors.items()):
        axes.axhline(value, linestyle="--", color=f"C{(len(curves) + i) % 10}", label=label)
    values = [p[1] for points in curves.values() for p in points] + list(floors.values())
    axes.set(xscale="log", yscale="log" if min(values) > 0 else "linear",
             xlabel="NFE (model evaluations per sample)", ylabel=metric)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure
