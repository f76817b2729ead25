"""DnCNN from its authors' trained models: ``dncnn-s`` (one per gray level) and ``dncnn-b`` (blind).

The MatConvNet files of the DnCNN repository (``bench/data/dncnn-models.json``:
URL and SHA-256 per file) are fetched with ``bench.data.fetching``, converted once
to a state dict for ``deepinv.models.DnCNN`` and cached beside them. The files
are MATLAB v7.3 (HDF5): ``net/layers`` lists ``conv`` layers, each but the last
followed by ``relu``; a conv weight reads (C_out, C_in, W, H) through h5py, the
last layer (C_in, W, H). MatConvNet's network predicts the noise (x = y - net(y));
deepinv's DnCNN adds its last layer to the input, so that layer is negated.
A level with no model of its own is a skip with the reason, never the nearest model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import bench
from bench.data import fetching
from bench.files import atomic_write

MANIFEST = "dncnn-models"
#: DnCNN-S models exist for these gray noise levels (sigma on the 0-255 scale).
SPECIFIC_LEVELS = tuple(range(10, 80, 5))
BLIND = {False: "model/GD_Gray_Blind.mat", True: "model/GD_Color_Blind.mat"}
#: How close sigma * 255 must be to a model's level to use it.
LEVEL_TOLERANCE = 1e-6


def specific_file(level_255: int) -> str:
    return f"model/specifics/sigma={level_255}.mat"


def _text(dataset) -> str:
    return "".join(chr(c) for c in np.asarray(dataset).flatten())


def read_layers(path: Path) -> list[tuple[str, list[np.ndarray], dict]]:
    """A MatConvNet simplenn file's layers as (type, weight arrays as h5py reads them, options)."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = []
        for ref in f["net"]["layers"][()].flatten():
            layer = f[ref]
            weights = [np.array(f[w]) for w in layer["weights"][()].flatten()] if "weights" in layer else []
            options = {k: np.array(layer[k]).flatten().tolist() for k in ("pad", "stride") if k in layer}
            layers.append((_text(layer["type"]), weights, options))
    return layers


def conv_weight(array: np.ndarray) -> torch.Tensor:
    """(C_out, C_in, W, H) or (C_in, W, H) as h5py reads it -> PyTorch's (C_out, C_in, H, W)."""
    if array.ndim == 3:
        array = array[None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 1, 3, 2))).float()


def fold_bnorm(weight: torch.Tensor, bias: torch.Tensor, arrays: list[np.ndarray]):
    """A MatConvNet ``bnorm`` (test mode: mult * (x - mean) / std + bias) folded into the conv before it."""
    mult, shift, moments = (torch.from_numpy(np.asarray(a, dtype=np.float32)).flatten() for a in arrays)
    mean, std = moments.view(2, -1)
    scale = mult / std
    return weight * scale.view(-1, 1, 1, 1), (bias - mean) * scale + shift


def convert(layers: list[tuple[str, list[np.ndarray], dict]]) -> tuple[dict, int, int]:
    """(state dict for deepinv's DnCNN, depth, channels) from simplenn layers."""
    convs: list[list[torch.Tensor]] = []
    for kind, weights, options in layers:
        if kind == "conv":
            if any(p != 1 for p in options.get("pad", [1])) or any(s != 1 for s in options.get("stride", [1])):
                raise ValueError(f"conv layer with pad {options.get('pad')} / stride {options.get('stride')}; "
                                 "DnCNN uses pad 1, stride 1")
            convs.append([conv_weight(weights[0]), torch.from_numpy(np.asarray(weights[1])).float().flatten()])
        elif kind == "bnorm":
            convs[-1] = list(fold_bnorm(*convs[-1], weights))
        elif kind != "relu":
            raise ValueError(f"unsupported MatConvNet layer type {kind!r} (expected conv, bnorm, relu)")
    (w_in, b_in), *middle, (w_out, b_out) = convs
    state = {"in_conv.weight": w_in, "in_conv.bias": b_in,
             "out_conv.weight": -w_out, "out_conv.bias": -b_out}  # deepinv adds it: x = y + out
    for i, (w, b) in enumerate(middle):
        state[f"conv_list.{i}.weight"], state[f"conv_list.{i}.bias"] = w, b
    return state, len(convs), w_in.shape[1]


