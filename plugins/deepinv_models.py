"""Any deepinv denoiser as a row: ``deepinv:<ClassName>[key=value,...,weights=PATH]``.

``deepinv:DRUNet[in_channels=1,out_channels=1,weights=drunet_gray.pth]`` builds
``deepinv.models.DRUNet(in_channels=1, out_channels=1, pretrained=None)`` and
loads the checkpoint with ``torch.load(weights_only=True)``. Every problem the
user can fix (unknown class, parameters it does not take, a weights file that
is missing or does not match) is a UsageError raised here, at build time,
before any cell runs. A model that needs something absent here (weights, an
optional package such as ptwt or timm, a download that fails) is a Skip.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
from pathlib import Path

import torch

import bench
from bench.data import fetching
from bench.data.content_hash import sha256_files
from bench.specs import Spec

#: Packages some deepinv models import only when they first run (not when built).
RUNTIME_PACKAGES = {"WaveletDenoiser": ("ptwt",), "WaveletDictDenoiser": ("ptwt",)}
#: Keys under which checkpoints often nest their state dict.
CHECKPOINT_KEYS = ("state_dict", "params", "model")


def takes_noise_level(cls: type) -> bool:
    """Whether ``forward`` takes (x, noise level) rather than (y, physics)."""
    params = list(inspect.signature(cls.forward).parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 and positional[1].name != "physics"


def buildable(cls: type) -> bool:
    """Whether every constructor parameter has a default (wrappers of another model do not)."""
    return all(p.default is not p.empty for p in inspect.signature(cls).parameters.values()
               if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def denoiser_classes() -> dict[str, type]:
    """deepinv.models classes this adapter serves: Denoisers built from k=v, called as (x, sigma)."""
    import deepinv  # here and below on first use: its import takes seconds

    found = {}
    for name in dir(deepinv.models):
        cls = getattr(deepinv.models, name)
        if (inspect.isclass(cls) and issubclass(cls, deepinv.models.Denoiser)
                and cls is not deepinv.models.Denoiser and takes_noise_level(cls) and buildable(cls)):
            found[name] = cls
    return found


def model_class(name: str) -> type:
    """The deepinv class called ``name``; UsageError naming the choices otherwise."""
    import deepinv

    classes = denoiser_classes()
    if name in classes:
        return classes[name]
    cls = getattr(deepinv.models, name, None)
    if inspect.isclass(cls) and issubclass(cls, torch.nn.Module):
        raise bench.UsageError(f"deepinv.models.{name} is not a denoiser built from key=value "
                               f"parameters and called as (x, sigma); "
                               f"choose one of {', '.join(sorted(classes))}")
    message = f"unknown deepinv denoiser {name!r}"
    close = difflib.get_close_matches(name, list(classes), n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    raise bench.UsageError(f"{message}; available in deepinv {deepinv.__version__}: "
                           f"{', '.join(sorted(classes))}")


def check_parameters(cls: type, params: dict) -> None:
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        raise bench.UsageError(f"deepinv.models.{cls.__name__}: bad parameters ({exc}); "
                               f"it takes {inspect.signature(cls)}") from None


def check_packages(name: str, params: dict) -> None:
    """Skip when a package the model imports lazily is missing (found before any cell runs)."""
    needed = list(RUNTIME_PACKAGES.get(name, ()))
    if name == "BM3D" and params.get("use_legacy", True) is False:
        needed.append("ptwt")
    for package in needed:
        if importlib.util.find_spec(package) is None:
            raise bench.Skip(f"deepinv.models.{name} needs the {package} package: pip install {package}")


def load_state_dict(path: str) -> dict:
    """A checkpoint's tensors, read with ``weights_only=True``; UsageError if it cannot be."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise bench.UsageError(f"weights file not found: {path}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise bench.UsageError(f"cannot read weights file {path} with torch.load(weights_only=True): "
                               f"{first}") from None
    for key in CHECKPOINT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise bench.UsageError(f"weights file {path} holds no state dict (a mapping of names to tensors)")
    return state


def mismatch(model: torch.nn.Module, state: dict) -> str:
    """What differs between a model's parameters and a state dict, in one line ('' if nothing)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
            parts.append(f"{len(items)} {label} ({shown})")
    return "; ".join(parts)


def needs_weights(cls: type) -> bool:
    """Whether building with the class's default ``pretrained`` would download weights."""
    parameter = inspect.signature(cls).parameters.get("pretrained")
    return parameter is not None and parameter.default not in (None, False, inspect.Parameter.empty)


