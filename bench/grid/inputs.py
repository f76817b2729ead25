"""The noisy inputs of a noise group: seeded per image, drawn on the CPU, one copy per denoiser.

Part of every cell key (``bench.code_identity.harness_code``): a change here changes numbers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from bench.data.datasets import ImageSet
from bench.noise.degradations import Degradation
from bench.noise.sigma_in import ORACLE, SigmaIn
from bench.noise.vst import AnscombeDenoiser
from bench.seeding import noise_seed


@dataclass
class Batch:
    """Images of one shape: ids, clean x, noisy y, Gaussian-equivalent sigma and level, and the
    per-pixel std where it varies in space (``Degradation.sigma_map``)."""

    ids: list[str]
    x: torch.Tensor
    y: torch.Tensor
    sigma: torch.Tensor
    level: torch.Tensor
    sigma_map: torch.Tensor | None = None

    def denoise(self, model, mode: str, sigma_in: SigmaIn = SigmaIn(ORACLE),
                estimates: torch.Tensor | None = None) -> torch.Tensor:
        """Call a denoiser the way the cell's mode says (see ``bench.grid.cells.call_mode``),
        giving it the level ``sigma_in`` says (``estimates``: per image, for ``estimate:NAME``).

        It gets its own copies of y, sigma, level and map: one that writes into its inputs
        cannot change what the next denoiser of the group sees.
        """
        y, sigma, level = self.y.clone(), self.sigma.clone(), self.level.clone()
        if mode == "map":
            return model(y, sigma_in.received(sigma, estimates, self.sigma_map.clone()))
        if mode == "anscombe":
            return AnscombeDenoiser(model, lambda s: sigma_in.received(s, estimates))(y, level)
        if mode == "peak":  # one that also serves Gaussian data takes the peak by name
            return getattr(model, "denoise_poisson", model)(y, level)
        return model(y, sigma_in.received(sigma, estimates))


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


def residual_level(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Real noise's reference level: the std of (noisy - reference) of each image, shape (B,)."""
    return (y.double() - x.double()).flatten(1).std(dim=1, correction=0).to(y.dtype)


def make_batches(images: ImageSet, dataset: str, degradation: Degradation, level: float,
                 repetition: int, base_seed: int, batch_size: int, device: torch.device,
                 protocol: str = "default") -> list[Batch]:
    """Seeded noisy inputs for a whole dataset, drawn per image on the CPU (``noisy_input`` of the protocol).

    ``dataset`` is the name the seeds use (``bench.data.datasets.noise_name``). Real noise
    (``Degradation.captured``) hands over the set's captures instead, with the residual level
    as their sigma (NaN on a set without a reference: only estimates and fixed levels reach it).
    """
    batches = []
    for idx in shape_batches(images, batch_size):
        ids = [images.ids[i] for i in idx]
        clean = [images.images[i] for i in idx]
        x = torch.stack(clean).to(device)
        levels = torch.full((len(ids),), float(level), device=device)
        if degradation.captured:
            y = noisy_input(torch.stack([images.captures[i] for i in idx]).to(device), protocol)
            sigma = residual_level(y, x) if images.reference else torch.full_like(levels, float("nan"))
            batches.append(Batch(ids, x, y, sigma, levels))
            continue
        seeds = [noise_seed(base_seed, dataset, i, degradation.name, level, repetition) for i in ids]
        y = degradation.apply(clean, level, seeds).to(device)
        batches.append(Batch(ids, x, noisy_input(y, protocol),
                             degradation.sigma(y, level), levels, degradation.sigma_map(y, level)))
    return batches
