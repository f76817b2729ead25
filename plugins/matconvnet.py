"""The authors' MatConvNet models (DnCNN, FDnCNN, FFDNet): read, converted once, cached, fetched by name.

The files are MATLAB v7.3 (HDF5): ``net/layers`` lists layers by type (``conv``,
``relu``, ``bnorm``; FFDNet also ``SubP`` and ``concat``). Through h5py a conv
weight reads (C_out, C_in, W, H), the last layer of a one-channel net (C_in, W, H);
MatConvNet convolves as PyTorch does (cross-correlation). A file is fetched and
verified by its pinned SHA-256 (``bench.data.fetching``), converted once to a
state dict cached beside it (keyed by that hash, its own SHA-256 recorded and checked before
every load, loaded with ``weights_only=True``; a cache that does not match is rebuilt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

import bench
from bench.data import fetching
from bench.data.content_hash import sha256_file
from bench.files import atomic_write

Layer = tuple[str, list[np.ndarray], dict]


def _text(dataset) -> str:
    return "".join(chr(c) for c in np.asarray(dataset).flatten())


def read_layers(path: Path) -> list[Layer]:
    """A MatConvNet simplenn file's layers as (type, weight arrays as h5py reads them, options)."""
    import h5py

    with h5py.File(path, "r") as f:
        layers = []
        for ref in f["net"]["layers"][()].flatten():
            layer = f[ref]
            stored = layer["weights"] if "weights" in layer else None
            # Layers without weights store MATLAB's empty array (its dimensions), not references.
            weights = [np.array(f[w]) for w in stored[()].flatten()] \
                if stored is not None and stored.dtype == object else []
            options = {k: np.array(layer[k]).flatten().tolist() for k in ("pad", "stride", "scale") if k in layer}
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


def conv_stack(layers: list[Layer], structural: tuple[str, ...] = ()) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (weight, bias) of each 3x3 conv, batch norms folded in; ``relu`` between them.

    ``structural`` names other layer types the caller handles itself (FFDNet's ``SubP``,
    ``concat``); any other type, or a conv that is not pad 1 / stride 1, is a ValueError.
    """
    convs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for kind, weights, options in layers:
        if kind == "conv":
            if any(p != 1 for p in options.get("pad", [1])) or any(s != 1 for s in options.get("stride", [1])):
                raise ValueError(f"conv layer with pad {options.get('pad')} / stride {options.get('stride')}; "
                                 "expected pad 1, stride 1")
            convs.append((conv_weight(weights[0]), torch.from_numpy(np.asarray(weights[1])).float().flatten()))
        elif kind == "bnorm":
            convs[-1] = fold_bnorm(*convs[-1], weights)
        elif kind != "relu" and kind not in structural:
            raise ValueError(f"unsupported MatConvNet layer type {kind!r}")
    if len(convs) < 2:
        raise ValueError(f"{len(convs)} conv layer(s); expected a stack")
    return convs


def converted(mat: Path, digest: str, convert: Callable[[list[Layer]], dict]) -> dict:
    """``convert(read_layers(mat))`` of a verified file, done once and cached beside it (keyed by its hash).

    ``convert`` returns a dict of tensors and ints (a state dict and the shape facts needed to build it).
    """
    cache = mat.with_name(f"{mat.stem}-{digest[:16]}.pt")
    record = cache.with_suffix(".sha256")  # the cache's own SHA-256, checked before every load
    if cache.is_file() and record.is_file() and sha256_file(cache) == record.read_text().strip():
        try:
            return torch.load(cache, map_location="cpu", weights_only=True)
        except Exception:  # a damaged cache is rebuilt from the verified .mat
            pass
    saved = convert(read_layers(mat))  # missing, changed or unrecorded: rebuilt from the verified .mat
    try:
        atomic_write(cache, lambda tmp: torch.save(saved, tmp))
        atomic_write(record, lambda tmp: tmp.write_text(sha256_file(cache) + "\n"))
    except OSError:  # a read-only data folder only costs the conversion next time
        pass
    return saved


def cpu_layout(device: torch.device) -> torch.memory_format:
    """The weights' layout on ``device``: channels-last on the CPU, where oneDNN's 3x3 convs on
    a 64-channel plane run ~1.5x faster with it (benchmarks/authors_speed.py); as stored elsewhere."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


class AuthorsNetwork(torch.nn.Module):
    """An authors' network as a row: ``network(y, sigma)``; ``fingerprint`` = its file's SHA-256.

    ``sigma`` is the noise level the model is told, per image or as a map for the rows that take
    one (the harness hands over what ``--sigma-in`` says).
    Every MatConvNet row runs the same way: weights laid out by ``cpu_layout`` for the
    device of the call (same numbers up to float rounding), output in the default layout.
    """

    def __init__(self, network: torch.nn.Module, fingerprint: str):
        super().__init__()
        self.network, self.fingerprint = network, fingerprint
        self.layout = torch.contiguous_format

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        layout = cpu_layout(y.device)
        if layout != self.layout:
            self.network.to(memory_format=layout)
            self.layout = layout
        return self.network(y, sigma).contiguous()


class AuthorsModels:
    """Files of one manifest behind one row name: fetched, verified and converted on demand.

    ``convert(layers) -> dict`` and ``build(dict) -> module(y, sigma)`` turn a file into a network.
    """

    def __init__(self, name: str, manifest: str, files: list[str],
                 convert: Callable[[list[Layer]], dict], build: Callable[[dict], torch.nn.Module]):
        self.name, self.manifest_name, self.files = name, manifest, files
        self.convert, self.build = convert, build

    def manifest(self) -> fetching.Manifest:
        return fetching.load_manifest(self.manifest_name)

    def load(self, file: str) -> AuthorsNetwork:
        manifest = self.manifest()
        mat, = fetching.fetch(manifest, [file], self.name)
        digest = manifest.files[file].sha256
        try:
            network = self.build(converted(mat, digest, self.convert))
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            raise bench.UsageError(f"{file} is not a {self.name} MatConvNet model: {exc}") from None
        return AuthorsNetwork(network.eval(), digest)

    def fetch(self) -> None:
        for file in self.files:
            self.load(file)

    def status(self) -> tuple[bool, int]:
        manifest = self.manifest()
        return fetching.is_cached(manifest, self.files), sum(manifest.files[f].bytes for f in self.files)


def color_choice(name: str, channels: int | None, color: bool | None) -> bool:
    """Whether to use the colour model: from the data's channels, or ``color=`` where no data says.

    A ``color=`` that contradicts the data (``color=true`` on gray images) is a UsageError.
    """
    if channels is not None and channels not in (1, 3):
        raise bench.UsageError(f"{name} has gray (1-channel) and colour (3-channel) models, "
                               f"not {channels}-channel ones")
    if color is not None and channels is not None and bool(color) != (channels == 3):
        raise bench.UsageError(f"{name}[color={str(bool(color)).lower()}] on {channels}-channel data: "
                               f"the {'colour' if color else 'gray'} model takes "
                               f"{3 if color else 1}-channel images (drop color=, the data picks the model)")
    return channels == 3 if channels is not None else bool(color)
