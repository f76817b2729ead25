"""Samplers that need only D(x, sigma): EDM Heun (deterministic, stochastic), DDIM, annealed Langevin.

References: the probability-flow ODE of Gaussian data has a closed-form solution;
for the exact gmm2d oracle every sampler's target is the mixture itself; NFE is
counted by an independent counter around the score.
"""

import math

import pytest
import torch

from bench.errors import UsageError
from bench.sampling import sample_metrics as sm
from bench.sampling.samplers import initial_state, make_generator, run_chains
from bench.sampling.score import as_score
from bench_plugins import gmm
from bench_plugins.samplers import DDIM, AnnealedLangevin, EDMHeun, EDMStochastic, RealData, karras_levels

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN, VARIANCE = 0.3, 0.25


def gaussian_score(x, sigma):
    """Score of N(MEAN, VARIANCE) convolved with N(0, sigma^2): -(x - MEAN) / (VARIANCE + sigma^2)."""
    return -(x - MEAN) / (VARIANCE + sigma.view(-1, *[1] * (x.dim() - 1)) ** 2)


def ode_error(sampler_class, steps: int) -> float:
    """Largest error against the exact flow: x(0) - MEAN = (x(T) - MEAN) sqrt(v / (v + T^2))."""
    sampler = sampler_class(steps=steps, sigma_min=0.01, sigma_max=10.0)
    x0 = torch.linspace(-20, 20, 9, dtype=torch.float64)[:, None]
    result = run_chains(sampler, gaussian_score, x0, make_generator(0, "cpu"))
    exact = MEAN + (x0 - MEAN) * math.sqrt(VARIANCE / (VARIANCE + 10.0 ** 2))
    return float((result.samples - exact).abs().max())


def test_heun_solves_the_probability_flow_ode_to_second_order():
    """Doubling the steps divides Heun's error by about 4 (Euler's, i.e. DDIM's, by about 2).

    The schedule stops at sigma_min = 0.01 and jumps to 0 with an Euler step, which is exact
    for Gaussian data only in the limit, so the errors are compared well above that floor."""
    heun = [ode_error(EDMHeun, n) for n in (8, 16, 32)]
    euler = [ode_error(DDIM, n) for n in (16, 32, 64)]
    assert heun[-1] < 1e-2, heun
    assert heun[0] / heun[1] > 3 and heun[1] / heun[2] > 3, f"Heun is not second order: {heun}"
    assert 1.5 < euler[0] / euler[1] < 2.6 and 1.5 < euler[1] / euler[2] < 2.6, f"DDIM: {euler}"


def test_karras_levels_follow_eq_5():
    levels = karras_levels(0.002, 80.0, 18, 7.0)
    assert len(levels) == 19 and levels[0] == pytest.approx(80) and levels[17] == pytest.approx(0.002)
    assert levels[-1] == 0 and all(a > b for a, b in zip(levels, levels[1:]))
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert levels[i] == pytest.approx(expected)


class Counted:
    """An independent NFE counter: calls to the score, each evaluating every chain once."""

    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.score(x, sigma)


@pytest.mark.parametrize("sampler, nfe", [
    (EDMHeun(steps=10, sigma_max=5.0), 19),
    (EDMStochastic(steps=10, sigma_max=5.0), 19),
    (DDIM(steps=10, sigma_max=5.0), 10),
    (DDIM(steps=10, sigma_max=5.0, eta=1.0), 10),
    (AnnealedLangevin(sigma=0.02, sigma_max=5.0, levels=4, steps=3), 13),
    (AnnealedLangevin(sigma=0.02, sigma_max=5.0, levels=4, steps=3, denoise=False), 12),
])
def test_nfe_is_the_number_of_model_evaluations(sampler, nfe):
    counted = Counted(gaussian_score)
    result = run_chains(sampler, counted, torch.zeros(5, 1), make_generator(0, "cpu"))
    assert result.nfe == counted.calls == nfe


#: Unequal weights (1:2:...:8): only a sampler that moves mass between modes gets them right.
MIXTURE = "gmm2d[weights=unequal]"


