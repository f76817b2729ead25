"""Metrics for samples: against true samples, against the true density, against training data.

Samples and references are (N, ...) tensors, flattened to (N, D) and compared
in float64 with Euclidean distances. ``truth`` is a known distribution with
``weights``, ``log_prob(x)``, ``log_prob_components(x)`` (N, K) and
``mahalanobis_sq(x)`` (N, K), such as ``bench_plugins.gmm.GaussianMixture``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy import stats

#: RBF bandwidths for MMD, as multiples of the reference's median pairwise distance.
BANDWIDTH_FACTORS = tuple(2.0 ** k for k in range(-5, 2))
#: A mode is covered when a sample lies inside its ellipsoid of this probability.
COVERAGE_LEVEL = 0.999
#: A sample is memorised when nearest / second-nearest training distance is below this.
MEMORISATION_RATIO = 1 / 3
#: Points used for the median-distance heuristic.
MEDIAN_POINTS = 1000
#: Training items compared at once in nearest-neighbour metrics.
NEAREST_CHUNK = 8192


@dataclass(frozen=True)
class MetricInfo:
    higher_is_better: bool
    description: str


METRICS = {
    "mmd": MetricInfo(False, "unbiased MMD^2, mean of RBF kernels at median distance x 2^-5..2^1"),
    "sliced_wasserstein": MetricInfo(False, "sliced 2-Wasserstein distance, 256 random directions"),
    "energy_distance": MetricInfo(False, "energy distance (scipy's definition, in D dimensions)"),
    "mode_weight_error": MetricInfo(False, "total variation between sample and true mode weights"),
    "modes_covered": MetricInfo(True, "modes with a sample inside their 99.9% ellipsoid"),
    "log_density": MetricInfo(True, "mean log-density of the samples under the true distribution"),
    "nn_distance": MetricInfo(True, "mean distance from a sample to its nearest training item"),
    "memorised": MetricInfo(False, "fraction of samples with nearest / 2nd-nearest training "
                                   "distance < 1/3"),
    "diversity": MetricInfo(True, "mean pairwise distance between samples"),
}


#: What a sampler cell spent, recorded beside its metrics (lower is cheaper). Its wall time is
#: the cell's ``denoise_seconds``, not a score: scores are the same on every machine.
COSTS = {
    "nfe": MetricInfo(False, "model evaluations per chain (NFE): D or the score, once for every chain"),
}


def split_reference(test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, held-out) halves of a test split: even and odd positions.

    Metrics compare samples with the reference half; the ``real-data`` floor row
    draws from the held-out half, so the floor never scores images against themselves.
    """
    return test[0::2], test[1::2]


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).double()


def median_distance(y: torch.Tensor) -> float:
    """Median pairwise distance of (at most MEDIAN_POINTS of) y."""
    y = flat(y)[:MEDIAN_POINTS]
    d = torch.cdist(y, y)
    return float(d[torch.triu_indices(len(y), len(y), 1, device=d.device).unbind()].median())


