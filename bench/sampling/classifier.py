"""The sample metrics' judge: a LeNet trained once per labelled dataset and kept in the model store.

MNIST generative-model papers score samples in the feature space of a small
classifier (a LeNet) instead of pixels. The harness trains one per dataset
(MNIST, Fashion-MNIST) on its train split, seeded, the first time a sampling
grid needs it, and keeps it beside the learned denoisers (``lenet--...pt`` and
its JSON, with the test accuracy). Its reference statistics are those of the
reference half of the test split (``sample_metrics.split_reference``): feature
mean and covariance for the Frechet distance; the other half feeds the
``real-data`` floor row.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.labelled import CLASSES, LABELLED, load_labelled
from bench.device import resolve_device
from bench.errors import UsageError
from bench.files import atomic_write, slug
from bench.provenance import versions
from bench.registry import Registry
from bench.sampling import classifier_metrics
from bench.sampling.sample_metrics import split_reference
from bench.seeding import identity_hash
from bench.specs import Spec
from bench.training.loop import TrainingLength, adam, seeded_init
from bench.training.model_store import check_weights_hash, is_complete, meta_path, model_context, tensors_hash

#: Images per forward pass when extracting features.
FEATURE_BATCH = 2000
#: Bump when the network or its training changes: stored classifiers of older versions are not used.
VERSION = 1
#: Which test images give the reference statistics (part of the judge's fingerprint).
REFERENCE = "test split, even positions (sample_metrics.split_reference)"


class LeNet(nn.Module):
    """LeNet-5 for 1x28x28 inputs (LeCun et al. 1998, ReLU and max-pooling): 61k parameters.

    ``features`` is the 84-wide penultimate layer, the space of the Frechet distance.
    """

    FEATURES = 84

    def __init__(self, classes: int = CLASSES):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, self.FEATURES), nn.ReLU())
        self.head = nn.Linear(self.FEATURES, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class ClassifierOptions:
    #: Training length in images seen: three passes over the 60,000 training images, and as
    #: long on a smaller train split.
    images: int = 180_000
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


def train_lenet(images: torch.Tensor, labels: torch.Tensor, options: ClassifierOptions,
                device: torch.device) -> LeNet:
    """Adam on the cross-entropy, seeded order and initialisation, for ``options.images`` images seen."""
    model = seeded_init(LeNet, options.seed).to(device).train()
    optimizer = adam(model, options.lr)
    generator = torch.Generator().manual_seed(options.seed)
    length = TrainingLength(len(images), options.images)
    for epoch in range(1, length.epochs + 1):
        order = torch.randperm(len(images), generator=generator)[:length.size(epoch)]
        for start in range(0, len(order), options.batch_size):
            idx = order[start:start + options.batch_size]
            loss = F.cross_entropy(model(images[idx].to(device)), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def batched(fn, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i:i + FEATURE_BATCH].to(device)).cpu()
                          for i in range(0, len(x), FEATURE_BATCH)])


@dataclass
class Judge:
    """A trained classifier and the test split's feature statistics: scores image samples."""

    dataset: str
    model: LeNet
    reference: classifier_metrics.FeatureStats
    accuracy: float
    fingerprint: str

    def metric_info(self) -> dict[str, bool]:
        return {name: info.higher_is_better for name, info in classifier_metrics.METRICS.items()}

    def evaluate(self, samples: torch.Tensor, device: torch.device) -> dict[str, float]:
        """Frechet distance, confidence and class coverage of (N, 1, 28, 28) samples."""
        if tuple(samples.shape[1:]) != (1, 28, 28):
            raise ValueError(f"the {self.dataset} classifier scores 1x28x28 samples, "
                             f"got {'x'.join(map(str, samples.shape[1:]))}")
        model = self.model.to(device)
        x = samples.float().clamp(0, 1)
        features = batched(model.features, x, device)
        logits = batched(model.head, features, device)
        return classifier_metrics.evaluate(features, logits, self.reference)


def classifier_path(models_dir: Path, dataset: str, data_hash: str, options: ClassifierOptions) -> Path:
    request = identity_hash({"classifier": "lenet", "version": VERSION, "dataset": dataset,
                             "data": data_hash, "options": asdict(options)}, 12)
    return Path(models_dir) / f"lenet--{slug(dataset)}--{request}.pt"


def load_or_train(dataset: str, data_root: str | None, models_dir: Path, device: torch.device,
                  may_train: bool, options: ClassifierOptions = ClassifierOptions(),
                  registry: Registry | None = None) -> Judge:
    """The judge of ``dataset``: the stored classifier, trained first (once) when missing."""
    train_x, train_y = load_labelled(dataset, data_root, "train")
    test_x, test_y = load_labelled(dataset, data_root, "test")
    data_hash = tensors_hash({"train": train_x, "labels": train_y})
    path = classifier_path(models_dir, dataset, data_hash, options)
    if not is_complete(path):
        if not may_train:
            raise UsageError(f"no trained {dataset} classifier in {models_dir} and --no-train given; "
                             "drop --no-train to train it (a minute on a CPU)")
        print(f"training the {dataset} classifier (LeNet, {len(train_x)} images, "
              f"{TrainingLength(len(train_x), options.images).describe()}) -> {path}", file=sys.stderr)
        model = train_lenet(train_x, train_y, options, device)
        accuracy = float((batched(model, test_x, device).argmax(1) == test_y).double().mean())
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        meta = {"classifier": "lenet", "version": VERSION, "dataset": dataset, "data_hash": data_hash,
                "options": asdict(options), "test_accuracy": accuracy, "device": str(device),
                "weights_hash": tensors_hash(state),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "versions": versions(registry.plugins) if registry else {}}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        atomic_write(meta_path(path), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    state = torch.load(path, map_location="cpu", weights_only=True)
    meta = json.loads(meta_path(path).read_text())
    check_weights_hash(path, state, meta, "delete it and its JSON to have the next run retrain it")
    model = LeNet()
    model.load_state_dict(state)
    model.eval()
    reference_x, _ = split_reference(test_x)
    reference = classifier_metrics.FeatureStats.of(batched(model.features, reference_x, torch.device("cpu")))
    fingerprint = identity_hash({"weights": tensors_hash(state), "reference": REFERENCE})
    return Judge(dataset, model, reference, meta["test_accuracy"], fingerprint)


def judge_for(spec: Spec, registry: Registry) -> Judge | None:
    """The judge of a dataset with a classifier (MNIST, Fashion-MNIST), None for others.

    Uses the run's model context: its model store, device, data root and training permission.
    """
    if spec.name not in LABELLED:
        return None
    context = model_context()
    root = spec.params.get("root", context.data_root)
    return load_or_train(spec.name, root, context.models_dir, resolve_device(context.device),
                         context.train, registry=registry)
