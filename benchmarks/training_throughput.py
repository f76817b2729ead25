"""Training throughput: the harness's loop against a loop written like the classic DAE example.

Reference loop (as in the Keras/PyTorch MNIST denoising auto-encoder tutorials):
a torchvision-style dataset of 8-bit images decoded with ``ToTensor`` per item,
a ``DataLoader`` with shuffling, Gaussian noise drawn per batch, MSE, Adam.
Harness loop: ``bench.training.loop.train``, data held as one tensor on the device,
noise drawn there. Same model, same images (the lfw-faces train split, whole
25x25 images), same batch size and epochs; both run interleaved in this
process, best of several repeats, so a busy machine hurts both alike.

A second table trains each built-in learner with its lfw-faces defaults (what a
run does when it finds no checkpoint) and reports the wall time.

    /work/venv/bin/python benchmarks/training_throughput.py [--epochs 40] [--repeats 3] [--no-defaults]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import VisionDataset

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

from bench.plugins import get_plugin_set  # noqa: E402
from bench.registry import Registry  # noqa: E402
from bench.training.loop import TrainOptions, seeded_init, train  # noqa: E402
from bench.training.model_store import load_training_data, train_checkpoint, training_spec  # noqa: E402
from bench_plugins.learned import LEARNERS, ConvDAE, MLPDAE  # noqa: E402

SIGMA_HIGH = 0.25


class Faces(VisionDataset):
    """8-bit gray images served as PIL images, the way torchvision's MNIST serves digits."""

    def __init__(self, images: np.ndarray, transform=None):
        super().__init__(root=None, transform=transform)
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])
        return self.transform(image) if self.transform else image, 0


def classic_loop(model: torch.nn.Module, dataset: Faces, epochs: int, batch_size: int,
                 lr: float) -> float:
    """Seconds to train ``epochs`` epochs the tutorial way."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for x, _ in loader:
            sigma = SIGMA_HIGH * torch.rand(x.shape[0])
            y = x + sigma.view(-1, 1, 1, 1) * torch.randn_like(x)
            loss = F.mse_loss(model(y, sigma), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def loader_alone(dataset: Faces, epochs: int, batch_size: int) -> float:
    """Seconds the classic loop spends only decoding and batching (no model)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    start = time.perf_counter()
    for _ in range(epochs):
        for _batch in loader:
            pass
    return time.perf_counter() - start


def compare(name: str, build, pixels: np.ndarray, epochs: int, batch_size: int, lr: float,
            repeats: int) -> dict:
    to_tensor = transforms.ToTensor()
    dataset = Faces(pixels, transform=to_tensor)
    tensors = torch.stack([to_tensor(Image.fromarray(p)) for p in pixels])
    options = TrainOptions(epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=0.0,
                           noise=f"gaussian:0:{SIGMA_HIGH}")
    n = len(pixels) * epochs
    harness, classic, loading = [], [], []
    for repeat in range(repeats):
        loading.append(n / loader_alone(dataset, epochs, batch_size))
        runs = ("harness", "classic") if repeat % 2 == 0 else ("classic", "harness")
        for which in runs:
            model = seeded_init(build, repeat)
            if which == "harness":
                result = train(model, tensors, options, torch.device("cpu"), quiet=True)
                harness.append(n / result.seconds)
            else:
                classic.append(n / classic_loop(model, dataset, epochs, batch_size, lr))
    row = {"model": name, "batch": batch_size, "epochs": epochs,
           "classic loop images/s": max(classic), "harness images/s": max(harness),
           "ratio": max(harness) / max(classic), "classic loader alone images/s": max(loading)}
    print(row, flush=True)
    return row


def default_budgets(registry: Registry) -> list[dict]:
    data = load_training_data(training_spec("lfw-faces", registry), registry)
    rows = []
    with tempfile.TemporaryDirectory() as models:
        for learner in LEARNERS:
            if not learner.auto_train:
                continue
            options = learner.defaults(data.dataset)
            start = time.perf_counter()
            path = train_checkpoint(learner, data, options, models, torch.device("cpu"), registry,
                                    quiet=True)
            wall = time.perf_counter() - start
            meta = json.loads(path.with_suffix(".json").read_text())
            rows.append({"learner": learner.name, "epochs": meta["epochs_run"],
                         "batch": options.batch_size, "patch": options.patch or "",
                         "parameters": meta["parameters"], "wall s": wall, "loop s": meta["seconds"],
                         "images/s": meta["images_per_second"], "val loss": meta["val_loss"]})
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    import pandas as pd

    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-defaults", action="store_true", help="skip training the default models")
    args = parser.parse_args()

    registry = Registry(get_plugin_set())
    data = load_training_data(training_spec("lfw-faces", registry), registry)
    pixels = (data.images[:, 0].numpy() * 255).round().astype(np.uint8)
    mlp = "mlp-dae (625-128-64-10, whole 25x25 images)"
    rows = [compare(mlp, lambda: MLPDAE(1, (25, 25)), pixels, args.epochs, batch, 1e-3, args.repeats)
            for batch in (64, 128, 256)]
    rows.append(compare("conv-dae (width 32)", lambda: ConvDAE(1), pixels, max(1, args.epochs // 4),
                        32, 1e-3, args.repeats))
    body = ("Images per second while training on the lfw-faces train split (160 gray 25x25 "
            "images), the harness's loop (`bench.training.loop.train`: tensors on the device, noise "
            "drawn there) against a loop written like the classic MNIST DAE example "
            "(torchvision-style dataset with `ToTensor`, `DataLoader`, noise per batch). Same "
            "model, data, batch size and epochs; best of "
            f"{args.repeats} interleaved repeats. Goal: ratio >= 3 for the MLP.\n\n" + table(rows)
            + "\n\nPer image, the classic loop pays the loader (decode + `ToTensor` + collate, "
            "last column) plus the model step; the harness pays the model step and a gather. "
            "So the ratio is roughly 1 + (harness rate / loader rate), a little more since the "
            "harness also fuses Adam: the heavier the model per image, the closer to 1 (the conv "
            "DAE is compute-bound).")
    if not args.no_defaults:
        body += ("\n\nWall time to train each learner with its lfw-faces defaults (what a run does "
                 "when the model store has no checkpoint): `wall s` is the whole call (validation and "
                 "saving included), `loop s` and images/s the training steps alone:\n\n"
                 + table(default_budgets(registry)))
    update_section("training-throughput", body)


if __name__ == "__main__":
    main()