def _rbf(a: torch.Tensor, b: torch.Tensor, bandwidths: list[float]) -> torch.Tensor:
    d2 = torch.cdist(a, b).pow(2)
    return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths) / len(bandwidths)


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: list[float] | None = None) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, U-statistic) with a mean of RBF kernels.

    Bandwidths default to the median pairwise distance of y times BANDWIDTH_FACTORS.
    """
    x, y = flat(x), flat(y)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError("MMD needs at least 2 samples on each side")
    if bandwidths is None:
        median = median_distance(y)
        bandwidths = [f * median for f in BANDWIDTH_FACTORS]
    kxx, kyy, kxy = _rbf(x, x, bandwidths), _rbf(y, y, bandwidths), _rbf(x, y, bandwidths)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def wasserstein_1d(u: torch.Tensor, v: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Exact p-Wasserstein distance between the empirical distributions in each row.

    u (P, n) and v (P, m), uniform weights, n and m may differ: the integral of
    |F^-1(t) - G^-1(t)|^p over t in [0, 1], both quantile functions being
    piecewise constant between the breakpoints i/n and j/m.
    """
    u, v = u.double().sort(dim=1).values, v.double().sort(dim=1).values
    n, m = u.shape[1], v.shape[1]
    steps = [torch.arange(1, k + 1, device=u.device, dtype=torch.float64) / k for k in (n, m)]
    cuts = torch.cat(steps).sort().values
    widths = torch.diff(cuts, prepend=cuts.new_zeros(1))
    middle = cuts - widths / 2
    iu = (middle * n).long().clamp(max=n - 1)
    iv = (middle * m).long().clamp(max=m - 1)
    return ((u[:, iu] - v[:, iv]).abs().pow(p) * widths).sum(dim=1).pow(1 / p)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int = 256,
                       p: float = 2.0, seed: int = 0) -> float:
    """(mean over random unit directions of W_p^p of the projections)^(1/p), as POT's."""
    x, y = flat(x), flat(y)
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64)
    directions = (directions / directions.norm(dim=0, keepdim=True)).to(x.device)
    w = wasserstein_1d((x @ directions).T, (y @ directions).T, p)
    return float(w.pow(p).mean().pow(1 / p))


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|) over the empirical distributions (V-statistics).

    In one dimension this is ``scipy.stats.energy_distance``.
    """
    x, y = flat(x), flat(y)
    value = 2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()
    return float(value.clamp_min(0).sqrt())


def mode_counts(x: torch.Tensor, truth) -> tuple[torch.Tensor, torch.Tensor]:
    """Per mode: samples assigned to it (most responsible component), and those inside it."""
    x = flat(x)
    assigned = truth.log_prob_components(x).argmax(dim=1)
    k = len(truth.weights)
    dim = x.shape[1]
    inside = truth.mahalanobis_sq(x).gather(1, assigned[:, None])[:, 0] <= stats.chi2.ppf(COVERAGE_LEVEL, dim)
    counts = torch.bincount(assigned, minlength=k)
    inside_counts = torch.bincount(assigned[inside], minlength=k)
    return counts, inside_counts


def mode_weight_error(x: torch.Tensor, truth) -> float:
    """Total variation 1/2 sum_k |n_k / N - w_k| between assigned and true mode weights."""
    counts, _ = mode_counts(x, truth)
    return float(0.5 * (counts.double() / len(x) - truth.weights.to(counts.device)).abs().sum())


def modes_covered(x: torch.Tensor, truth) -> int:
    """Number of modes with at least one sample inside their 99.9% ellipsoid."""
    _, inside = mode_counts(x, truth)
    return int((inside > 0).sum())


def log_density(x: torch.Tensor, truth) -> float:
    """Mean log-density of the samples under the truth (read it beside coverage)."""
    return float(truth.log_prob(flat(x)).mean())


def nearest_distances(x: torch.Tensor, training: torch.Tensor) -> torch.Tensor:
    """(N, 2): distances from each sample to its nearest and second-nearest training item."""
    x, training = flat(x), flat(training)
    if len(training) < 2:
        raise ValueError("nearest-neighbour metrics need at least 2 training items")
    best = None  # the two nearest so far, over chunks of the training set (bounded memory)
    for start in range(0, len(training), NEAREST_CHUNK):
        found = torch.cdist(x, training[start:start + NEAREST_CHUNK])
        best = found if best is None else torch.cat([best, found], dim=1)
        best = best.topk(min(2, best.shape[1]), dim=1, largest=False).values
    return best


def nn_distance(x: torch.Tensor, training: torch.Tensor) -> float:
    return float(nearest_distances(x, training)[:, 0].mean())


def memorised(x: torch.Tensor, training: torch.Tensor) -> float:
    """Fraction of samples much closer to one training item than to any other."""
    d = nearest_distances(x, training)
    return float((d[:, 0] < MEMORISATION_RATIO * d[:, 1]).double().mean())


def diversity(x: torch.Tensor) -> float:
    """Mean distance between two different samples."""
    x = flat(x)
    n = len(x)
    if n < 2:
        raise ValueError("diversity needs at least 2 samples")
    return float(torch.cdist(x, x).sum() / (n * (n - 1)))


def evaluate(samples: torch.Tensor, reference: torch.Tensor | None = None, truth=None,
             training: torch.Tensor | None = None) -> dict[str, float]:
    """Every metric that the given references allow, by name (see METRICS)."""
    values = {"diversity": diversity(samples)}
    if reference is not None:
        values.update(mmd=mmd(samples, reference),
                      sliced_wasserstein=sliced_wasserstein(samples, reference),
                      energy_distance=energy_distance(samples, reference))
    if truth is not None:
        values.update(mode_weight_error=mode_weight_error(samples, truth),
                      modes_covered=modes_covered(samples, truth),
                      log_density=log_density(samples, truth))
    if training is not None:
        values.update(nn_distance=nn_distance(samples, training), memorised=memorised(samples, training))
    return values
