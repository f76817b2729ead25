"""Tweedie: y + s^2 score(y) is the posterior mean; the exact score is grad log p_sigma."""

import pytest
import torch

from bench.sampling.score import TweedieScore, as_score, sigma_batch
from bench_plugins.gmm import MixtureOracle, mixture_2d, mixture_images

pytestmark = pytest.mark.usefixtures("one_thread")


def autograd_score(truth, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """grad_y log p_sigma(y) by differentiating the noisy mixture density (float64)."""
    y = y.detach().double().requires_grad_(True)
    truth.log_prob(y, sigma.double()).sum().backward()
    return y.grad


@pytest.mark.parametrize("truth, shape, sigmas", [
    (mixture_2d("grid", "unequal"), (2,), (0.05, 0.3, 0.8, 2.0)),
    (mixture_images(16), (1, 16, 16), (0.05, 0.2, 0.5, 1.0)),
], ids=["gmm2d", "gmm-images"])
def test_tweedie_from_the_exact_score_is_the_oracle_posterior_mean(truth, shape, sigmas):
    generator = torch.Generator().manual_seed(0)
    x = truth.sample(len(sigmas), generator)
    sigma = torch.tensor(sigmas)
    y = x + sigma.view(-1, *[1] * len(shape)) * torch.randn(x.shape, generator=generator)
    exact = autograd_score(truth, y, sigma)
    posterior_mean = MixtureOracle(truth)(y, sigma).double()

    tweedie = y.double() + sigma.double().view(-1, *[1] * len(shape)) ** 2 * exact
    torch.testing.assert_close(tweedie, posterior_mean, atol=2e-6, rtol=1e-5,
                               msg="y + s^2 grad log p_s(y) differs from the oracle's posterior mean")
    torch.testing.assert_close(truth.score(y, sigma), exact, rtol=1e-7, atol=1e-7,
                               msg="the mixture's closed-form score differs from autograd")


def test_tweedie_score_of_the_oracle_matches_its_exact_score():
    truth = mixture_2d("ring", "equal")
    oracle = MixtureOracle(truth)
    y = truth.sample(64, torch.Generator().manual_seed(1)) * 1.1
    sigma = torch.linspace(0.05, 1.0, 64)
    torch.testing.assert_close(TweedieScore(oracle)(y, sigma), oracle.score(y, sigma), rtol=1e-4, atol=1e-3)
    assert as_score(oracle)(y, sigma).dtype == torch.float32  # the exact score is used when offered


def test_tweedie_score_for_a_gaussian_prior_denoiser_on_images():
    """D(y, s) = y / (1 + s^2) is E[x | y] for x ~ N(0, I); the noisy score is -y / (1 + s^2)."""
    score = TweedieScore(lambda y, s: y / (1 + s.view(-1, 1, 1, 1) ** 2))
    y = torch.randn(3, 2, 4, 5, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.1, 0.5, 2.0])
    torch.testing.assert_close(score(y, sigma), -y / (1 + sigma.view(-1, 1, 1, 1) ** 2))
    torch.testing.assert_close(score(y, 0.5), -y / 1.25)  # a float sigma is broadcast


def test_sigma_batch_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match=r"expected a scalar or \(4,\)"):
        sigma_batch(torch.ones(3), torch.zeros(4, 2))