def build_model(cls: type, weights: str | None, params: dict) -> tuple[torch.nn.Module, str | None]:
    """``cls(**params)``, with local weights or a pretrained choice, and the fingerprint of its weights.

    The fingerprint hashes ``weights``, or is the SHA-256 of the checkpoint deepinv asked for
    (``pretrained=download``): fetched by ``fetching.torch_hub_files`` into the data folder with the
    project's downloader, its hash recorded and checked before every load, read with
    ``weights_only=True`` (never torch hub's own loader).
    """
    name = cls.__name__
    params = dict(params)
    check_parameters(cls, params)
    pretrained = params.get("pretrained")
    if isinstance(pretrained, str) and pretrained.lower() == "none":
        params["pretrained"] = pretrained = None
    if isinstance(pretrained, str) and any(Path(p).exists() for p in (pretrained, Path(pretrained).expanduser())):
        # the literal path too: deepinv opens it as written, where ``~`` may be a folder of that name
        raise bench.UsageError(f"deepinv:{name}: give a local checkpoint as weights={pretrained} "
                               "(loaded with weights_only=True), not as pretrained=")
    state = None
    if weights is not None:
        if "pretrained" in params:
            raise bench.UsageError(f"deepinv:{name}: give weights=PATH or pretrained=..., not both")
        state = load_state_dict(weights)
        if "pretrained" in inspect.signature(cls).parameters:
            params["pretrained"] = None
    elif "pretrained" not in params and needs_weights(cls):
        raise bench.Skip(f"deepinv.models.{name} needs weights: pass weights=PATH (a local "
                         "checkpoint), pretrained=download (machines with internet) or "
                         "pretrained=none (random weights)")
    check_packages(name, params)
    try:
        with fetching.torch_hub_files(f'"{Spec(f"deepinv:{name}", params).label}"') as downloaded:
            model = cls(**params)
    except ImportError as exc:
        raise bench.Skip(f"deepinv.models.{name} needs a missing package: {exc}") from None
    except fetching.FetchError as exc:  # the verified download failed; nothing was kept
        raise bench.Skip(f"deepinv.models.{name}(pretrained={pretrained}) could not fetch its "
                         f"weights: {exc}") from None
    except OSError as exc:  # urllib's errors are OSErrors: a download that failed
        raise bench.Skip(f"deepinv.models.{name}(pretrained={pretrained}) could not fetch its "
                         f"weights: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise bench.UsageError(f"deepinv.models.{name}({_args(params)}) failed: {exc}") from None
    if state is not None:
        problem = mismatch(model, state)
        if problem:
            raise bench.UsageError(f"weights file {weights} does not match "
                                   f"deepinv.models.{name}({_args(params)}): {problem}")
        model.load_state_dict(state)
    if downloaded:
        hashes = sha256_files(downloaded, fetching.settings().root)
        return model, "+".join(hashes[path] for path in downloaded)
    return model, weights_fingerprint(weights)


def _args(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def weights_fingerprint(weights: str | None) -> str | None:
    """Hash of a weights file's bytes: replacing the file changes the cell keys."""
    if weights is None:
        return None
    path = Path(weights).expanduser()
    return sha256_files([path], fetching.settings().root)[path][:12]


class DeepinvDenoiser(torch.nn.Module):
    """Calls ``model(y, sigma_scale * sigma)``; the scale serves threshold-style models (TV, wavelets).

    ``fingerprint`` (the weights file's hash) goes into the cell key (see ``bench.grid.cells.model_identity``);
    ``channels``, the image channels the model was built for (its ``in_channels``), refuses other data.
    """

    def __init__(self, model: torch.nn.Module, fingerprint: str | None = None, sigma_scale: float = 1.0,
                 channels: int | None = None):
        super().__init__()
        self.model = model
        self.sigma_scale = sigma_scale
        self.fingerprint = fingerprint
        self.channels = channels

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.model(y, sigma * self.sigma_scale)


class RAMDenoiser(DeepinvDenoiser):
    """deepinv's RAM: Gaussian sigma by keyword; on Poisson data it gets the gain 1 / peak."""

    def forward(self, y, sigma):
        return self.model(y, sigma=sigma * self.sigma_scale)

    def denoise_poisson(self, y: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
        return self.model(y, gain=1.0 / peak)


def _check_scale(sigma_scale) -> None:
    if not isinstance(sigma_scale, (int, float)) or not sigma_scale > 0:
        raise bench.UsageError(f"sigma_scale must be a number > 0, got {sigma_scale!r}")


def deepinv_model(class_name: str, weights: str | None = None, sigma_scale: float = 1.0,
                  **params) -> DeepinvDenoiser:
    """Factory for the ``deepinv:`` family; the suffix after ``deepinv:`` is the class name."""
    _check_scale(sigma_scale)
    if not class_name:
        raise bench.UsageError("deepinv: needs a class name, e.g. deepinv:DRUNet[weights=PATH]")
    cls = model_class(class_name)
    return DeepinvDenoiser(*build_model(cls, weights, params), sigma_scale, built_channels(cls, params))


def built_channels(cls: type, params: dict) -> int | None:
    """The ``in_channels`` a deepinv model is built with (given, else its default), None if it has none."""
    parameter = inspect.signature(cls).parameters.get("in_channels")
    if "in_channels" in params:
        return int(params["in_channels"])
    if parameter is None or not isinstance(parameter.default, int):
        return None
    return parameter.default


def ram_model(weights: str | None = None, sigma_scale: float = 1.0, **params) -> RAMDenoiser:
    """Factory for ``deepinv:RAM``, which also takes Poisson data natively."""
    import deepinv

    _check_scale(sigma_scale)
    return RAMDenoiser(*build_model(deepinv.models.RAM, weights, params), sigma_scale)


@bench.hookimpl
def register_denoisers(register):
    register("deepinv:", deepinv_model, sigma_aware=True, published_as="{suffix}",
             blind_members=("DnCNN", "SCUNet", "Restormer", "SwinIR"),  # their forward ignores sigma
             description="deepinv:<ClassName>[k=v,...,weights=PATH]: any deepinv.models "
                         "denoiser called as (y, sigma), e.g. deepinv:DRUNet, deepinv:DnCNN")
    register("deepinv:RAM", ram_model, sigma_aware=True, native_poisson=True, published_as="RAM",
             description="deepinv's RAM[weights=PATH]: Gaussian sigma, or the Poisson gain 1/peak")
