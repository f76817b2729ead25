"""Learned denoisers the harness trains itself: MLP DAE, conv DAE, DRUNet; and the empirical MMSE oracle.

Each registers a ``bench.training.model_store.Learner`` (``learned`` metadata) and
``per_dataset=True``: in a run, the factory gets the dataset being evaluated and
loads the model trained on that dataset's train split, training it first (once)
when the model store has none. ``weights=PATH`` loads a given checkpoint instead.
Sigma-aware variants see sigma as an extra input channel; blind ones are trained
over a range of noise levels and ignore it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import bench
from bench.training import model_store
from bench_plugins.score_unet import score_unet
from bench.training.loop import TrainOptions
from bench.training.model_store import Learner

#: Default training noise: a range of Gaussian levels, one drawn per image.
NOISE_RANGE = "gaussian:0:0.25"


def with_sigma_channel(y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """y with a constant channel holding each image's sigma appended (as DRUNet does)."""
    sigma_map = sigma.to(y.dtype).view(-1, 1, 1, 1).expand(-1, 1, *y.shape[2:])
    return torch.cat([y, sigma_map], dim=1)


class MLPDAE(nn.Module):
    """The classic MNIST denoising auto-encoder: inputs-128-64-10 and back, ELU, sigmoid output.

    It takes flattened images of one size (its training size); larger images are
    denoised patch-wise: overlapping patches of that size, outputs averaged.
    """

    HIDDEN = (128, 64, 10)
    #: Largest flattened input accepted (64x64 gray); beyond that, train on patches.
    MAX_INPUTS = 4096

    def __init__(self, channels: int, size: tuple[int, int], sigma_aware: bool = False):
        super().__init__()
        self.channels, self.size, self.sigma_aware = channels, tuple(size), sigma_aware
        h, w = self.size
        inputs = (channels + int(sigma_aware)) * h * w
        if inputs > self.MAX_INPUTS:
            raise bench.UsageError(
                f"mlp-dae takes at most {self.MAX_INPUTS} input values; {channels}x{h}x{w} images"
                f"{' plus the sigma channel' if sigma_aware else ''} make {inputs}: "
                "train on patches (--patch 8) or smaller images")
        widths = (inputs, *self.HIDDEN)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):  # encoder
            layers += [nn.Linear(a, b), nn.ELU()]
        back = (*self.HIDDEN[::-1], channels * h * w)
        for a, b in zip(back[:-1], back[1:]):  # decoder
            layers += [nn.Linear(a, b), nn.ELU()]
        layers[-1] = nn.Sigmoid()
        self.net = nn.Sequential(*layers)

    def stride(self) -> tuple[int, int]:
        return tuple(max(1, s // 4) for s in self.size)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b, c, height, width = y.shape
        h, w = self.size
        if c != self.channels:
            raise ValueError(f"mlp-dae was trained on {self.channels}-channel images, got {c}")
        inputs = with_sigma_channel(y, sigma) if self.sigma_aware else y
        if (height, width) == (h, w):
            return self.net(inputs.flatten(1)).view_as(y)
        if height < h or width < w:
            raise ValueError(f"mlp-dae takes images of at least {h}x{w} (its input size), "
                             f"got {height}x{width}")
        return self.patchwise(inputs, (height, width))

    def patchwise(self, inputs: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """Denoise every patch (stride = a quarter of the patch) and average the overlaps."""
        (h, w), (sh, sw) = self.size, self.stride()
        pad_h = (-(shape[0] - h)) % sh
        pad_w = (-(shape[1] - w)) % sw
        padded = F.pad(inputs, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else inputs
        out_size = (shape[0] + pad_h, shape[1] + pad_w)
        columns = F.unfold(padded, (h, w), stride=(sh, sw))  # (B, Cin*h*w, L)
        b, _, n = columns.shape
        patches = self.net(columns.transpose(1, 2).reshape(b * n, -1))
        patches = patches.view(b, n, -1).transpose(1, 2)
        total = F.fold(patches, out_size, (h, w), stride=(sh, sw))
        count = F.fold(torch.ones_like(patches), out_size, (h, w), stride=(sh, sw))
        return (total / count)[..., :shape[0], :shape[1]]


class ConvDAE(nn.Module):
    """A small fully convolutional encoder-decoder (one 2x downsampling, one skip), any image size.

    It predicts the noise: x_hat = y - net(y), which keeps low noise levels easy.
    """

    def __init__(self, channels: int, sigma_aware: bool = False, width: int = 32):
        super().__init__()
        self.sigma_aware = sigma_aware
        cin = channels + int(sigma_aware)
        self.encode1 = nn.Sequential(nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.encode2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.decode = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        height, width = y.shape[2:]
        inputs = with_sigma_channel(y, sigma) if self.sigma_aware else y
        padded = F.pad(inputs, (0, width % 2, 0, height % 2), mode="replicate")
        skip = self.encode1(padded)
        up = self.up(self.encode2(skip))
        noise = self.decode(torch.cat([skip, up], dim=1))[..., :height, :width]
        return y - noise


#: DRUNet sizes: deepinv's full network and one this CPU trains in minutes.
DRUNET_FULL = {"nc": (64, 128, 256, 512), "nb": 4}
DRUNET_SMALL = {"nc": (16, 32, 64, 128), "nb": 1}


def drunet(channels: int, size, nc, nb) -> nn.Module:
    """deepinv's DRUNet (sigma as an extra input channel), randomly initialised."""
    import deepinv  # on first use: its import takes seconds

    return deepinv.models.DRUNet(channels, channels, nc=nc, nb=nb, pretrained=None)


def drunet_arch(state: dict) -> dict:
    """Channels of a bare DRUNet state dict (e.g. deepinv's published weights)."""
    return {"channels": int(state["m_head.weight"].shape[1]) - 1, "size": [0, 0]}


def options_table(table: dict[str, TrainOptions]):
    """Per-dataset defaults: ``table[dataset]``, else ``table['*']``."""
    return lambda dataset: table.get(dataset, table["*"])


# Default budgets: a few CPU minutes on lfw-faces (200 faces, 25x25); MNIST follows the classic example.
# On MNIST and Fashion-MNIST the length is in images seen, so a smaller train split trains as long:
# the epochs they had before, over the 60,000 training images less those held out for validation
# (10% by default: 54,000 a pass; score-unet holds out 2%: 58,800).
LFW = {"noise": NOISE_RANGE, "hflip": True}
MLP_DEFAULTS = {
    "lfw-faces": TrainOptions(epochs=600, batch_size=256, lr=2e-3, patch=4, val_every=20, **LFW),
    # 10 passes of 54,000
    "mnist": TrainOptions(images=540_000, batch_size=128, lr=1e-3, noise=NOISE_RANGE, val_every=1),
    "fashion-mnist": TrainOptions(images=540_000, batch_size=128, lr=1e-3, noise=NOISE_RANGE, val_every=1),
    "*": TrainOptions(epochs=100, batch_size=256, lr=2e-3, patch=8, noise=NOISE_RANGE, val_every=5),
}
CONV_DEFAULTS = {
    "lfw-faces": TrainOptions(epochs=300, batch_size=32, lr=2e-3, val_every=10, **LFW),
    # 2 passes of 54,000
    "mnist": TrainOptions(images=108_000, batch_size=64, lr=1e-3, noise=NOISE_RANGE),
    "fashion-mnist": TrainOptions(images=108_000, batch_size=64, lr=1e-3, noise=NOISE_RANGE),
    "*": TrainOptions(epochs=100, batch_size=32, lr=1e-3, noise=NOISE_RANGE, val_every=5),
}
DRUNET_DEFAULTS = {
    "lfw-faces": TrainOptions(epochs=300, batch_size=8, lr=1e-3, val_every=10, **LFW),
    "mnist": TrainOptions(images=108_000, batch_size=32, lr=1e-3, noise=NOISE_RANGE),  # 2 passes of 54,000
    "*": TrainOptions(epochs=100, batch_size=8, lr=1e-3, noise=NOISE_RANGE, val_every=5),
}

#: The score model's range: geometric from 0.01 to the training set's largest pairwise distance.
SCORE_NOISE = "gaussian:0.01:diameter:log"
#: MNIST-like sets: EDM's log-normal levels (truncated to the same range) and an EMA of the weights
#: (half-life 0.2 x images seen); measured against log-uniform and no EMA in docs/sampling.md.
SCORE_NOISE_EDM = "gaussian:0.01:diameter:lognormal"
SCORE_DEFAULTS = {
    # 3 passes of 58,800: 9 minutes on this 2-core CPU when idle (328 images/s); docs/sampling.md
    "mnist": TrainOptions(images=176_400, batch_size=64, lr=2e-3, noise=SCORE_NOISE_EDM, schedule="cosine",
                          val_fraction=0.02, ema=0.2),
    "fashion-mnist": TrainOptions(images=176_400, batch_size=64, lr=2e-3, noise=SCORE_NOISE_EDM,
                                  schedule="cosine", val_fraction=0.02, ema=0.2),
    "*": TrainOptions(epochs=200, batch_size=32, lr=1e-3, noise=SCORE_NOISE, schedule="cosine",
                      val_every=20),
}

LEARNERS = (
    Learner("mlp-dae", lambda c, size: MLPDAE(c, size), sigma_aware=False,
            defaults=options_table(MLP_DEFAULTS)),
    Learner("mlp-dae-sigma", lambda c, size: MLPDAE(c, size, sigma_aware=True), sigma_aware=True,
            defaults=options_table(MLP_DEFAULTS)),
    Learner("conv-dae", lambda c, size: ConvDAE(c), sigma_aware=False,
            defaults=options_table(CONV_DEFAULTS)),
    Learner("conv-dae-sigma", lambda c, size: ConvDAE(c, sigma_aware=True), sigma_aware=True,
            defaults=options_table(CONV_DEFAULTS)),
    Learner("drunet-small", lambda c, size: drunet(c, size, **DRUNET_SMALL), sigma_aware=True,
            defaults=options_table(DRUNET_DEFAULTS), infer_arch=drunet_arch),
    Learner("drunet", lambda c, size: drunet(c, size, **DRUNET_FULL), sigma_aware=True,
            defaults=options_table(DRUNET_DEFAULTS), auto_train=False, infer_arch=drunet_arch),
    Learner("score-unet", lambda c, size: score_unet(c), sigma_aware=True,
            defaults=options_table(SCORE_DEFAULTS)),
)

DESCRIPTIONS = {
    "mlp-dae": "MLP DAE, pixels-128-64-10 and back, ELU, sigmoid; blind; patch-wise on larger images",
    "mlp-dae-sigma": "MLP DAE with sigma as an extra input channel",
    "conv-dae": "small fully convolutional encoder-decoder (residual); blind",
    "conv-dae-sigma": "conv DAE with sigma as an extra input channel",
    "drunet-small": "deepinv DRUNet, small: nc=(16,32,64,128), nb=1 (0.57M parameters); trains here",
    "score-unet": "score model for sampling: U-Net (0.38M), sigma embedding, EDM preconditioning, "
                  "DSM over 0.01..largest pairwise distance (log-uniform)",
    "drunet": "deepinv DRUNet, full size: nc=(64,128,256,512), nb=4 (32.6M); weights=PATH or `train`",
}


def learned_factory(learner: Learner):
    def factory(dataset: str | None = None, weights: str | None = None):
        return model_store.resolve(learner, dataset, weights)
    factory.__doc__ = f"{learner.name}: the model for ``dataset``'s train split, or ``weights=PATH``."
    return factory


def empirical_mmse(dataset: str | None = None) -> torch.nn.Module:
    if dataset is None:
        raise bench.UsageError("empirical-mmse needs a dataset (its train split is the prior)")
    from bench_plugins.empirical_mmse import EmpiricalMMSE  # imports deepinv: on first use only

    return EmpiricalMMSE(model_store.training_images(dataset))


@bench.hookimpl
def register_denoisers(register):
    for learner in LEARNERS:
        register(learner.name, learned_factory(learner), sigma_aware=learner.sigma_aware,
                 per_dataset=True, learned=learner, description=DESCRIPTIONS[learner.name])
    register("empirical-mmse", empirical_mmse, sigma_aware=True, per_dataset=True,
             description="oracle: deepinv MMSE, exact posterior mean over the train split (memorisation)")
