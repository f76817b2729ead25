"""Sample metrics against scipy, hand-computed values and known distributions."""

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from bench.sampling import sample_metrics as sm
from bench_plugins.gmm import mixture_2d

pytestmark = pytest.mark.usefixtures("one_thread")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("n, m", [(37, 53), (50, 50), (1, 9)])
def test_wasserstein_1d_matches_scipy(n, m):
    u, v = randn(1, n, seed=1), 2 * randn(1, m, seed=2) + 1
    expected = stats.wasserstein_distance(u[0].numpy(), v[0].numpy())
    assert float(sm.wasserstein_1d(u, v, p=1)) == pytest.approx(expected, rel=1e-9)


def test_wasserstein_1d_p2_of_equal_sizes_pairs_sorted_values():
    u, v = randn(3, 40, seed=3), randn(3, 40, seed=4)
    expected = (u.sort(1).values - v.sort(1).values).pow(2).mean(1).sqrt()
    torch.testing.assert_close(sm.wasserstein_1d(u, v, p=2), expected)


def test_sliced_wasserstein_in_one_dimension_is_the_exact_distance():
    x, y = randn(60, 1, seed=5), randn(45, 1, seed=6) * 1.5
    exact = float(sm.wasserstein_1d(x.T, y.T, p=2))
    assert sm.sliced_wasserstein(x, y) == pytest.approx(exact, rel=1e-9)


def test_sliced_wasserstein_of_a_shifted_copy():
    """Projections of x and x + t differ by t . theta, so SW_2^2 = E (t . theta)^2 = |t|^2 / D."""
    x = randn(300, 8, seed=7)
    shift = torch.full((8,), 0.5, dtype=torch.float64)
    expected = float(shift.norm()) / math.sqrt(8)
    assert sm.sliced_wasserstein(x, x + shift, n_projections=2000) == pytest.approx(expected, rel=0.05)


def test_energy_distance_matches_scipy_in_one_dimension():
    x, y = randn(70, 1, seed=8), randn(40, 1, seed=9) + 0.7
    assert sm.energy_distance(x, y) == pytest.approx(stats.energy_distance(x[:, 0], y[:, 0]), rel=1e-9)


def test_mmd_matches_the_u_statistic_by_hand():
    x, y, h = randn(5, 2, seed=10), randn(4, 2, seed=11) + 1, 0.8
    k = lambda a, b: math.exp(-float((a - b).pow(2).sum()) / (2 * h * h))  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert sm.mmd(x, y, bandwidths=[h]) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_mmd_is_unbiased_between_samples_of_one_distribution():
    values = torch.tensor([sm.mmd(randn(100, 2, seed=2 * i), randn(100, 2, seed=2 * i + 1))
                           for i in range(40)])
    spread = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean())) < 3 * spread, "mean of null MMD^2 should be ~0 (unbiased)"
    assert (values < 0).any(), "an unbiased estimate of 0 must sometimes be negative"
    assert sm.mmd(randn(100, 2, seed=90), randn(100, 2, seed=91) + 1) > 10 * float(values.std())


def test_mode_weights_and_coverage_by_hand():
    truth = mixture_2d("grid", "equal")  # 25 modes, weight 1/25 each
    on_modes = truth.means[[0, 0, 0, 1, 7]].float()  # 3 samples on mode 0, one each on modes 1 and 7
    far = torch.tensor([[30.0, 30.0]])  # assigned to the corner mode but outside its ellipsoid
    samples = torch.cat([on_modes, far])
    counts = torch.zeros(25, dtype=torch.float64)
    counts[[0, 1, 7, 24]] = torch.tensor([3.0, 1, 1, 1], dtype=torch.float64)
    expected = 0.5 * float((counts / 6 - 1 / 25).abs().sum())
    assert sm.mode_weight_error(samples, truth) == pytest.approx(expected)
    assert sm.modes_covered(samples, truth) == 3


def test_log_density_is_the_mean_log_probability_under_the_truth():
    truth = mixture_2d("ring", "unequal")
    dense = MixtureSameFamily(Categorical(truth.weights),
                              MultivariateNormal(truth.means, truth.covariances()))
    x = randn(30, 2, seed=12) * 2
    assert sm.log_density(x, truth) == pytest.approx(float(dense.log_prob(x).mean()), rel=1e-9)


def test_memorisation_and_nearest_neighbours():
    training = randn(200, 50, seed=13)
    copies = training[:20] + 1e-3 * randn(20, 50, seed=14)
    fresh = randn(20, 50, seed=15)
    assert sm.memorised(copies, training) == 1.0
    assert sm.memorised(fresh, training) == 0.0
    expected = torch.cdist(fresh, training).min(dim=1).values.mean()
    assert sm.nn_distance(fresh, training) == pytest.approx(float(expected))


def test_diversity_is_the_mean_pairwise_distance():
    points = torch.tensor([[0.0], [3.0], [4.0]])
    assert sm.diversity(points) == pytest.approx((3 + 4 + 1) / 3)


def test_evaluate_computes_what_the_references_allow():
    truth = mixture_2d("ring", "equal")
    x = truth.sample(50, torch.Generator().manual_seed(16))
    assert set(sm.evaluate(x)) == {"diversity"}
    assert set(sm.evaluate(x, reference=x, truth=truth, training=x)) == set(sm.METRICS)


def test_nearest_distances_over_chunks_of_the_training_set(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    x, training = torch.randn(20, 5, generator=generator), torch.randn(50, 5, generator=generator)
    whole = torch.cdist(x.double(), training.double()).topk(2, dim=1, largest=False).values
    monkeypatch.setattr(sm, "NEAREST_CHUNK", 7)
    torch.testing.assert_close(sm.nearest_distances(x, training), whole)
