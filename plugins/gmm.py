"""Gaussian-mixture data with a known truth, its exact oracle denoiser, and a learned MLP.

``gmm2d``: 2-D point data (8 modes on a ring or a 5x5 grid, equal or unequal
weights). ``gmm-images``: small gray images drawn from a mixture in pixel
space whose covariances are low-rank plus isotropic. For both, the ``oracle``
denoiser is the exact posterior mean E[x | y] (responsibility-weighted Wiener
estimates, responsibilities in log space) and offers the exact score.
``gmm-mlp`` is a sigma-conditioned MLP denoiser trained here on gmm2d.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch
from torch import nn

import bench
from bench.data.datasets import ImageSet
from bench.sampling.samplers import PointSet
from bench.specs import parse_spec
from bench_plugins.basic_denoisers import blur

SPLITS = ("train", "test")
#: Default number of items per split: the train split is what learned models see.
DEFAULT_N = {"gmm2d": {"train": 5000, "test": 1000}, "gmm-images": {"train": 1000, "test": 64}}
LOG_2PI = math.log(2 * math.pi)


@dataclass
class _Terms:
    """Per item and component: projections p = V_k^T (y - mu_k), a = v_k + s^2, lam + a, ..."""

    flat: torch.Tensor
    p: torch.Tensor
    a: torch.Tensor
    lam: torch.Tensor
    mahalanobis: torch.Tensor
    log_components: torch.Tensor


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k w_k N(mu_k, V_k diag(lam_k) V_k^T + v_k I) over items of ``item_shape``.

    ``basis`` V_k (K, D, r) has orthonormal columns, ``spectrum`` lam_k (K, r)
    and ``iso`` v_k (K,) > 0. Arithmetic is float64; inputs are flattened.
    """

    weights: torch.Tensor
    means: torch.Tensor
    basis: torch.Tensor
    spectrum: torch.Tensor
    iso: torch.Tensor
    item_shape: tuple

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return len(self.weights)

    def to(self, device) -> "GaussianMixture":
        return replace(self, **{name: getattr(self, name).to(device)
                                for name in ("weights", "means", "basis", "spectrum", "iso")})

    def covariances(self) -> torch.Tensor:
        """Dense (K, D, D) covariances (for tests and small D)."""
        low_rank = torch.einsum("kdr,kr,ker->kde", self.basis, self.spectrum, self.basis)
        return low_rank + self.iso[:, None, None] * torch.eye(self.dim, dtype=self.iso.dtype,
                                                              device=self.iso.device)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n items (n, *item_shape), float32, on the generator's device."""
        device = generator.device
        k = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        rank = self.basis.shape[2]
        low = torch.randn(n, rank, generator=generator, device=device, dtype=torch.float64)
        iso = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        mix = self.to(device)
        x = (mix.means[k] + torch.einsum("ndr,nr->nd", mix.basis[k], low * mix.spectrum[k].sqrt())
             + mix.iso[k, None].sqrt() * iso)
        return x.float().reshape(n, *self.item_shape)

    # the noisy density p_sigma = mixture convolved with N(0, sigma^2 I), without (B, K, D) tensors
    def _terms(self, y: torch.Tensor, sigma) -> _Terms:
        flat = y.reshape(len(y), -1).double()
        if flat.shape[1] != self.dim:
            raise ValueError(f"items have {flat.shape[1]} values, the mixture has dimension {self.dim}")
        s2 = torch.zeros(len(y), dtype=torch.float64, device=flat.device) if sigma is None else (
            torch.as_tensor(sigma, dtype=torch.float64, device=flat.device).expand(len(y)) ** 2)
        a = self.iso[None] + s2[:, None]
        lam = self.spectrum[None] + a[..., None]
        p = (torch.einsum("bd,kdr->bkr", flat, self.basis)
             - torch.einsum("kd,kdr->kr", self.means, self.basis)[None])
        dist2 = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.means.T
                 + self.means.pow(2).sum(1)[None])
        proj2 = p.pow(2)
        mahalanobis = (proj2 / lam).sum(-1) + (dist2 - proj2.sum(-1)).clamp_min(0) / a
        logdet = lam.log().sum(-1) + (self.dim - self.basis.shape[2]) * a.log()
        log_components = self.weights.log()[None] - 0.5 * (self.dim * LOG_2PI + logdet + mahalanobis)
        return _Terms(flat, p, a, lam, mahalanobis, log_components)

    def log_prob_components(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """(B, K): log w_k + log N(x; mu_k, Sigma_k + sigma^2 I)."""
        return self._terms(x, sigma).log_components

    def log_prob(self, x: torch.Tensor, sigma=None) -> torch.Tensor:
        """(B,) log-density of the clean (sigma None) or noisy mixture."""
        return torch.logsumexp(self.log_prob_components(x, sigma), dim=1)

    def mahalanobis_sq(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K) squared Mahalanobis distance of each item to each clean component."""
        return self._terms(x, None).mahalanobis

    def posterior_mean(self, y: torch.Tensor, sigma) -> torch.Tensor:
        """E[x | y] = sum_k r_k (mu_k + W_k (y - mu_k)), W_k = Sigma_k (Sigma_k + s^2 I)^-1 (Wiener).

        W_k has gain (lam + v) / (lam + v + s^2) along the low-rank directions and
        v / (v + s^2) off them; responsibilities r_k are a softmax in log space.
        """
        t = self._terms(y, sigma)
        resp = torch.softmax(t.log_components, dim=1)
        iso_gain = self.iso[None] / t.a
        gain = (self.spectrum[None] + self.iso[None, :, None]) / t.lam
        mean = ((resp * iso_gain).sum(1, keepdim=True) * t.flat + (resp * (1 - iso_gain)) @ self.means
                + torch.einsum("kdr,bkr->bd", self.basis, resp[..., None] * t.p * (gain - iso_gain[..., None])))
        return mean.reshape(y.shape)

    def score(self, y: torch.Tensor, sigma) -> torch.Tensor:
        """grad_y log p_sigma(y) = -sum_k r_k (Sigma_k + s^2 I)^-1 (y - mu_k)."""
        t = self._terms(y, sigma)
        resp = torch.softmax(t.log_components, dim=1)
        over_a = resp / t.a
        solved = (over_a.sum(1, keepdim=True) * t.flat - over_a @ self.means
                  + torch.einsum("kdr,bkr->bd", self.basis,
                                 resp[..., None] * t.p * (1 / t.lam - 1 / t.a[..., None])))
        return -solved.reshape(y.shape)


# ---- the mixtures -------------------------------------------------------------------------

LAYOUTS = ("ring", "grid")
WEIGHTS = ("equal", "unequal")
#: gmm2d: ring radius, grid spacing and the std of every mode.
RING_RADIUS, GRID_SPACING, MODE_STD = 2.0, 1.0, 0.1


def _choice(what: str, value, choices: tuple) -> str:
    if value not in choices:
        raise bench.UsageError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _check_count(what: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bench.UsageError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def _weights(k: int, kind: str) -> torch.Tensor:
    w = torch.ones(k, dtype=torch.float64) if kind == "equal" else torch.arange(1, k + 1, dtype=torch.float64)
    return w / w.sum()


@functools.lru_cache(maxsize=None)
def mixture_2d(layout: str = "ring", weights: str = "equal") -> GaussianMixture:
    """8 modes on a circle of radius 2, or a 5x5 grid with spacing 1; every mode std 0.1."""
    _choice("gmm2d layout", layout, LAYOUTS)
    _choice("gmm2d weights", weights, WEIGHTS)
    if layout == "ring":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        means = RING_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)
    else:
        ticks = (torch.arange(5, dtype=torch.float64) - 2) * GRID_SPACING
        means = torch.cartesian_prod(ticks, ticks)
    k = len(means)
    return GaussianMixture(_weights(k, weights), means, torch.zeros(k, 2, 0, dtype=torch.float64),
                           torch.zeros(k, 0, dtype=torch.float64),
                           torch.full((k,), MODE_STD ** 2, dtype=torch.float64), (2,))


#: gmm-images: low-rank stds per component (pixel-space norm) and the isotropic std.
IMAGE_SPECTRUM_STD = (0.5, 0.35, 0.25, 0.15)
IMAGE_ISO_STD = 0.02


def _patterns(size: int) -> torch.Tensor:
    """Six smooth 0.3..0.7 patterns: stripes both ways, disc, ring, gradient, checks."""
    t = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    u, v = torch.meshgrid(t, t, indexing="ij")
    r = ((u - 0.5) ** 2 + (v - 0.5) ** 2).sqrt()
    return torch.stack([
        0.5 + 0.2 * torch.sin(4 * math.pi * u),
        0.5 + 0.2 * torch.sin(4 * math.pi * v),
        0.3 + 0.4 * torch.sigmoid((0.3 - r) / 0.04),
        0.3 + 0.4 * torch.exp(-((r - 0.3) / 0.08) ** 2),
        0.3 + 0.4 * (u + v) / 2,
        0.5 + 0.2 * torch.sin(4 * math.pi * u) * torch.sin(4 * math.pi * v),
    ])


@functools.lru_cache(maxsize=None)
def mixture_images(size: int = 16) -> GaussianMixture:
    """Six 1 x size x size components: a pattern mean, 4 smooth directions, iso std 0.02."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise bench.UsageError(f"gmm-images size must be an integer >= 8, got {size!r}")
    means = _patterns(size)
    k, rank = len(means), len(IMAGE_SPECTRUM_STD)
    generator = torch.Generator().manual_seed(size)
    fields = torch.randn(k * rank, 1, size, size, generator=generator)
    fields = blur(fields, size / 8).reshape(k, rank, size * size).double()
    basis = torch.linalg.qr(fields.transpose(1, 2)).Q  # (K, D, r) orthonormal columns
    spectrum = torch.tensor(IMAGE_SPECTRUM_STD, dtype=torch.float64).pow(2).expand(k, rank).clone()
    weights = torch.tensor([6, 5, 4, 3, 2, 1], dtype=torch.float64)
    return GaussianMixture(weights / weights.sum(), means.reshape(k, -1), basis, spectrum,
                           torch.full((k,), IMAGE_ISO_STD ** 2, dtype=torch.float64), (1, size, size))


# ---- datasets -----------------------------------------------------------------------------

@dataclass
class MixtureImageSet(ImageSet):
    """An ImageSet drawn from a known mixture (``truth``)."""

    truth: GaussianMixture | None = None

    def limit(self, n: int | None) -> "MixtureImageSet":
        return self if n is None else MixtureImageSet(self.ids[:n], self.images[:n], self.truth)


def _draw(truth: GaussianMixture, dataset: str, n: int | None, split: str) -> torch.Tensor:
    _choice(f"{dataset} split", split, SPLITS)
    n = _check_count(f"{dataset} n", DEFAULT_N[dataset][split] if n is None else n)
    generator = torch.Generator().manual_seed(SPLITS.index(split) + 1)
    return truth.sample(n, generator)


def gmm2d(layout: str = "ring", weights: str = "equal", n: int | None = None,
          split: str = "test") -> PointSet:
    """Points (n, 2) from the 2-D mixture; train and test splits are independent draws."""
    truth = mixture_2d(layout, weights)
    return PointSet(_draw(truth, "gmm2d", n, split), truth)


def gmm_images(size: int = 16, n: int | None = None, split: str = "test") -> MixtureImageSet:
    """Gray size x size images from the image mixture (values in [0, 1] up to rare tails)."""
    truth = mixture_images(size)
    images = _draw(truth, "gmm-images", n, split)
    return MixtureImageSet([f"{split}{i:04d}" for i in range(len(images))], list(images), truth)


def truth_of(dataset: str) -> GaussianMixture:
    """The mixture behind a dataset label such as ``gmm2d[layout=grid]``."""
    spec = parse_spec(dataset, "dataset")
    params = {k: v for k, v in spec.params.items() if k not in ("n", "split")}
    try:
        if spec.name == "gmm2d":
            return mixture_2d(**params)
        if spec.name == "gmm-images":
            return mixture_images(**params)
    except TypeError as exc:
        raise bench.UsageError(f"dataset {dataset!r}: bad parameters ({exc})") from None
    raise bench.UsageError(f"the truth is known only for gmm2d and gmm-images, not {dataset!r}")


# ---- denoisers ----------------------------------------------------------------------------

class MixtureOracle(nn.Module):
    """The exact posterior mean E[x | y] under a mixture, and the exact score.

    The mixture's tensors are float64 buffers, so ``.to(device)`` moves them.
    """

    TENSORS = ("weights", "means", "basis", "spectrum", "iso")

    def __init__(self, truth: GaussianMixture):
        super().__init__()
        for name in self.TENSORS:
            self.register_buffer(name, getattr(truth, name))
        self.item_shape = truth.item_shape

    @property
    def truth(self) -> GaussianMixture:
        return GaussianMixture(*(getattr(self, name) for name in self.TENSORS), self.item_shape)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.truth.posterior_mean(y, sigma).to(y.dtype)

    def score(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.truth.score(y, sigma).to(y.dtype)


def oracle(dataset: str) -> MixtureOracle:
    return MixtureOracle(truth_of(dataset))


class PointDenoiserMLP(nn.Module):
    """D(y, s) for point data with EDM preconditioning (Karras et al. 2022).

    D = c_skip y + c_out F(c_in y, s) with c_skip = sd^2 / (s^2 + sd^2),
    c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2), sd the data
    std. F is an MLP on c_in y, random Fourier features of c_in y (Tancik et
    al. 2020: without them an MLP learns the sharp mode boundaries slowly) and
    sin / cos of k log(s) / 4, k = 1..4.
    """

    SIGMA_FREQUENCIES = 4
    FEATURES, FEATURE_SCALE = 32, 3.0

    def __init__(self, dim: int = 2, width: int = 128, depth: int = 3, data_std: float = 1.0):
        super().__init__()
        layers, inputs = [], dim + 2 * self.FEATURES + 2 * self.SIGMA_FREQUENCIES
        for _ in range(depth):
            layers += [nn.Linear(inputs, width), nn.SiLU()]
            inputs = width
        self.net = nn.Sequential(*layers, nn.Linear(width, dim))
        self.data_std = data_std
        projection = torch.randn(dim, self.FEATURES, generator=torch.Generator().manual_seed(0))
        self.register_buffer("projection", self.FEATURE_SCALE * projection)
        self.register_buffer("frequencies", torch.arange(1, self.SIGMA_FREQUENCIES + 1, dtype=torch.float32))

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.reshape(-1, 1).to(y.dtype)
        sd2 = self.data_std ** 2
        norm = (s ** 2 + sd2).sqrt()
        u = y / norm
        phase, level = u @ self.projection, s.log() / 4 * self.frequencies
        out = self.net(torch.cat([u, phase.sin(), phase.cos(), level.sin(), level.cos()], dim=1))
        return sd2 / norm ** 2 * y + s * self.data_std / norm * out


#: gmm-mlp training noise levels (log-uniform).
MLP_SIGMA_RANGE = (0.005, 5.0)


@functools.lru_cache(maxsize=4)
def train_point_denoiser(layout: str, weights: str, train_n: int, steps: int, width: int,
                         batch: int, seed: int) -> PointDenoiserMLP:
    """Adam on the EDM-weighted denoising loss over log-uniform noise levels (seeded)."""
    points = gmm2d(layout, weights, n=train_n, split="train").points
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # seeded weight initialisation, global RNG untouched
        torch.manual_seed(seed)
        model = PointDenoiserMLP(2, width, data_std=float(points.std()))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    low, high = (math.log(v) for v in MLP_SIGMA_RANGE)
    for _ in range(steps):
        x = points[torch.randint(len(points), (batch,), generator=generator)]
        s = torch.exp(low + (high - low) * torch.rand(batch, generator=generator))
        y = x + s[:, None] * torch.randn(x.shape, generator=generator)
        # EDM weighting: every noise level contributes equally to the loss on F
        weight = (s ** 2 + model.data_std ** 2) / (s * model.data_std) ** 2
        loss = (weight * (model(y, s) - x).pow(2).sum(1)).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        scheduler.step()
    return model.eval().requires_grad_(False)


def gmm_mlp(dataset: str = "gmm2d", steps: int = 1500, width: int = 128, batch: int = 2048,
            train_n: int | None = None, seed: int = 0) -> PointDenoiserMLP:
    """A sigma-conditioned MLP trained here (seconds to a minute on a CPU) on gmm2d's train split."""
    spec = parse_spec(dataset, "dataset")
    if spec.name != "gmm2d":
        raise bench.UsageError(f"gmm-mlp is trained on gmm2d point data, not {dataset!r}")
    truth_of(dataset)  # validates layout and weights
    train_n = DEFAULT_N["gmm2d"]["train"] if train_n is None else train_n
    for what, value in (("steps", steps), ("width", width), ("batch", batch), ("train_n", train_n)):
        _check_count(f"gmm-mlp {what}", value)
    return train_point_denoiser(spec.params.get("layout", "ring"), spec.params.get("weights", "equal"),
                                train_n, steps, width, batch, seed)


@bench.hookimpl
def register_datasets(register):
    register("gmm2d", gmm2d,
             description="2-D Gaussian mixture points: layout=ring|grid, weights=equal|unequal, "
                         "n, split=train|test (for `sample`)")
    register("gmm-images", gmm_images,
             description="16x16 gray images from a 6-component mixture (low-rank + isotropic "
                         "covariances); size, n, split=train|test")


@bench.hookimpl
def register_denoisers(register):
    register("oracle", oracle, sigma_aware=True, per_dataset=True,
             description="exact posterior mean (and score) under the true mixture of gmm2d / gmm-images")
    register("gmm-mlp", gmm_mlp, sigma_aware=True, per_dataset=True,
             description="sigma-conditioned MLP denoiser for gmm2d points, trained on its train split")
