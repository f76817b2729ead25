"""The model store: trained checkpoints under ``results/models/``, found again by what made them.

A learned denoiser registers a ``Learner`` as its ``learned`` metadata: how to
build the network and the training defaults per dataset. A checkpoint is the
state dict (``NAME.pt``) plus a JSON beside it (``NAME.json``) of everything
that produced it: learner and architecture, training data (label, ids, content
hash), options and seed, library versions, final train/validation loss. The
file name carries a hash of (learner, data, options), so a run asking for the
default model of a dataset finds the one trained before, and trains it (once)
when it is missing. A loaded model carries ``fingerprint`` = the hash of its
weights, which ``bench.grid.cells`` puts in the cell key.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from bench.device import resolve_device
from bench.errors import Skip, UsageError
from bench.files import atomic_write, slug
from bench.plugins import error_line, get_plugin_set
from bench.provenance import versions
from bench.registry import Registry
from bench.scoped import set_for_block
from bench.seeding import identity_hash
from bench.specs import Spec, parse_spec
from bench.training.loop import (TrainOptions, TrainResult, check_trainable, seeded_init,
                                 split_validation, train, training_length)

DEFAULT_MODELS_DIR = "results/models"
#: Dataset parameters that say where the data is, not what it is: left out of identities.
LOCATION_PARAMS = ("root",)


@dataclass(frozen=True)
class Learner:
    """How the harness builds and trains one learned denoiser (``learned=`` metadata).

    :param name: the checkpoint family's name in the model store.
    :param build: ``build(channels, size)`` returns an ``nn.Module`` called as
        ``model(y, sigma)``; ``size`` is the (H, W) it is trained on (the MLP's input size).
    :param sigma_aware: whether the model uses the sigma it gets.
    :param defaults: a dataset's registry name -> its training options.
    :param version: bump it when ``build`` changes: older checkpoints are not reused.
    :param auto_train: False when a run must never train it (too big for a run's
        budget); it then needs weights or ``denoise-bench train``.
    :param infer_arch: reads ``build``'s arguments from a bare state dict (weights
        with no JSON, e.g. deepinv's published DRUNet files).
    """

    name: str
    build: Callable[[int, tuple[int, int]], torch.nn.Module]
    sigma_aware: bool
    defaults: Callable[[str], TrainOptions]
    version: int = 1
    auto_train: bool = True
    infer_arch: Callable[[dict], dict] | None = None

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class ModelContext:
    """Run-wide settings a learned denoiser's factory reads: where models live, may it train."""

    models_dir: Path = Path(DEFAULT_MODELS_DIR)
    train: bool = True
    device: str = "auto"
    data_root: str | None = None
    registry: Registry | None = None
    quiet: bool = False

    @classmethod
    def for_run(cls, config, registry: Registry, quiet: bool = False) -> "ModelContext":
        """A run's context: ``config.models``, else a ``models/`` folder beside the store."""
        models = Path(config.models) if config.models else Path(config.store).parent / "models"
        return cls(models, not config.no_train, config.device, config.data_root, registry, quiet)


_CONTEXT: ContextVar[ModelContext] = ContextVar("bench_model_context", default=ModelContext())


def model_context() -> ModelContext:
    return _CONTEXT.get()


def using_context(context: ModelContext) -> contextlib.AbstractContextManager[ModelContext]:
    """Make ``context`` the one factories see, for the duration of the block."""
    return set_for_block(_CONTEXT, context)


def tensors_hash(named: dict[str, torch.Tensor]) -> str:
    """A content hash of named tensors (names, dtypes, shapes and values), independent of file format."""
    digest = hashlib.sha256()
    for name in sorted(named):
        tensor = named[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


@dataclass
class TrainingData:
    """A dataset's training images stacked as one (N, C, H, W) tensor, with its identity."""

    label: str
    ids: list[str]
    images: torch.Tensor
    hash: str

    @property
    def dataset(self) -> str:
        """The registry name (``lfw-faces``), which picks the per-dataset defaults."""
        return parse_spec(self.label, "dataset").name

    def describe(self) -> dict:
        return {"label": self.label, "n_images": len(self.ids), "shape": list(self.images.shape[1:]),
                "hash": self.hash, "ids": self.ids}


def has_splits(entry) -> bool:
    """Whether a dataset's factory takes ``split`` (train/test)."""
    try:
        return "split" in inspect.signature(entry.factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def training_spec(dataset: str, registry: Registry, for_run: bool = False) -> Spec:
    """The spec of the images to train on: the dataset's ``split=train``.

    ``for_run``: ``dataset`` is what a run evaluates on, so its split is replaced,
    and a dataset without splits cannot be trained on (Skip: it would train on
    the test images).
    """
    spec = parse_spec(dataset, "dataset")
    entry = registry.get("datasets", spec.name)
    if not has_splits(entry):
        if for_run:
            raise Skip(f"dataset {spec.name!r} has no train split to learn from; train on another "
                       "dataset with `denoise-bench train` and pass weights=PATH")
        return spec
    if for_run or "split" not in spec.params:
        return Spec(spec.name, {**spec.params, "split": "train"})
    return spec


def load_training_data(spec: Spec, registry: Registry, data_root: str | None = None) -> TrainingData:
    """Load a training dataset through the registry; its images must share one size."""
    images = registry.load_dataset(spec, data_root)
    shapes = sorted({tuple(image.shape) for image in images.images})
    if len(shapes) > 1:
        sizes = ", ".join(f"{c}x{h}x{w}" for c, h, w in shapes[:4])
        raise UsageError(f"training needs images of one size; {spec.label} has {len(shapes)} "
                         f"({sizes}{', ...' if len(shapes) > 4 else ''}): crop them (e.g. crop=64)")
    stacked = torch.stack(images.images)
    label = Spec(spec.name, {k: v for k, v in spec.params.items() if k not in LOCATION_PARAMS}).label
    return TrainingData(label, list(images.ids), stacked, tensors_hash({"images": stacked}))


def request_hash(learner: Learner, data: TrainingData, options: TrainOptions) -> str:
    """What decides a trained model's weights (besides the device): learner, data, options."""
    identity = {"learner": learner.name, "version": learner.version, "data": data.hash,
                "dataset": data.label, "options": options.to_dict()}
    return identity_hash(identity, 12)


def checkpoint_path(models_dir: Path | str, learner: Learner, data: TrainingData,
                    options: TrainOptions) -> Path:
    name = f"{learner.name}--{slug(data.label)}--{request_hash(learner, data, options)}.pt"
    return Path(models_dir) / name


def meta_path(path: Path) -> Path:
    return path.with_suffix(".json")


def is_complete(path: Path) -> bool:
    """A checkpoint counts once its JSON is there (written last)."""
    return path.is_file() and meta_path(path).is_file()


def arch_of(learner: Learner, data: TrainingData, options: TrainOptions) -> dict:
    """``build``'s arguments for this data: channels and the (patch or image) size."""
    _, channels, h, w = data.images.shape
    size = (options.patch, options.patch) if options.patch else (h, w)
    return {"channels": int(channels), "size": [int(size[0]), int(size[1])]}


def build_model(learner: Learner, arch: dict, seed: int = 0) -> torch.nn.Module:
    return seeded_init(lambda: learner.build(arch["channels"], tuple(arch["size"])), seed)


def train_checkpoint(learner: Learner, data: TrainingData, options: TrainOptions,
                     models_dir: Path | str, device: torch.device, registry: Registry,
                     quiet: bool = False) -> Path:
    """Train ``learner`` on ``data`` and write its checkpoint; returns the .pt path."""
    options.validate()
    check_trainable(data.images, options)
    arch = arch_of(learner, data, options)
    model = build_model(learner, arch, options.seed)  # bad sizes fail here, before training
    path = checkpoint_path(models_dir, learner, data, options)
    print(f"training {learner.name} on {data.label}: {len(data.ids)} images "
          f"{'x'.join(map(str, data.images.shape[1:]))}, "
          f"{training_length(data.images, options).describe()}, noise "
          f"{options.noise}, seed {options.seed}, {device} -> {path}", file=sys.stderr)
    result: TrainResult = train(model, data.images, options, device,
                                desc=f"train {learner.name} on {data.label}", quiet=quiet)
    meta = {
        "learner": learner.name, "version": learner.version, "sigma_aware": learner.sigma_aware,
        "arch": arch, "data": data.describe(), "options": options.to_dict(), "seed": options.seed,
        "validation_ids": [data.ids[i] for i in split_validation(
            len(data.ids), options.val_fraction, options.seed)[1]],
        "device": str(device), "amp": options.amp and device.type == "cuda",
        "weights_hash": tensors_hash(result.state_dict),
        "parameters": sum(p.numel() for p in model.parameters()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(registry.plugins), **result.summary(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(result.state_dict, tmp))
    atomic_write(meta_path(path), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    return path


def read_meta(path: Path) -> dict | None:
    file = meta_path(path)
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"checkpoint metadata {file} is unreadable: {error_line(exc)}") from None


def check_weights_hash(path: Path, state: dict, meta: dict, fix: str) -> None:
    """Refuse weights whose tensors are not the ones their JSON's ``weights_hash`` records
    (changed on disk after training): one line naming the file and ``fix`` (what to do)."""
    found, promised = tensors_hash(state), meta.get("weights_hash")
    if found != promised:
        raise UsageError(f"checkpoint {path} holds weights {found}, not the {promised} its "
                         f"{meta_path(path).name} records: it changed after training; {fix}")


def load_model(path: str | Path, learner: Learner) -> torch.nn.Module:
    """Build ``learner``'s network from a checkpoint (or bare weights it can read), in eval mode.

    A checkpoint of another learner, or weights that do not fit, is a UsageError.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"cannot read weights {path}: {error_line(exc)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"weights {path} are not a state dict of tensors")
    meta = read_meta(path)
    if meta is not None:
        if meta.get("learner") != learner.name:
            raise UsageError(f"checkpoint {path} holds a {meta.get('learner')!r} model, "
                             f"not {learner.name!r}")
        check_weights_hash(path, state, meta, f"restore it or retrain with `denoise-bench train "
                                                  f"{learner.name} --force`")
        arch = meta["arch"]
    elif learner.infer_arch is not None:
        try:
            arch = learner.infer_arch(state)
        except (KeyError, IndexError, ValueError) as exc:
            raise UsageError(f"weights {path} do not look like a {learner.name} model "
                             f"({error_line(exc)})") from None
    else:
        raise UsageError(f"weights {path} have no {meta_path(path).name} beside them, so their "
                         f"{learner.name} architecture is unknown")
    model = build_model(learner, arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise UsageError(f"weights {path} do not fit {learner.name}: {detail[:300]}") from None
    model.eval()
    model.fingerprint = tensors_hash(state)
    model.checkpoint = str(path)
    return model


def context_registry(context: ModelContext) -> Registry:
    return context.registry if context.registry is not None else Registry(get_plugin_set())


def train_command(learner: Learner, spec: Spec, context: ModelContext) -> str:
    """The ``denoise-bench train`` command that writes the checkpoint a run looks for."""
    params = {k: v for k, v in spec.params.items() if k != "split"}
    dataset = Spec(spec.name, params).label
    command = f"denoise-bench train {learner.name} --dataset {repr(dataset) if params else dataset}"
    if context.data_root and "root" not in params:
        command += f" --data-root {context.data_root}"
    if context.models_dir != Path(DEFAULT_MODELS_DIR):
        command += f" --models {context.models_dir}"
    return command


def resolve(learner: Learner, dataset: str | None = None, weights: str | None = None) -> torch.nn.Module:
    """What a learned denoiser's factory returns: the model from ``weights``, or the default
    checkpoint for ``dataset``'s train split, trained first when missing (and allowed)."""
    if weights is not None:
        return load_model(weights, learner)
    if dataset is None:
        raise UsageError(f"{learner.name} needs weights=PATH or a dataset to train on")
    context = model_context()
    registry = context_registry(context)
    spec = training_spec(dataset, registry, for_run=True)
    data = load_training_data(spec, registry, context.data_root)
    options = learner.defaults(data.dataset)
    path = checkpoint_path(context.models_dir, learner, data, options)
    if not is_complete(path):
        command = train_command(learner, spec, context)
        if not learner.auto_train:
            raise Skip(f"{learner.name} is not trained within a run; give weights=PATH or run "
                       f"`{command}` first")
        if not context.train:
            raise UsageError(f"no trained {learner.name} for {data.label} in {context.models_dir} "
                             f"and --no-train given; run `{command}` or drop --no-train")
        train_checkpoint(learner, data, options, context.models_dir,
                         resolve_device(context.device), registry, context.quiet)
    return load_model(path, learner)


def training_images(dataset: str) -> TrainingData:
    """The train split of the dataset a run evaluates on (for oracles such as empirical MMSE)."""
    context = model_context()
    registry = context_registry(context)
    return load_training_data(training_spec(dataset, registry, for_run=True), registry,
                              context.data_root)
