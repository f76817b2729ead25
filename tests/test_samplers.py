"""Samplers against analytic Gaussian results and the exact gmm2d oracle; the sample command."""

import json
import math

import pytest
import torch

from bench.errors import UsageError
from bench.sampling import sample_metrics as sm
from bench.sampling.samplers import initial_state, make_generator, run_chains
from bench.sampling.score import as_score
from bench_plugins import gmm
from bench_plugins.samplers import AnnealedLangevin, GradientAscent, Langevin
from conftest import rows

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_score(variance: float):
    """Score of N(0, variance I): what the oracle gives for one Gaussian (tested in test_score)."""
    return lambda x, sigma: -x / variance


class SqrtStepLangevin(Langevin):
    """The classic mistake: noise sqrt(step) instead of sqrt(2 step); targets p^2."""

    @staticmethod
    def noise_std(step_size):
        return math.sqrt(step_size)


def stationary_variance(sampler_class, variance: float, step: float) -> float:
    chains = 20_000
    generator = make_generator(0, "cpu")
    x0 = math.sqrt(variance) * torch.randn(chains, 1, generator=generator)
    result = run_chains(sampler_class(sigma=0.1, step_size=step, steps=300),
                        gaussian_score(variance), x0, generator)
    return float(result.samples.var())


def test_langevin_has_the_ula_stationary_variance_on_a_gaussian():
    """x' = (1 - h/s^2) x + sqrt(2h) z has variance s^2 / (1 - h / (2 s^2)); sqrt(h) noise gives
    s^2 / (2 - h / s^2), about half, which this check must reject."""
    s2, h = 1.0, 0.5
    expected = s2 / (1 - h / (2 * s2))
    assert stationary_variance(Langevin, s2, h) == pytest.approx(expected, rel=0.04)
    wrong = stationary_variance(SqrtStepLangevin, s2, h)
    assert wrong == pytest.approx(s2 / (2 - h / s2), rel=0.04)
    assert abs(wrong / expected - 1) > 0.3, "the variance check would not catch sqrt(step) noise"


def test_gradient_ascent_contracts_geometrically_on_a_gaussian():
    x0 = torch.tensor([[2.0], [-1.0]])
    result = run_chains(GradientAscent(sigma=0.1, step_size=0.25, steps=7), gaussian_score(1.0),
                        x0, make_generator(0, "cpu"))
    torch.testing.assert_close(result.samples, x0 * 0.75 ** 7)


def test_annealed_schedule_is_geometric_with_song_ermon_steps():
    sampler = AnnealedLangevin(sigma=0.01, sigma_max=1.0, levels=5, steps=3, step_size=2e-5)
    schedule = sampler.schedule()
    assert len(schedule) == 15
    sigmas = sampler.noise_levels()
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.01
    ratios = [b / a for a, b in zip(sigmas, sigmas[1:])]
    assert ratios == pytest.approx([0.01 ** 0.25] * 4)
    for sigma, step in schedule:
        assert step == pytest.approx(2e-5 * sigma ** 2 / 0.01 ** 2)
    assert "denoise=true" in sampler.label and "levels=5" in sampler.label


def test_final_denoising_step_is_the_tweedie_posterior_mean():
    """On N(0, 1) data the last step x + s^2 score(x, s) equals E[x | y] = y / (1 + s^2)."""
    truth = gmm.GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64),
                                torch.zeros(1, 1, 0, dtype=torch.float64), torch.zeros(1, 0, dtype=torch.float64),
                                torch.ones(1, dtype=torch.float64), (1,))
    oracle = gmm.MixtureOracle(truth)
    sampler = AnnealedLangevin(sigma=0.3, sigma_max=1.0, levels=2, steps=1)
    x = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampler.final_step(x, as_score(oracle)), x / 1.09)


@pytest.mark.parametrize("make", [
    lambda: Langevin(step_size=0), lambda: Langevin(sigma=-0.1), lambda: GradientAscent(steps=0),
    lambda: AnnealedLangevin(sigma=0.5, sigma_max=0.1), lambda: AnnealedLangevin(levels=1),
])
def test_bad_parameters_are_usage_errors(make):
    with pytest.raises(UsageError):
        make()


