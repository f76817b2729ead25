"""Gaussian-mixture data, its exact oracle (against Monte Carlo and dense Wiener filters), the MLP."""

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from bench.errors import UsageError
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.sampling.samplers import PointSet
from bench.specs import Spec
from bench_plugins import gmm
from conftest import rows

pytestmark = pytest.mark.usefixtures("one_thread")


def dense(truth, sigma: float = 0.0) -> MixtureSameFamily:
    """The same mixture (noisy at sigma) through torch.distributions, with dense covariances."""
    eye = torch.eye(truth.dim, dtype=torch.float64)
    return MixtureSameFamily(Categorical(truth.weights),
                             MultivariateNormal(truth.means, truth.covariances() + sigma ** 2 * eye))


@pytest.mark.parametrize("truth", [gmm.mixture_2d("grid", "unequal"), gmm.mixture_images(16)],
                         ids=["gmm2d", "gmm-images"])
@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_log_density_matches_torch_distributions(truth, sigma):
    x = truth.sample(50, torch.Generator().manual_seed(0)).reshape(50, -1).double() + sigma
    torch.testing.assert_close(truth.log_prob(x, None if sigma == 0 else sigma),
                               dense(truth, sigma).log_prob(x), rtol=1e-9, atol=1e-6)


def test_posterior_mean_matches_monte_carlo_on_gmm2d():
    """E[x | y] by self-normalised importance sampling from the prior (400k draws)."""
    truth = gmm.mixture_2d("grid", "unequal")
    sigma = 0.4
    prior = truth.sample(400_000, torch.Generator().manual_seed(1)).double()
    y = torch.tensor([[0.5, 0.5], [1.2, -0.3], [-2.4, 2.1], [0.0, 0.0]], dtype=torch.float64)
    log_w = -((y[:, None, :] - prior[None]) ** 2).sum(-1) / (2 * sigma ** 2)
    monte_carlo = torch.einsum("bn,nd->bd", torch.softmax(log_w, dim=1), prior)
    oracle = gmm.MixtureOracle(truth)
    torch.testing.assert_close(oracle(y, torch.full((4,), sigma, dtype=torch.float64)), monte_carlo,
                               atol=5e-3, rtol=0, msg="oracle posterior mean differs from Monte Carlo")


def test_posterior_mean_matches_dense_wiener_filters_on_images():
    """sum_k r_k (mu_k + Sigma_k (Sigma_k + s^2 I)^-1 (y - mu_k)), solved densely, at a mixing sigma."""
    truth = gmm.mixture_images(16)
    sigma = 0.9  # large enough that several components share the responsibility
    x = truth.sample(6, torch.Generator().manual_seed(2))
    y = (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).reshape(6, -1).double()
    cov = truth.covariances()
    noisy = cov + sigma ** 2 * torch.eye(truth.dim, dtype=torch.float64)
    resp = torch.softmax(MultivariateNormal(truth.means, noisy).log_prob(y[:, None, :]) + truth.weights.log(), 1)
    assert (resp.max(dim=1).values < 0.99).any(), "test needs mixed responsibilities"
    wiener = truth.means + torch.einsum("kde,bke->bkd", cov, torch.linalg.solve(
        noisy[None], (y[:, None, :] - truth.means[None]).unsqueeze(-1)).squeeze(-1))
    expected = torch.einsum("bk,bkd->bd", resp, wiener)
    got = gmm.MixtureOracle(truth)(y, torch.full((6,), sigma, dtype=torch.float64))
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-9)


def test_samples_have_the_mixture_moments():
    truth = gmm.mixture_2d("ring", "unequal")
    x = truth.sample(200_000, torch.Generator().manual_seed(4)).double()
    mean = truth.weights @ truth.means
    second = (truth.weights[:, None, None] * (truth.covariances()
              + truth.means[:, :, None] * truth.means[:, None, :])).sum(0)
    torch.testing.assert_close(x.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), second - torch.outer(mean, mean), atol=0.02, rtol=0)


