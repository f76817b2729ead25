"""Seeded noise: identical inputs for every denoiser, right statistics, deepinv underneath."""

import deepinv
import pytest
import torch

from bench.data.datasets import ImageSet, skimage_gray
from bench.errors import UsageError
from bench.grid.inputs import make_batches
from bench.noise.degradations import GaussianDegradation, PoissonDegradation
from bench.seeding import noise_seed

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def images() -> ImageSet:
    return skimage_gray(crop=64)


def noisy_by_id(images, degradation, level, batch_size, order=None):
    if order is not None:
        images = ImageSet([images.ids[i] for i in order], [images.images[i] for i in order])
    batches = make_batches(images, "ds", degradation, level, 0, 7, batch_size, CPU)
    return {i: b.y[k] for b in batches for k, i in enumerate(b.ids)}


@pytest.mark.parametrize("degradation,level", [(GaussianDegradation(), 0.1), (PoissonDegradation(), 16.0)])
def test_noise_does_not_depend_on_batch_size_or_order(images, degradation, level):
    reference = noisy_by_id(images, degradation, level, batch_size=1)
    for batch_size, order in [(3, None), (10, list(reversed(range(len(images)))))]:
        other = noisy_by_id(images, degradation, level, batch_size, order)
        for image_id, y in reference.items():
            assert torch.equal(y, other[image_id]), f"{image_id} differs at batch size {batch_size}"


def test_seed_changes_with_every_identity_field():
    base = noise_seed(0, "ds", "camera", "gaussian", 0.1, 0)
    variants = [noise_seed(1, "ds", "camera", "gaussian", 0.1, 0),
                noise_seed(0, "other", "camera", "gaussian", 0.1, 0),
                noise_seed(0, "ds", "moon", "gaussian", 0.1, 0),
                noise_seed(0, "ds", "camera", "poisson", 0.1, 0),
                noise_seed(0, "ds", "camera", "gaussian", 0.2, 0),
                noise_seed(0, "ds", "camera", "gaussian", 0.1, 1)]
    assert len({base, *variants}) == 7
    assert base == noise_seed(0, "ds", "camera", "gaussian", 0.1, 0)


def test_gaussian_noise_statistics_and_no_clipping():
    x = torch.full((1, 128, 128), 0.5)
    y = GaussianDegradation().apply([x], 0.2, [123])[0]
    residual = (y - x).flatten()
    assert abs(residual.mean().item()) < 0.005
    assert abs(residual.std().item() - 0.2) < 0.005
    assert y.min() < 0 and y.max() > 1, "noisy inputs must not be clipped"


@pytest.mark.parametrize("seed", [99, 2**62 + 7])
def test_gaussian_equals_deepinv_with_the_same_generator(seed):
    x = torch.rand(3, 16, 16)
    for sigma in (0.1, 25 / 255):
        ours = GaussianDegradation().apply([x], sigma, [seed])[0]
        theirs = deepinv.physics.GaussianNoise(sigma=sigma, rng=torch.Generator())(x[None], seed=seed)[0]
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("seed", [5, 2**62 + 11])
def test_poisson_equals_deepinv_with_the_same_generator(seed):
    x = torch.rand(1, 16, 16)
    for peak in (4.0, 16.0, 60.0):
        ours = PoissonDegradation().apply([x], peak, [seed])[0]
        theirs = deepinv.physics.PoissonNoise(gain=1.0 / peak, rng=torch.Generator())(x[None], seed=seed)[0]
        assert torch.equal(ours, theirs)


def test_degradation_sigma_handed_to_denoisers():
    y = torch.rand(3, 1, 8, 8)
    assert GaussianDegradation().sigma(y, 0.1).tolist() == pytest.approx([0.1] * 3)
    expected = torch.sqrt(y.flatten(1).mean(1) / 16)
    assert torch.allclose(PoissonDegradation().sigma(y, 16.0), expected)


@pytest.mark.parametrize("degradation,text,message", [
    (GaussianDegradation(), "-0.1", "must be > 0"),
    (GaussianDegradation(), "abc", "not a number"),
    (GaussianDegradation(), "25/0", "not a number"),
    (PoissonDegradation(), "0", "must be > 0"),
])
def test_bad_levels_are_usage_errors(degradation, text, message):
    with pytest.raises(UsageError, match=message):
        degradation.parse_level(text)


def test_levels_accept_k_over_255():
    assert GaussianDegradation().parse_level("25/255") == pytest.approx(25 / 255)


UNIFORM = '''
import torch
import bench
from bench.noise.degradations import Degradation
from bench.noise.levels import LevelScale

class Uniform(Degradation):
    name = "uniform"
    family = "gaussian"
    scale = LevelScale("width", 100.0, {"unicode": "w", "latex": "$w$"}, "noise width (% of range)")

    def apply(self, images, level, seeds):
        out = []
        for x, seed in zip(images, seeds):
            g = torch.Generator().manual_seed(seed)
            out.append(x + level * (torch.rand(x.shape, generator=g) - 0.5))
        return torch.stack(out)

    def sigma(self, y, level):
        return torch.full((y.shape[0],), level / 12 ** 0.5, device=y.device)

@bench.hookimpl
def register_degradations(register):
    register("uniform", Uniform, description="y = x + width * (U - 1/2)")
'''


def test_a_third_party_degradation_labels_its_own_levels_end_to_end(cli, store, write_plugin, tmp_path):
    import io

    import pandas as pd

    from bench.reports import figures, tables
    from bench.store.database import open_existing

    plugin = write_plugin(UNIFORM, "uniform_noise.py")
    result = cli("run", "-d", "skimage-gray[crop=32]", "-n", "uniform:0.2,0.4", "-m", "noisy",
                 "-m", "gaussian-filter", "--plugin", plugin, "--store", store, "--quiet")
    assert result.code == 0, result.err
    table = pd.read_csv(io.StringIO(cli("leaderboard", "--store", store, "--format", "csv").out))
    assert sorted(set(table["level_label"])) == ["width=20", "width=40"]
    wide = cli("leaderboard", "--store", store, "--wide", "--format", "markdown").out
    assert "uniform w=20 psnr" in wide and "uniform w=40 ssim" in wide
    assert "$w$=40" in cli("leaderboard", "--store", store, "--wide", "--format", "latex").out
    with open_existing(store) as opened:
        fig = figures.metric_vs_level(tables.leaderboard(opened, "psnr"))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes[0].get_xlabel() == "noise width (% of range)"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["20", "40"]