def test_a_nan_chain_stops_the_run_with_its_step():
    calls = {"n": 0}

    def score(x, sigma):
        calls["n"] += 1
        out = -x.clone()
        if calls["n"] >= 7:
            out[3] = float("nan")
        return out

    x0 = torch.ones(6, 2)
    result = run_chains(Langevin(sigma=0.1, step_size=0.01, steps=100), score, x0, make_generator(0, "cpu"))
    assert result.status == "diverged"
    assert result.diverged_step == 7 and result.diverged_chains == 1
    assert result.steps == 20, "the run stops at the first check after the NaN"
    assert "diverged at step 7: 1 of 6 chains" in result.message


def test_chains_are_reproducible_from_the_seed():
    data = gmm.gmm2d(n=100).points
    runs = []
    for seed in (0, 0, 1):
        generator = make_generator(seed, "cpu")
        x0 = initial_state("noise", 32, data, 0.1, generator)
        runs.append(run_chains(Langevin(sigma=0.1, steps=10), gaussian_score(1.0), x0, generator).samples)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


@pytest.fixture(scope="module")
def ring():
    """The gmm2d oracle, and MMD^2 between 20 pairs of independent true sample sets."""
    truth = gmm.mixture_2d("ring", "equal")
    null = [sm.mmd(truth.sample(1000, torch.Generator().manual_seed(100 + 2 * i)),
                   truth.sample(1000, torch.Generator().manual_seed(101 + 2 * i))) for i in range(20)]
    return gmm.oracle("gmm2d"), truth, max(null)


def sample_ring(ring, sampler):
    oracle, truth, _ = ring
    generator = make_generator(0, "cpu")
    x0 = initial_state("noise", 1000, gmm.gmm2d().points, sampler.start_sigma, generator)
    result = run_chains(sampler, as_score(oracle), x0, generator)
    assert result.status == "done"
    return result.samples


def test_langevin_with_the_exact_score_is_indistinguishable_from_true_samples(ring):
    _, truth, null_max = ring
    samples = sample_ring(ring, Langevin(sigma=0.02, step_size=5e-4, steps=400))
    reference = truth.sample(1000, torch.Generator().manual_seed(7))
    value = sm.mmd(samples, reference)
    assert value <= null_max, f"MMD^2 {value:.2e} above the largest of 20 true-vs-true values {null_max:.2e}"
    assert sm.modes_covered(samples, truth) == 8


def test_gradient_ascent_collapses_onto_the_modes(ring):
    _, truth, null_max = ring
    samples = sample_ring(ring, GradientAscent(sigma=0.02, step_size=5e-4, steps=400))
    distance = torch.cdist(samples.double(), truth.means).min(dim=1).values
    assert distance.max() < 1e-3, f"a chain ended {distance.max():.2g} from the nearest mode"
    reference = truth.sample(1000, torch.Generator().manual_seed(7))
    assert sm.mmd(samples, reference) > 3 * null_max, "MMD should see the collapse"


# the command ---------------------------------------------------------------------------------

def only_sample_folder(store):
    folders = list((store.parent / "samples").iterdir())
    assert len(folders) == 1
    return folders[0]


def test_sample_command_writes_samples_and_ranks_them(cli, store):
    result = cli("sample", "langevin", "--score", "oracle", "--dataset", "gmm2d", "--n", "200",
                 "--steps", "200", "--step-size", "5e-4", "--sigma", "0.02", "--store", store,
                 "--device", "cpu", "--quiet")
    assert result.code == 0, result.err
    out = only_sample_folder(store)
    assert {p.name for p in out.iterdir()} == {"samples.pt", "metrics.json", "scatter.png"}
    saved = torch.load(out / "samples.pt")
    assert saved["samples"].shape == (200, 2) and saved["status"] == "done"
    saved_meta = json.loads((out / "metrics.json").read_text())
    metrics = saved_meta["metrics"]
    assert set(metrics) == set(sm.METRICS) | set(sm.COSTS)
    assert metrics["nfe"] == saved_meta["nfe"] == 200, "one score evaluation per Langevin step"
    cells = rows(store, "SELECT status, sampler, score, chains, init, key FROM sample_cells")
    assert cells == [("done", "langevin[sigma=0.02,step_size=0.0005,steps=200]", "oracle", 200, "noise",
                      out.name)]
    assert rows(store, "SELECT COUNT(*) FROM cells") == [(0,)], "no sampler row among the denoiser cells"
    stored = dict(rows(store, "SELECT metric, value FROM sample_scores"))
    assert stored == pytest.approx(metrics)
    board = cli("leaderboard", "--store", store, "--samples", "--metric", "mmd", "--format", "csv")
    assert board.code == 0, board.err
    assert "langevin[sigma=0.02" in board.out


