"""Batched torch metrics against scikit-image's reference implementations."""

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.data.datasets import to_tensor
from bench.grid.metrics import mse, psnr, ssim


def noisy_pair(image: np.ndarray, sigma: float, seed: int):
    x = to_tensor(image)[None]
    g = torch.Generator().manual_seed(seed)
    y = (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return y, x


def skimage_scores(y: torch.Tensor, x: torch.Tensor):
    a = y[0].permute(1, 2, 0).double().numpy()
    b = x[0].permute(1, 2, 0).double().numpy()
    channel = 2 if a.shape[2] > 1 else None
    if channel is None:
        a, b = a[:, :, 0], b[:, :, 0]
    p = peak_signal_noise_ratio(b, a, data_range=1)
    s = structural_similarity(b, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                              data_range=1, channel_axis=channel)
    return p, s


@pytest.mark.parametrize("name", ["camera", "coins", "astronaut", "chelsea"])
@pytest.mark.parametrize("sigma", [0.02, 0.2])
def test_psnr_and_ssim_match_skimage(name, sigma):
    y, x = noisy_pair(getattr(data, name)(), sigma, seed=1)
    ref_psnr, ref_ssim = skimage_scores(y, x)
    assert abs(psnr(y, x).item() - ref_psnr) < 1e-4, (psnr(y, x).item(), ref_psnr)
    assert abs(ssim(y, x).item() - ref_ssim) < 1e-4, (ssim(y, x).item(), ref_ssim)


def test_batched_metrics_equal_per_image_ones():
    images = [data.camera()[:128, :160], data.moon()[:128, :160], data.text()[:128, :160]]
    pairs = [noisy_pair(im, 0.1, seed=i) for i, im in enumerate(images)]
    y = torch.cat([p[0] for p in pairs])
    x = torch.cat([p[1] for p in pairs])
    batched = ssim(y, x)
    for i, (yi, xi) in enumerate(pairs):
        ref_psnr, ref_ssim = skimage_scores(yi, xi)
        assert abs(batched[i].item() - ref_ssim) < 1e-4
        assert abs(psnr(y, x)[i].item() - ref_psnr) < 1e-4


def test_mse_is_mean_squared_difference():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.5)
    y[1] = 0.25
    assert mse(y, x).tolist() == [0.25, 0.0625]


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
