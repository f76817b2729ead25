"""Today's reference rows with their authors' own weights, in deepinv's architectures.

- ``drunet-dpir``: DPIR's ``drunet_gray.pth`` / ``drunet_color.pth`` (KAIR release v1.0), told sigma by a map;
- ``swinir``: SwinIR-M, one model per sigma 15 / 25 / 50 (SwinIR release v0.0), other levels skipped;
- ``restormer``: the blind Gaussian models (the Restormer release's file names, as deepinv's hub hosts them);
- ``scunet``: SCUNet's Gaussian models, one per sigma 15 / 25 / 50 (KAIR release v1.0).

The files are release assets: fetched by ``bench.data.weights`` (SHA-256 pinned where
the publisher states one, else recorded at first download and pinned with ``fetch --pin``),
loaded with ``weights_only=True`` after their hash matched. Gray or colour comes from the
data's channels. Sizes the networks cannot take are padded to a multiple of the network's
step and cropped back as the authors' test scripts do: SwinIR mirrored (at least one
step), Restormer reflected, DRUNet and SCUNet by repeating the last rows and columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

import bench
from bench.data import weights
from bench_plugins.matconvnet import color_choice

KAIR = "https://github.com/cszn/KAIR/releases/download/v1.0/"
SWINIR = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
RESTORMER = "https://huggingface.co/deepinv/restormer/resolve/main/"
LEVEL_TOLERANCE = 1e-6


def _drunet(channels: int, **kwargs):
    from deepinv.models import DRUNet

    return DRUNet(in_channels=channels, out_channels=channels, pretrained=None, **kwargs)


def _swinir(channels: int, **kwargs):
    from deepinv.models import SwinIR

    return SwinIR(in_chans=channels, pretrained=None, **kwargs)


def _restormer(channels: int, **kwargs):
    from deepinv.models import Restormer

    return Restormer(in_channels=channels, out_channels=channels, pretrained=None, **kwargs)


def _scunet(channels: int, **kwargs):
    from deepinv.models import SCUNet

    return SCUNet(in_nc=channels, pretrained=None, **kwargs)


@dataclass
class Family:
    """One row: its architecture, the file for (colour, level), and how it is called."""

    name: str
    architecture: Callable[..., torch.nn.Module]
    files: Callable[[bool, int | None], weights.ReleaseFile]
    levels: tuple[int, ...] | None  # one model per level (sigma * 255), or None: one model for all
    multiple: int  # height and width must be multiples of this
    sigma_input: bool  # the network is told sigma as a full-size noise-level map (it can take one that varies)
    #: How the authors' test script pads: "replicate" (the last row / column), "reflect" (Restormer),
    #: "swinir" (mirrored, edge included, always by at least one step).
    padding: str = "replicate"
    #: Extra architecture arguments (tests use small stand-ins; the rows use the papers').
    arguments: dict = field(default_factory=dict)

    def all_files(self) -> list[weights.ReleaseFile]:
        return [self.files(color, level) for color in (False, True) for level in (self.levels or (None,))]

    def fetch(self) -> None:
        for color in (False, True):
            for level in self.levels or (None,):
                weights.fetch(self.files(color, level), self.name, reader(self, color))

    def status(self) -> tuple[bool, int]:
        present = [weights.folder() / f.name for f in self.all_files()]
        return all(p.is_file() for p in present), sum(p.stat().st_size for p in present if p.is_file())

    def unpinned(self) -> list[str]:
        """The files downloaded here whose hash no publisher or pin file vouches for."""
        return [f.name for f in self.all_files()
                if (weights.folder() / f.name).is_file() and not weights.is_pinned(f)]

    def pin(self) -> tuple:
        return weights.pin(self.all_files())


class ReleaseNetwork(torch.nn.Module):
    """A network with the authors' weights; ``fingerprint`` = their SHA-256 (``pinned`` says if a pin vouches)."""

    def __init__(self, network: torch.nn.Module, verified: weights.Verified, family: "Family"):
        super().__init__()
        self.network, self.family = network.eval(), family
        self.fingerprint, self.pinned = verified.sha256, verified.pinned

    def pad(self, y: torch.Tensor) -> torch.Tensor:
        height, width = y.shape[-2:]
        step = self.family.multiple
        if self.family.padding == "swinir":  # main_test_swinir.py, as written
            pad_h, pad_w = (height // step + 1) * step - height, (width // step + 1) * step - width
            y = torch.cat([y, y.flip(-2)], -2)[..., :height + pad_h, :]
            return torch.cat([y, y.flip(-1)], -1)[..., :width + pad_w]
        pad_h, pad_w = -height % step, -width % step
        return F.pad(y, (0, pad_w, 0, pad_h), mode=self.family.padding) if pad_h or pad_w else y

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``sigma``: one level per image (B,), or a noise-level map (B, 1, H, W) padded as the image."""
        height, width = y.shape[-2:]
        padded = self.pad(y)
        if torch.is_tensor(sigma) and sigma.dim() == 4:
            sigma = self.pad(sigma)
        out = self.network(padded, sigma) if self.family.sigma_input else self.network(padded)
        return out[..., :height, :width]


def reader(family: Family, color: bool) -> Callable[[Path], torch.nn.Module]:
    """Reads a verified file into ``family``'s network; UsageError when it does not load into it."""

    def read(path: Path) -> torch.nn.Module:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            state = checkpoint.get("params", checkpoint) if isinstance(checkpoint, dict) else checkpoint
            network = family.architecture(3 if color else 1, **family.arguments)
            network.load_state_dict(state, strict=True)
        except Exception as exc:  # an unreadable or mismatched file is the user's to replace
            raise bench.UsageError(f"{path.name} does not load into {family.name}: "
                                   f"{' '.join(str(exc).split())[:200]}") from None
        return network

    return read


def load(family: Family, color: bool, level: int | None) -> ReleaseNetwork:
    verified, network = weights.fetch(family.files(color, level), family.name, reader(family, color))
    return ReleaseNetwork(network, verified, family)


def _release(base: str, name: str) -> weights.ReleaseFile:
    return weights.ReleaseFile(name, base + name)


def _plane(color: bool) -> str:
    return "color" if color else "gray"


FAMILIES = {
    "drunet-dpir": Family("drunet-dpir", _drunet, lambda color, level: _release(KAIR, f"drunet_{_plane(color)}.pth"),
                     None, 8, True),
    "swinir": Family("swinir", _swinir, lambda color, level: _release(
        SWINIR, f"{'005_colorDN' if color else '004_grayDN'}_DFWB_s128w8_SwinIR-M_noise{level}.pth"), (15, 25, 50), 8,
                     False, padding="swinir"),
    "restormer": Family("restormer", _restormer, lambda color, level: _release(
        RESTORMER, f"gaussian_{_plane(color)}_denoising_blind.pth"), None, 8, False, padding="reflect"),
    "scunet": Family("scunet", _scunet, lambda color, level: _release(KAIR, f"scunet_{_plane(color)}_{level}.pth"),
                     (15, 25, 50), 64, False),
}


def factory(family: Family) -> Callable:
    """The row's factory: the data's channels pick gray or colour, the run's level the per-level model."""

    def build(degradation: str = "gaussian", level: float | None = None, channels: int | None = None,
              color: bool | None = None):
        use_color = color_choice(family.name, channels, color)
        if family.levels is None:
            return load(family, use_color, None)
        if level is None:
            raise bench.UsageError(f"{family.name} picks its model by the run's noise level; outside a run "
                                   f"give it, e.g. {family.name}[level=25/255]")
        if degradation != "gaussian":
            raise bench.Skip(f"{family.name} has models for Gaussian noise only, not {degradation}")
        match = [n for n in family.levels if abs(level * 255 - n) < LEVEL_TOLERANCE]
        if not match:
            raise bench.Skip(f"{family.name} has no model for sigma = {level * 255:.4g}/255 (the authors "
                             f"trained sigma = {', '.join(map(str, family.levels))})")
        return load(family, use_color, match[0])

    return build


DESCRIPTIONS = {
    "drunet-dpir": ("DRUNet", "DRUNet with DPIR's own weights (drunet_gray/color.pth), told sigma by a map"),
    "swinir": ("SwinIR", "SwinIR-M with the authors' weights, one per sigma 15, 25, 50 /255"),
    "restormer": ("Restormer", "Restormer, the authors' blind Gaussian models"),
    "scunet": ("SCUNet", "SCUNet with the authors' Gaussian weights, one per sigma 15, 25, 50 /255"),
}


@bench.hookimpl
def register_denoisers(register):
    for name, family in FAMILIES.items():
        published, description = DESCRIPTIONS[name]
        register(name, factory(family), sigma_aware=family.sigma_input, noise_map=family.sigma_input,
                 per_channels=True,
                 per_level=family.levels is not None, published_as=published, fetch=family,
                 description=f"{description} (release assets; hashes recorded, `fetch --pin {name}`)")