def test_sample_command_on_images_writes_a_grid(cli, store):
    result = cli("sample", "annealed-langevin[levels=3,sigma_max=0.5]", "--score", "oracle",
                 "--dataset", "gmm-images[n=32]", "--n", "16", "--steps", "10", "--sigma", "0.05",
                 "--store", store, "--device", "cpu", "--quiet")
    assert result.code == 0, result.err
    out = only_sample_folder(store)
    assert (out / "grid.png").exists()
    assert torch.load(out / "samples.pt")["samples"].shape == (16, 1, 16, 16)


@pytest.mark.parametrize("args, message", [
    (["annealed-langevin", "--score", "noisy"], "not sigma-aware"),
    (["langevin", "--score", "oracle", "--step-size", "0"], "step_size must be > 0"),
    (["langevin", "--score", "oracle", "--sigma", "-0.1"], "sigma must be > 0"),
    (["langevin", "--score", "oracle", "--n", "1"], "--n must be >= 2"),
    (["langevin[steps=0]", "--score", "oracle"], "steps must be an integer >= 1"),
    (["edm-heun", "--score", "oracle", "--step-size", "0.1"],
     "--step-size does not apply to edm-heun (its parameters: steps, sigma_min, sigma_max, rho)"),
    (["real-data", "--score", "oracle", "--sigma", "0.1"], "--sigma does not apply to real-data"),
])
def test_sample_command_refuses_bad_input_in_one_line(cli, store, args, message):
    result = cli("sample", *args, "--dataset", "gmm2d", "--store", store)
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1
    assert not store.exists(), "nothing may be written on bad input"


def test_sigma_flag_is_the_smallest_level_of_the_edm_and_ddim_samplers(cli, store):
    result = cli("sample", "edm-heun[sigma_max=3,steps=3]", "ddim[sigma_max=3,steps=3]", "--sigma", "0.05",
                 "--score", "oracle", "--dataset", "gmm2d", "--n", "8", "--store", store, "--device", "cpu",
                 "--quiet")
    assert result.code == 0, result.err
    names = sorted(name for name, in rows(store, "SELECT sampler FROM sample_cells"))
    assert names == ["ddim[eta=0,rho=7,sigma_max=3,sigma_min=0.05,steps=3]",
                     "edm-heun[rho=7,sigma_max=3,sigma_min=0.05,steps=3]"]


def test_a_diverging_sampler_is_an_error_cell(cli, store):
    """Steps far above 2 sigma^2 make gradient ascent oscillate and blow up to inf / NaN."""
    result = cli("sample", "gradient-ascent", "--score", "oracle", "--dataset", "gmm2d", "--n", "8",
                 "--steps", "500", "--step-size", "10", "--sigma", "0.1", "--store", store,
                 "--device", "cpu", "--quiet")
    assert result.code == 1
    assert "FAILED" in result.err and "diverged at step" in result.err
    (status, error), = rows(store, "SELECT status, error FROM sample_cells")
    assert status == "error" and error.startswith("diverged at step ")
    assert json.loads((only_sample_folder(store) / "metrics.json").read_text())["status"] == "diverged"


def test_a_crashing_score_model_is_recorded_as_an_error(cli, store, write_plugin):
    plugin = write_plugin(
        "import bench\n\n"
        "def broken():\n"
        "    raise RuntimeError('no weights here')\n\n"
        "@bench.hookimpl\n"
        "def register_denoisers(register):\n"
        "    register('broken', broken, sigma_aware=True)\n")
    result = cli("sample", "langevin", "--score", "broken", "--dataset", "gmm2d", "--plugin", plugin,
                 "--store", store)
    assert result.code == 1
    (status, error), = rows(store, "SELECT status, error FROM sample_cells")
    assert status == "error" and "RuntimeError: no weights here" in error


def test_a_sampler_written_for_the_old_finish_name_is_refused_not_silently_changed():
    from bench.sampling.samplers import Sampler

    with pytest.raises(TypeError, match="final_step"):
        type("OldSampler", (Sampler,), {"finish": lambda self, x, score_fn: x})
