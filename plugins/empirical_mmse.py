"""The empirical MMSE oracle of the ``learned`` plugin, apart so that deepinv loads on first use."""

from __future__ import annotations

import deepinv
import torch

from bench.training import model_store


class EmpiricalMMSE(deepinv.models.MMSE):
    """deepinv's exact posterior mean for the prior 'uniform over the training images'.

    It only returns (mixtures of) training images, so it shows what pure memorisation scores.
    """

    def __init__(self, data: model_store.TrainingData):
        super().__init__(dataloader=data.images, device=torch.device("cpu"))
        self.image_shape = tuple(data.images.shape[1:])
        self.fingerprint = data.hash

    def to(self, device=None, dtype=None):
        super().to(device, dtype)
        if device is not None:
            self.device = torch.device(device)
            if isinstance(getattr(self, "dataloader", None), torch.Tensor):  # set after deepinv's init
                self.dataloader = self.dataloader.to(self.device)
        return self

    def forward(self, y: torch.Tensor, sigma: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if tuple(y.shape[1:]) != self.image_shape:
            raise ValueError(f"empirical-mmse holds {'x'.join(map(str, self.image_shape))} training "
                             f"images; cannot denoise {'x'.join(map(str, y.shape[1:]))}")
        return super().forward(y, sigma)
