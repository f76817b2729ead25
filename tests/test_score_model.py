"""The score model built for sampling: its noise range from the data, EDM's preconditioning, its training."""

import itertools
import math

import pytest
import torch

from bench.training.loop import TrainOptions, parse_training_noise, train
from bench.training.noise_range import largest_pairwise_distance
from bench_plugins.score_unet import SIGMA_DATA, EDMDenoiser, UNet, score_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force_diameter(x: torch.Tensor) -> float:
    """Every pair, by scipy's reference formula in torch: the largest entry of pdist."""
    return float(torch.pdist(x.reshape(len(x), -1).double()).max())


@pytest.mark.parametrize("seed, shape", [(0, (300, 1, 6, 6)), (1, (500, 40)), (2, (2, 3))])
def test_largest_pairwise_distance_is_exact(seed, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    assert largest_pairwise_distance(x) == pytest.approx(brute_force_diameter(x), rel=1e-12)


def test_largest_pairwise_distance_beats_the_double_sweep():
    """A set where the pair found from the point farthest from the mean is not the farthest pair:
    four points of a long thin rhombus-like layout plus a decoy far from the mean on its own axis."""
    x = torch.tensor([[10.0, 0, 0], [-10.0, 0, 0], [0, 9.0, 0], [0, -9.0, 0], [0, 0, 10.5]])
    x = torch.cat([x, 0.01 * torch.randn(200, 3, generator=torch.Generator().manual_seed(0))])
    assert largest_pairwise_distance(x) == pytest.approx(brute_force_diameter(x))
    assert largest_pairwise_distance(x[:1]) == 0.0


def test_log_range_up_to_the_diameter_parses_and_resolves():
    noise = parse_training_noise("gaussian:0.01:diameter:log")
    assert noise.from_data and noise.spacing == "log" and noise.label == "gaussian:0.01:diameter:log"
    images = torch.rand(50, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    resolved = noise.resolve(images)
    assert resolved.high == pytest.approx(brute_force_diameter(images)) and not resolved.from_data
    assert parse_training_noise(resolved.label).high == pytest.approx(resolved.high, rel=1e-5)
    draws = resolved.sample(40000, torch.Generator().manual_seed(1), torch.device("cpu"))
    logs = (draws / 0.01).log() / math.log(resolved.high / 0.01)  # uniform on [0, 1] if log-uniform
    assert draws.min() >= 0.01 and draws.max() <= resolved.high
    assert logs.mean().item() == pytest.approx(0.5, abs=0.01) and logs.var().item() == pytest.approx(1 / 12, rel=0.05)
    ratio = resolved.high / 0.01
    assert resolved.validation_levels() == pytest.approx([0.01 * ratio ** (k / 6) for k in (1, 3, 5)])


def test_preconditioning_with_a_silent_network_is_the_gaussian_posterior_mean():
    """With F = 0 (its zero-initialised output layer), D = m + c_skip (x - m) is exactly E[x | y]
    for data N(m, sd^2 I): the skip path alone is right for data at the assumed scale."""
    model = score_unet(1, width=8).eval()
    y = torch.randn(6, 1, 8, 8)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 20.0])
    wiener = 0.5 + SIGMA_DATA ** 2 / (SIGMA_DATA ** 2 + sigma.view(-1, 1, 1, 1) ** 2) * (y - 0.5)
    with torch.no_grad():
        torch.testing.assert_close(model(y, sigma), wiener)
    weight = model.loss_weight(sigma)
    c_out = sigma * SIGMA_DATA / (sigma ** 2 + SIGMA_DATA ** 2).sqrt()
    torch.testing.assert_close(weight, 1 / c_out ** 2)


def test_training_records_the_range_and_weights_the_loss():
    """The loop writes the resolved range into the model; its loss is EDM's weighted one:
    for the silent network at start, sum lambda(s) |D - x|^2 matches a hand computation."""
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    options = TrainOptions(epochs=1, batch_size=8, lr=1e-3, noise="gaussian:0.02:diameter:log",
                           val_fraction=0.25)
    model = score_unet(1, width=8)
    result = train(model, images, options, torch.device("cpu"), quiet=True)
    train_part = images[[i for i in range(40) if i not in {int(j) for j in _validation(options)}]]
    assert float(model.sigma_max) == pytest.approx(largest_pairwise_distance(train_part))
    assert float(model.sigma_min) == pytest.approx(0.02)
    assert result.noise == f"gaussian:0.02:{float(model.sigma_max):g}:log"
    assert 0.05 < result.val_loss < 5, "lambda-weighted losses are O(1) at every level"


def _validation(options):
    from bench.training.loop import split_validation

    return split_validation(40, options.val_fraction, options.seed)[1]


def test_unet_conditions_on_sigma():
    net = UNet(1, width=8)
    for p in net.parameters():  # wake the zero-initialised output
        torch.nn.init.normal_(p, std=0.1) if p.dim() > 1 else None
    x = torch.randn(2, 1, 28, 28)
    low, high = (net(x, torch.full((2,), c)) for c in (-1.0, 1.0))
    assert not torch.allclose(low, high), "the noise embedding must change the output"
    assert low.shape == x.shape
    model = EDMDenoiser(net)
    assert list(itertools.islice(model.state_dict(), 2)) == ["sigma_min", "sigma_max"]


def test_a_score_unet_checkpoint_round_trips_through_the_model_store(tmp_path):
    """Written (its 0-d range buffers hashed too), found by its JSON, loaded with the range it trained on."""
    from bench.plugins import get_plugin_set
    from bench.registry import Registry
    from bench.training import model_store
    from bench_plugins.learned import LEARNERS

    learner = next(learner for learner in LEARNERS if learner.name == "score-unet")
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = model_store.TrainingData("toy", [str(i) for i in range(24)], images,
                                    model_store.tensors_hash({"images": images}))
    options = TrainOptions(epochs=1, batch_size=8, noise="gaussian:0.01:diameter:log", val_fraction=0.25)
    path = model_store.train_checkpoint(learner, data, options, tmp_path, torch.device("cpu"),
                                        Registry(get_plugin_set()), quiet=True)
    model = model_store.load_model(path, learner)
    meta = model_store.read_meta(path)
    assert float(model.sigma_max) == pytest.approx(float(meta["noise"].split(":")[2]), rel=1e-5)
    assert model.fingerprint == meta["weights_hash"]
    assert model_store.tensors_hash({"s": torch.tensor(1.0)}) != model_store.tensors_hash({"s": torch.tensor(2.0)})
