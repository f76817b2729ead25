"""Poisson noise and the Anscombe VST: statistics by hand, the transform against deepinv and theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from deepinv.models import generalized_anscombe_transform, inverse_generalized_anscombe_transform
from scipy.stats import poisson

from bench.noise.degradations import PoissonDegradation
from bench.noise.vst import AnscombeDenoiser, anscombe, inverse_anscombe
from conftest import rows

PEAKS = (4.0, 16.0, 64.0)
INTENSITIES = (0.05, 0.3, 0.8)
SIDE = 128  # 16384 pixels per constant image


def constant_images(values, side: int = SIDE) -> list[torch.Tensor]:
    return [torch.full((1, side, side), float(v)) for v in values]


@pytest.mark.parametrize("peak", PEAKS)
def test_noise_statistics_match_x_over_peak(peak):
    """y = Poisson(peak x) / peak: counts are integers, E[y - x] = 0 and Var[y - x] = x / peak."""
    degradation = PoissonDegradation()
    y = degradation.apply(constant_images(INTENSITIES), peak, seeds=[11, 12, 13])
    n = SIDE * SIDE
    for x, image in zip(INTENSITIES, y):
        counts = image * peak
        assert torch.allclose(counts, counts.round(), atol=1e-4), "peak * y must be Poisson counts"
        noise = (image - x).double().flatten()
        variance = x / peak
        # Standard errors of the sample mean and variance of Poisson(peak x) / peak.
        mean_se = math.sqrt(variance / n)
        kurtosis_excess = 1 / (peak * x)
        var_se = variance * math.sqrt((2 + kurtosis_excess) / n)
        assert abs(noise.mean().item()) < 5 * mean_se, f"biased noise at x={x}, peak={peak}"
        assert abs(noise.var().item() - variance) < 5 * var_se, \
            f"Var[y - x] = {noise.var().item():.5f}, expected x/peak = {variance:.5f} (x={x}, peak={peak})"


def test_gaussian_equivalent_sigma_matches_the_noise_std():
    """What ``vst=none`` rows receive: sqrt(mean(y) / peak), the noise std of a constant image."""
    degradation = PoissonDegradation()
    for peak in PEAKS:
        y = degradation.apply(constant_images([0.3]), peak, seeds=[5])
        sigma = degradation.sigma(y, peak)
        assert sigma.item() == pytest.approx((y - 0.3).std().item(), rel=0.03)


def test_transform_and_inverse_agree_with_deepinv():
    values = torch.linspace(0.0, 2.0, 101, dtype=torch.float64).view(1, 1, 1, -1)
    for peak in PEAKS:
        gain = 1.0 / peak
        peak_t = torch.tensor([peak], dtype=torch.float64)
        torch.testing.assert_close(anscombe(values, peak_t),
                                   generalized_anscombe_transform(values, gain, 0.0))
        z = generalized_anscombe_transform(values, gain, 0.0)[..., 1:]  # above the inverse's floor
        torch.testing.assert_close(inverse_anscombe(z, peak_t),
                                   inverse_generalized_anscombe_transform(z, gain, 0.0))


@pytest.mark.parametrize("peak", PEAKS)
def test_exact_expectation_round_trips_through_the_unbiased_inverse(peak):
    """inverse(E[anscombe(y) | x]) = x: the point of Makitalo & Foi's unbiased inverse.

    E is summed exactly over the Poisson pmf; the closed form approximates the
    exact inverse to well under 1 %.
    """
    peak_t = torch.tensor([peak], dtype=torch.float64)
    for x in (0.02, 0.1, 0.25, 0.5, 1.0):
        rate = x * peak
        k = np.arange(0, int(rate + 20 * math.sqrt(rate) + 50))
        counts = torch.tensor(k / peak, dtype=torch.float64).view(1, 1, 1, -1)
        expectation = (anscombe(counts, peak_t).flatten().numpy() * poisson.pmf(k, rate)).sum()
        back = inverse_anscombe(torch.tensor(expectation, dtype=torch.float64).view(1, 1, 1, 1), peak_t)
        assert back.item() == pytest.approx(x, rel=0.01), f"round trip at x={x}, peak={peak}"
        # The algebraic inverse (z / 2)^2 - 3/8 would be biased low at small counts:
        algebraic = ((expectation / 2) ** 2 - 3 / 8 / peak ** 2) * peak
        if rate < 2:
            assert abs(algebraic - x) > abs(back.item() - x)


@pytest.mark.parametrize("peak", PEAKS)
def test_round_trip_on_constant_images_through_the_wrapper(peak):
    """A denoiser that returns the spatial mean is ideal for a constant image: the VST must hand x back.

    It must also see the stabilised noise level 1 / (2 sqrt(peak)) and, where
    counts are not tiny, values near sqrt(x) with that standard deviation.
    """
    seen = {}

    def mean_denoiser(z, sigma):
        seen["sigma"], seen["z"], seen["std"] = sigma, z.mean().item(), z.std().item()
        return z.mean(dim=(1, 2, 3), keepdim=True).expand_as(z)

    for x in INTENSITIES:
        y = PoissonDegradation().apply(constant_images([x]), peak, seeds=[7])
        out = AnscombeDenoiser(mean_denoiser)(y, torch.tensor([peak]))
        assert out.shape == y.shape
        assert out.mean().item() == pytest.approx(x, rel=0.02, abs=2e-3), f"x={x}, peak={peak}"
        expected_sigma = 0.5 / math.sqrt(peak)
        assert seen["sigma"].item() == pytest.approx(expected_sigma, rel=1e-6)
        if x * peak >= 4:  # the transform's asymptotics hold once counts are not tiny
            assert seen["z"] == pytest.approx(math.sqrt(x), rel=0.05)
            assert seen["std"] == pytest.approx(expected_sigma, rel=0.1)


def test_poisson_rows_go_through_the_vst_by_default_and_visibly(cli, store):
    result = cli("run", "-d", "skimage-gray[crop=48]", "-n", "poisson:4", "-m", "nlm",
                 "-m", "nlm[vst=none]", "-m", "median", "--limit-images", "2", "--metric", "psnr",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err
    names = sorted(r[0] for r in rows(store, "SELECT denoiser FROM cells"))
    assert names == ["median", "nlm[vst=anscombe]", "nlm[vst=none]"]
    means = dict(rows(store, "SELECT c.denoiser, AVG(s.value) FROM scores s JOIN cells c "
                             "ON c.key = s.cell_key GROUP BY c.denoiser"))
    assert means["nlm[vst=anscombe]"] > means["nlm[vst=none]"], \
        "at peak 4 the noise depends strongly on x: stabilising it should help NL-means"
