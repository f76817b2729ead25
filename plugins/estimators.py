"""Noise-level estimators: the Gaussian noise std of each noisy image, from the image alone.

- ``skimage``: scikit-image's ``estimate_sigma`` (Donoho's wavelet MAD on the finest
  diagonal band), averaged over channels.
- ``deepinv-wavelet``: deepinv's ``WaveletNoiseEstimator`` (the same idea in torch; needs ptwt).
- ``deepinv-patch-cov``: deepinv's ``PatchCovarianceNoiseEstimator`` (Chen, Zhu and Heng,
  ICCV 2015: the smallest eigenvalues of the covariance of image patches).
"""

from __future__ import annotations

import numpy as np
import torch

import bench


def skimage_estimate():
    from skimage.restoration import estimate_sigma

    def estimate(y: torch.Tensor) -> torch.Tensor:
        images = y.detach().cpu().double().numpy()
        return torch.tensor([float(np.mean(estimate_sigma(image, channel_axis=0))) for image in images],
                            dtype=torch.float64)
    return estimate


def deepinv_estimate(class_name: str):
    def factory():
        import deepinv

        model = getattr(deepinv.models, class_name)()

        def estimate(y: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.stack([model(image[None]).reshape(-1).mean() for image in y]).double().cpu()
        return estimate
    return factory


@bench.hookimpl
def register_estimators(register):
    register("skimage", skimage_estimate, gaussian_only=True,
             description="scikit-image's estimate_sigma (wavelet MAD, Donoho), mean over channels")
    register("deepinv-wavelet", deepinv_estimate("WaveletNoiseEstimator"), gaussian_only=True,
             description="deepinv's WaveletNoiseEstimator (wavelet MAD in torch; needs ptwt)")
    register("deepinv-patch-cov", deepinv_estimate("PatchCovarianceNoiseEstimator"), gaussian_only=True,
             description="deepinv's PatchCovarianceNoiseEstimator (Chen et al., ICCV 2015)")