def mixture_samples(sampler, n: int = 3000):
    oracle = gmm.oracle(MIXTURE)
    generator = make_generator(1, "cpu")
    data = oracle.truth.sample(2000, torch.Generator().manual_seed(5))
    x0 = initial_state("noise", n, data, sampler.start_sigma, generator)
    result = run_chains(sampler, as_score(oracle), x0, generator)
    assert result.status == "done"
    return oracle.truth, result.samples


@pytest.mark.parametrize("sampler", [
    EDMHeun(steps=40, sigma_min=0.005, sigma_max=20.0),
    EDMStochastic(steps=40, sigma_min=0.005, sigma_max=20.0, churn=20),
    DDIM(steps=200, sigma_min=0.005, sigma_max=20.0),
    DDIM(steps=200, sigma_min=0.005, sigma_max=20.0, eta=1.0),
    AnnealedLangevin(sigma=0.01, sigma_max=20.0, levels=30, steps=30, step_size=1e-5),
], ids=lambda s: s.name + ("-eta1" if getattr(s, "eta", 0) else ""))
def test_samplers_draw_the_mixture_from_its_exact_score(sampler):
    """With the exact score from far above the data's spread, each sampler targets the mixture:
    every mode, its weight (k/36 for mode k) and its spread (std 0.1 per coordinate)."""
    truth, samples = mixture_samples(sampler)
    assert sm.modes_covered(samples, truth) == 8
    assert sm.mode_weight_error(samples, truth) < 0.05
    assigned = truth.log_prob_components(samples.double()).argmax(dim=1)
    offsets = samples.double() - truth.means[assigned]
    assert offsets.std().item() == pytest.approx(0.1, rel=0.12)


def test_a_too_small_sigma_max_misses_modes():
    """The check above can fail: starting at sigma_max = 0.3 (below the ring's radius 2) the flow
    cannot move mass between modes, so the weights follow the symmetric start blob, not 1:2:...:8."""
    truth, samples = mixture_samples(EDMHeun(steps=20, sigma_min=0.005, sigma_max=0.3))
    assert sm.mode_weight_error(samples, truth) > 0.08  # 0.098 here; the samplers above stay < 0.05


class WithRange(torch.nn.Module):
    """The oracle with a recorded training range, as score-unet carries in its buffers."""

    def __init__(self, inner, sigma_max):
        super().__init__()
        self.inner = inner
        self.register_buffer("sigma_max", torch.tensor(sigma_max))

    def forward(self, y, sigma):
        return self.inner(y, sigma)


def test_sigma_max_model_is_read_from_the_score_model():
    sampler = EDMHeun(steps=4)
    assert sampler.params()["sigma_max"] == "model"
    bound = sampler.bind(WithRange(gmm.oracle("gmm2d"), 7.5))
    assert bound.start_sigma == 7.5 and bound.resolved() == {"sigma_max": 7.5}
    assert sampler.label == bound.label == "edm-heun[rho=7,sigma_max=model,sigma_min=0.01,steps=4]"
    annealed = AnnealedLangevin(sigma_max="model", levels=3).bind(WithRange(gmm.oracle("gmm2d"), 4.0))
    assert annealed.noise_levels() == pytest.approx([4.0, 0.2, 0.01])
    with pytest.raises(UsageError, match="records no trained noise range"):
        sampler.bind(gmm.oracle("gmm2d"))


@pytest.mark.parametrize("factory, message", [
    (lambda: EDMHeun(steps=0), "steps must be an integer >= 1"),
    (lambda: EDMHeun(sigma_max=0.001), "must be larger than sigma_min"),
    (lambda: EDMHeun(sigma_max="auto"), "sigma_max must be a number"),
    (lambda: DDIM(eta=2), "eta must be in"),
    (lambda: EDMStochastic(churn=-1), "churn must be >= 0"),
])
def test_bad_sampler_parameters_are_usage_errors(factory, message):
    with pytest.raises(UsageError, match=message):
        factory()


def test_real_data_draws_distinct_held_out_items():
    pool = torch.arange(50.0)[:, None]
    drawn = RealData().draw(pool, 20, make_generator(3, "cpu"))
    assert len(set(drawn[:, 0].tolist())) == 20 and set(drawn[:, 0].tolist()) <= set(pool[:, 0].tolist())
    with pytest.raises(UsageError, match="only 50 held-out"):
        RealData().draw(pool, 51, make_generator(3, "cpu"))