def test_datasets_are_registered_with_independent_splits():
    registry = Registry(get_plugin_set())
    points = registry.build("datasets", Spec("gmm2d", {"layout": "grid", "n": 300}))
    train = registry.build("datasets", Spec("gmm2d", {"layout": "grid", "split": "train"}))
    assert isinstance(points, PointSet) and points.points.shape == (300, 2)
    assert len(train) == gmm.DEFAULT_N["gmm2d"]["train"]
    assert not torch.equal(points.points, train.points[:300])
    assert points.truth.n_components == 25
    images = registry.build("datasets", Spec("gmm-images", {"n": 200}))
    stacked = torch.stack(images.images)
    assert stacked.shape == (200, 1, 16, 16) and images.truth.dim == 256
    assert ((stacked < 0) | (stacked > 1)).float().mean() < 1e-4, "images should lie in [0, 1]"
    with pytest.raises(UsageError, match="layout must be one of ring, grid"):
        registry.build("datasets", Spec("gmm2d", {"layout": "spiral"}))
    with pytest.raises(UsageError, match="truth is known only for gmm2d and gmm-images"):
        registry.build("denoisers", Spec("oracle", {"dataset": "lfw-faces"}))


def test_run_scores_the_oracle_at_the_analytic_mmse(cli, store):
    """In the harness, the oracle's MSE on gmm-images is the mixture's MMSE and beats a blur."""
    result = cli("run", "-d", "gmm-images[n=24]", "-n", "gaussian:0.1", "-m", "oracle",
                 "-m", "gaussian-filter", "--metric", "mse", "--metric", "psnr", "--store", store, "--quiet")
    assert result.code == 0, result.err
    mse = dict(rows(store, "SELECT c.denoiser, AVG(s.value) FROM scores s JOIN cells c ON c.key = s.cell_key "
                           "WHERE s.metric = 'mse' GROUP BY c.denoiser"))
    truth = gmm.mixture_images(16)
    cov = truth.covariances()
    noisy = cov + 0.01 * torch.eye(truth.dim, dtype=torch.float64)
    # components are far apart at sigma = 0.1, so the MMSE is the weighted Wiener error
    mmse = float(sum(w * torch.trace(c - c @ torch.linalg.solve(n, c))
                     for w, c, n in zip(truth.weights, cov, noisy))) / truth.dim
    assert mse["oracle"] == pytest.approx(mmse, rel=0.15)
    assert mse["gaussian-filter"] > 1.5 * mse["oracle"]


def test_run_refuses_point_data(cli, store):
    result = cli("run", "-d", "gmm2d", "-n", "gaussian:0.1", "-m", "oracle", "--store", store)
    assert result.code == 2
    assert "PointSet, not images" in result.err and "denoise-bench sample" in result.err
    assert not store.exists()


def test_trained_mlp_approaches_the_oracle():
    """The MLP (a short training run) closes nearly all of the identity's gap to the oracle."""
    mlp = gmm.gmm_mlp("gmm2d", steps=600, width=64, batch=2048)
    oracle = gmm.oracle("gmm2d")
    x = oracle.truth.sample(20_000, torch.Generator().manual_seed(5))
    for sigma in (0.1, 0.2, 0.5, 1.0, 3.0):
        y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
        s = torch.full((len(x),), sigma)
        mse = {name: float((d(y, s) - x).pow(2).sum(1).mean())
               for name, d in (("mlp", mlp), ("oracle", oracle), ("identity", lambda y, s: y))}
        gap, identity_gap = (10 * torch.log10(torch.tensor(mse[k] / mse["oracle"])) for k in ("mlp", "identity"))
        assert gap < min(1.0, 0.2 * identity_gap), f"sigma {sigma}: MLP {gap:.2f} dB from the oracle, identity {identity_gap:.2f} dB"
    with pytest.raises(UsageError, match="gmm-mlp is trained on gmm2d"):
        gmm.gmm_mlp("gmm-images")