def build_network(state: dict, depth: int, channels: int) -> torch.nn.Module:
    from deepinv.models import DnCNN

    model = DnCNN(in_channels=channels, out_channels=channels, depth=depth, pretrained=None)
    model.load_state_dict(state)
    return model.eval()


def converted(mat: Path, digest: str) -> tuple[dict, int, int]:
    """The state dict of a verified .mat file, converted once and cached beside it (keyed by its hash)."""
    cache = mat.with_name(f"{mat.stem}-{digest[:16]}.pt")
    if cache.is_file():
        try:
            saved = torch.load(cache, map_location="cpu", weights_only=True)
            return saved["state"], int(saved["depth"]), int(saved["channels"])
        except Exception:  # a damaged cache is rebuilt from the verified .mat
            pass
    state, depth, channels = convert(read_layers(mat))
    try:
        atomic_write(cache, lambda tmp: torch.save({"state": state, "depth": depth, "channels": channels}, tmp))
    except OSError:  # a read-only data folder only costs the conversion next time
        pass
    return state, depth, channels


class DnCNNDenoiser(torch.nn.Module):
    """The authors' network as a row: x_hat = y - residual; ``fingerprint`` = the .mat's SHA-256."""

    def __init__(self, network: torch.nn.Module, fingerprint: str):
        super().__init__()
        self.network, self.fingerprint = network, fingerprint

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.network(y)


class AuthorsModels:
    """A set of the DnCNN repository's files: fetched, verified and converted on demand."""

    def __init__(self, name: str, files: list[str]):
        self.name, self.files = name, files

    def manifest(self) -> fetching.Manifest:
        return fetching.load_manifest(MANIFEST)

    def load(self, file: str) -> DnCNNDenoiser:
        manifest = self.manifest()
        mat, = fetching.fetch(manifest, [file], self.name)
        digest = manifest.files[file].sha256
        try:
            network = build_network(*converted(mat, digest))
        except (ValueError, KeyError, OSError) as exc:
            raise bench.UsageError(f"{file} is not a DnCNN MatConvNet model: {exc}") from None
        return DnCNNDenoiser(network, digest)

    def fetch(self) -> None:
        for file in self.files:
            self.load(file)

    def status(self) -> tuple[bool, int]:
        manifest = self.manifest()
        return fetching.is_cached(manifest, self.files), sum(manifest.files[f].bytes for f in self.files)


SPECIFIC = AuthorsModels("dncnn-s", [specific_file(level) for level in SPECIFIC_LEVELS])
BLIND_MODELS = AuthorsModels("dncnn-b", list(BLIND.values()))


def dncnn_s(degradation: str = "gaussian", level: float | None = None) -> DnCNNDenoiser:
    """DnCNN-S: the authors' model trained for exactly this gray noise level (a run passes it)."""
    if level is None:
        raise bench.UsageError("dncnn-s picks its model by the run's noise level; "
                               "outside a run give it, e.g. dncnn-s[level=25/255]")
    if degradation != "gaussian":
        raise bench.Skip(f"dncnn-s has models for Gaussian noise only, not {degradation}")
    level_255 = level * 255
    match = [n for n in SPECIFIC_LEVELS if abs(level_255 - n) < LEVEL_TOLERANCE]
    if not match:
        raise bench.Skip(f"dncnn-s has no model for sigma = {level_255:.4g}/255 (the authors trained "
                         f"sigma = {SPECIFIC_LEVELS[0]}, {SPECIFIC_LEVELS[1]}, ..., {SPECIFIC_LEVELS[-1]})")
    return SPECIFIC.load(specific_file(match[0]))


def dncnn_b(color: bool = False) -> DnCNNDenoiser:
    """DnCNN-B: the authors' blind model (gray; color=true for CDnCNN-B)."""
    return BLIND_MODELS.load(BLIND[bool(color)])


@bench.hookimpl
def register_denoisers(register):
    register("dncnn-s", dncnn_s, per_level=True, published_as="DnCNN", fetch=SPECIFIC,
             description="DnCNN-S, the authors' model for the run's gray sigma (10, 15, ..., 75 /255)")
    register("dncnn-b", dncnn_b, fetch=BLIND_MODELS,
             description="DnCNN-B, the authors' blind model (gray; color=true for colour)")
