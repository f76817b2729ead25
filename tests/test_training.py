"""The training loop and the model store, on tiny models whose optimum is known."""

from __future__ import annotations

import importlib.metadata
import json
import math

import pytest
import torch
from torch import nn

from bench.errors import UsageError
from bench.training.model_store import (Learner, TrainingData, checkpoint_path, is_complete, load_model,
                                        tensors_hash, train_checkpoint)
from bench.plugins import PluginSet
from bench.registry import Registry
from bench.training.loop import (TrainOptions, parse_training_noise, random_crops, split_validation,
                                 train, training_length, validation_loss, validation_set)

pytestmark = pytest.mark.usefixtures("one_thread")


class Shrink(nn.Module):
    """x_hat = a * y: its MSE-optimal a is E[x^2] / (E[x^2] + sigma^2) for y = x + sigma n."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.2))

    def forward(self, y, sigma):
        return self.a * y


class Recorder(nn.Module):
    """Shrink that also keeps every (y, sigma) it was trained on."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, y, sigma):
        if self.training:
            self.seen.append((y.detach().clone(), sigma.detach().clone()))
        return self.a * y


class TinyConv(nn.Module):
    def __init__(self, channels=1, size=None):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, y, sigma):
        return y - self.conv(y)


def images(n=24, size=8, seed=0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# --- noise specs -------------------------------------------------------------------------------

def test_noise_specs_levels_and_ranges():
    assert parse_training_noise("gaussian:0.05,0.2").levels == (0.05, 0.2)
    assert parse_training_noise("gaussian:25/255").levels == (25 / 255,)
    ranged = parse_training_noise("gaussian:0.01:0.25")
    assert (ranged.low, ranged.high, ranged.is_range) == (0.01, 0.25, True)
    bare = parse_training_noise("0:0.3")
    assert (bare.low, bare.high) == (0.0, 0.3)
    assert bare.label == "gaussian:0:0.3"
    assert parse_training_noise(bare.label) == bare


@pytest.mark.parametrize("text, message", [
    ("gaussian:0.3:0.1", "low > high"),
    ("0.3:0.1", "low > high"),
    ("gaussian:-0.1,0.2", ">= 0"),
    ("gaussian:0:0", "> 0"),
    ("poisson:4,16", "only gaussian"),
    ("gaussian:abc", "malformed"),
    ("gaussian:", "malformed"),
    ("gaussian:0:1:log", "log-spaced range needs a low end > 0"),
    ("gaussian:0.01:1:cubic", "malformed training noise"),
    ("gaussian:0.01:diameter:log:x", "malformed training noise"),
])
def test_bad_noise_specs_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_training_noise(text)


def test_range_sampling_is_uniform_and_levels_sampling_picks_levels():
    generator = torch.Generator().manual_seed(0)
    draws = parse_training_noise("0.1:0.3").sample(20000, generator, torch.device("cpu"))
    assert draws.min() >= 0.1 and draws.max() <= 0.3
    # Uniform on [a, b]: mean (a + b) / 2, variance (b - a)^2 / 12.
    assert draws.mean().item() == pytest.approx(0.2, abs=0.002)
    assert draws.var().item() == pytest.approx(0.2 ** 2 / 12, rel=0.03)
    picks = parse_training_noise("gaussian:0.05,0.2").sample(1000, generator, torch.device("cpu"))
    assert {round(v, 6) for v in picks.tolist()} == {0.05, 0.2}


def test_lognormal_range_draws_edms_truncated_log_normal():
    from scipy.stats import truncnorm

    noise = parse_training_noise("gaussian:0.05:2:lognormal")
    assert noise.label == "gaussian:0.05:2:lognormal"
    draws = noise.sample(40000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert draws.min() >= 0.05 and draws.max() <= 2
    # ln sigma ~ N(-1.2, 1.2^2) truncated to [ln 0.05, ln 2]: scipy's truncated normal as the reference.
    a, b = ((math.log(v) + 1.2) / 1.2 for v in (0.05, 2))
    reference = truncnorm(a, b, loc=-1.2, scale=1.2)
    logs = draws.double().log()
    assert logs.mean().item() == pytest.approx(reference.mean(), abs=0.01)
    assert logs.var().item() == pytest.approx(reference.var(), rel=0.03)
    assert noise.validation_levels() == pytest.approx([math.exp(reference.ppf(q)) for q in (1 / 6, 0.5, 5 / 6)],
                                                      rel=1e-5)
    with pytest.raises(UsageError, match="log-normal range needs a low end > 0"):
        parse_training_noise("gaussian:0:2:lognormal")


# --- the loop ------------------------------------------------------------------------------------

def test_training_reaches_the_analytic_optimum_of_a_linear_shrinker():
    x = images(64, 8)
    sigma = 0.3
    options = TrainOptions(epochs=60, batch_size=16, lr=0.02, noise=f"gaussian:{sigma}",
                           val_fraction=0.0)
    model = Shrink()
    result = train(model, x, options, torch.device("cpu"), quiet=True)
    second_moment = (x ** 2).mean().item()
    optimum = second_moment / (second_moment + sigma ** 2)
    assert model.a.item() == pytest.approx(optimum, abs=0.02), \
        f"a = {model.a.item():.4f}, analytic optimum {optimum:.4f}"
    # Its MSE at the optimum: E[(a y - x)^2] = (1 - a)^2 E[x^2] + a^2 sigma^2.
    expected = (1 - optimum) ** 2 * second_moment + optimum ** 2 * sigma ** 2
    assert result.history[-1]["train_loss"] == pytest.approx(expected, rel=0.1)
    assert result.history[0]["train_loss"] > result.history[-1]["train_loss"]


def test_noise_is_drawn_per_image_at_the_sampled_level():
    x = torch.full((40, 1, 16, 16), 0.5)
    model = Recorder()
    options = TrainOptions(epochs=2, batch_size=8, lr=1e-9, noise="gaussian:0.05,0.2",
                           val_fraction=0.0)
    train(model, x, options, torch.device("cpu"), quiet=True)
    assert len(model.seen) == 2 * 5
    ys = torch.cat([y for y, _ in model.seen])
    sigmas = torch.cat([s for _, s in model.seen])
    assert set(round(s, 6) for s in sigmas.tolist()) == {0.05, 0.2}
    z = (ys - 0.5) / sigmas.view(-1, 1, 1, 1)  # should be standard normal, fresh per batch
    assert z.mean().item() == pytest.approx(0.0, abs=0.02)
    assert z.std().item() == pytest.approx(1.0, abs=0.02)
    first, second = model.seen[0][0], model.seen[5][0]
    assert not torch.equal(first, second), "the second epoch must draw new noise"


def test_training_is_deterministic_on_the_cpu_for_a_seed():
    x = images(20, 12)
    options = TrainOptions(epochs=3, batch_size=4, lr=1e-2, patch=6, hflip=True, noise="0:0.2")

    def weights(seed):
        torch.manual_seed(seed)
        model = TinyConv()
        train(model, x, options.with_overrides(seed=seed), torch.device("cpu"), quiet=True)
        return model.state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_validation_split_is_seeded_disjoint_and_sized():
    train_idx, val_idx = split_validation(50, 0.1, seed=3)
    assert len(val_idx) == 5 and not set(train_idx) & set(val_idx)
    assert sorted(train_idx + val_idx) == list(range(50))
    assert split_validation(50, 0.1, seed=3) == (train_idx, val_idx)
    assert split_validation(50, 0.1, seed=4)[1] != val_idx
    assert split_validation(50, 0.0, seed=3) == (list(range(50)), [])


def test_early_stopping_stops_and_restores_the_best_weights():
    x = images(30, 8)
    options = TrainOptions(epochs=50, batch_size=8, lr=5.0, noise="gaussian:0.1",
                           early_stopping=2, val_fraction=0.2)
    torch.manual_seed(0)
    model = TinyConv()
    result = train(model, x, options, torch.device("cpu"), quiet=True)
    assert result.stopped_early and result.epochs_run < 50
    losses = [r["val_loss"] for r in result.history]
    best = min(losses)
    assert result.val_loss == best and losses.index(best) + 1 == result.best_epoch
    # The weights handed back score the best validation loss, recomputed independently.
    val = validation_set(x[split_validation(30, 0.2, 0)[1]], parse_training_noise("gaussian:0.1"),
                         0, torch.device("cpu"))
    model.load_state_dict(result.state_dict)
    assert validation_loss(model, val, 8, amp=False) == pytest.approx(best, rel=1e-6)


def test_ema_returns_the_moving_average_of_the_trained_weights():
    """The same seeded run with and without ``ema``: the EMA of the weights after every step,
    recomputed here in float64 from the recorded trajectory, is what comes back."""
    x = images(40, 8)
    options = TrainOptions(epochs=3, batch_size=8, lr=0.05, noise="gaussian:0.3", val_fraction=0.0)
    plain = Recorder()
    last = train(plain, x, options, torch.device("cpu"), quiet=True).state_dict["a"].item()
    trajectory = []

    class Tracked(Recorder):
        def forward(self, y, sigma):
            if self.training:
                trajectory.append(self.a.item())  # the weight before each step
            return super().forward(y, sigma)

    ratio = 0.3
    averaged = train(Tracked(), x, options.with_overrides(ema=ratio), torch.device("cpu"), quiet=True)
    weights = trajectory[1:] + [last]  # after each step: the same trajectory (same seed, CPU)
    average = trajectory[0]
    for k, w in enumerate(weights, start=1):  # batches of 8 images, 8 k seen after step k
        beta = 0.5 ** (8 / (ratio * 8 * k))
        average = beta * average + (1 - beta) * w
    assert averaged.state_dict["a"].item() == pytest.approx(average, rel=1e-5)
    assert abs(average - last) > 1e-3, "the test needs a trajectory whose average differs from its end"
    assert "ema" not in TrainOptions().to_dict(), "an option added later must not rename old checkpoints"
    assert TrainOptions(ema=0.1).to_dict()["ema"] == 0.1
    with pytest.raises(UsageError, match="ema"):
        train(Recorder(), x, options.with_overrides(ema=0.0), torch.device("cpu"), quiet=True)


def test_the_progress_bar_closes_when_training_fails(monkeypatch):
    from bench.training import loop

    closed = []

    class RecordingBar(loop.tqdm):
        def close(self):
            closed.append(True)
            super().close()

    class Crashing(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(()))

        def forward(self, y, sigma):
            raise RuntimeError("boom")

    monkeypatch.setattr(loop, "tqdm", RecordingBar)
    with pytest.raises(RuntimeError, match="boom") as failure:
        train(Crashing(), torch.rand(4, 1, 8, 8), TrainOptions(epochs=1, batch_size=2), torch.device("cpu"),
              quiet=True)
    assert closed, f"a failed training ({failure.value}) left its progress bar open"


def test_random_crops_are_windows_of_the_images():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    crops = random_crops(x, 3, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 1, 3, 3)
    for b in range(2):
        windows = [x[b, :, i:i + 3, j:j + 3] for i in range(4) for j in range(4)]
        assert any(torch.equal(crops[b], w) for w in windows)


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"), ({"patch": 20}, "larger than"),
    ({"val_fraction": 1.0}, "val-fraction"),
    ({"early_stopping": 2, "val_fraction": 0.0}, "validation images"),
    ({"noise": "0.2:0.1"}, "low > high"),
])
def test_bad_options_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        train(TinyConv(), images(8, 8), TrainOptions(**overrides), torch.device("cpu"), quiet=True)


# --- the training length: epochs or images seen -----------------------------------------------------

def trained_batches(x, options) -> tuple[list[int], object]:
    """The size of every training batch a run draws (counted by the model), and its result."""
    model = Recorder()
    result = train(model, x, options, torch.device("cpu"), quiet=True)
    return [len(y) for y, _ in model.seen], result


@pytest.mark.parametrize("n, patch", [(7, None), (24, None), (50, None), (6, 4)])
def test_a_length_in_images_seen_draws_exactly_that_many_whatever_the_split(n, patch):
    """100 images seen, batch 8: whatever the number of images, the last epoch is cut where 100 is reached."""
    options = TrainOptions(images=100, batch_size=8, lr=1e-9, noise="gaussian:0.1", patch=patch,
                           val_fraction=0.0)
    batches, result = trained_batches(images(n, 8), options)
    per_epoch = n * (4 if patch else 1)  # 8x8 images tile into four 4x4 crops
    assert sum(batches) == 100 == result.images_seen
    assert len(batches) == result.steps
    assert result.epochs_run == math.ceil(100 / per_epoch)
    assert [h["images"] for h in result.history] == [min(100, e * per_epoch) for e in
                                                      range(1, result.epochs_run + 1)]


def test_a_smaller_split_trains_as_many_images_and_steps_as_the_full_one():
    """mlp-dae's MNIST length (540,000 images, batch 128, 10% held out) on the 60,000 digits and
    on 8,000: the same images seen, the small split in 75 passes; each pass may end on one
    smaller batch, so the step counts agree to within one step per pass (exactly when the
    batch divides both passes)."""
    options = TrainOptions(images=540_000, batch_size=128, val_fraction=0.1)
    full = training_length(torch.zeros(60_000, 1, 1, 1), options)
    small = training_length(torch.zeros(8_000, 1, 1, 1), options)
    assert (full.total, full.per_epoch, full.epochs) == (540_000, 54_000, 10)
    assert (small.total, small.per_epoch, small.epochs) == (540_000, 7_200, 75)
    assert 0 <= small.steps(128) - full.steps(128) <= small.epochs
    assert small.steps(100) == full.steps(100) == 5_400
    # Counted on real runs, with a batch that divides both passes: 40 images or 10, 80 seen.
    counted = [trained_batches(images(n, 8), TrainOptions(images=80, batch_size=5, lr=1e-9,
                                                          noise="gaussian:0.1", val_fraction=0.0))[0]
               for n in (40, 10)]
    assert counted[0] == counted[1] == [5] * 16
    # Counted by epochs instead, the small split trains a quarter as long.
    by_epochs = [trained_batches(images(n, 8), TrainOptions(epochs=2, batch_size=5, lr=1e-9,
                                                            noise="gaussian:0.1", val_fraction=0.0))[0]
                 for n in (40, 10)]
    assert (sum(by_epochs[0]), sum(by_epochs[1])) == (80, 20)


def test_the_cosine_schedule_reaches_zero_at_the_end_of_the_length_in_images(monkeypatch):
    """images=70 over 30 images, batch 8: passes of 30, 30 and 10 images, 4 + 4 + 2 = 10 steps;
    the learning rate follows lr (1 + cos(pi k / 10)) / 2 and is 0 after the last step."""
    from bench.training import loop

    rates = []
    step = loop.Optimisation.step

    def recording_step(self, *batch):
        loss = step(self, *batch)
        rates.append(self.optimizer.param_groups[0]["lr"])
        return loss

    monkeypatch.setattr(loop.Optimisation, "step", recording_step)
    options = TrainOptions(images=70, batch_size=8, lr=0.1, noise="gaussian:0.1", val_fraction=0.0,
                           schedule="cosine")
    result = train(Shrink(), images(30, 8), options, torch.device("cpu"), quiet=True)
    assert result.steps == 10
    expected = [0.1 * (1 + math.cos(math.pi * k / 10)) / 2 for k in range(1, 11)]
    assert rates == pytest.approx(expected, abs=1e-9)
    assert rates[-1] == pytest.approx(0.0, abs=1e-9)


def test_images_seen_of_whole_passes_train_exactly_as_the_same_epochs():
    """The full split's length in images (epochs x the pass) reproduces the epochs' weights bit
    for bit, with EMA and validation on: results measured by epochs stay valid."""
    x = images(30, 8)
    by_epochs = TrainOptions(epochs=3, batch_size=8, lr=1e-2, noise="0:0.2", val_fraction=0.2, ema=0.3)
    n_train = len(split_validation(30, 0.2, 0)[0])
    by_images = by_epochs.with_overrides(images=3 * n_train)
    assert by_images.epochs is None and by_images.images == 72

    def run(options):
        torch.manual_seed(0)
        return train(TinyConv(), x, options, torch.device("cpu"), quiet=True)

    first, second = run(by_epochs), run(by_images)
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    assert first.history == second.history and first.steps == second.steps == 3 * 3


def test_a_cut_last_epoch_is_validated_and_early_stopping_sees_it():
    """With val_every=2 and 2.5 passes, validation runs after pass 2 and after the cut third."""
    options = TrainOptions(images=60, batch_size=8, lr=1e-2, noise="gaussian:0.1", val_fraction=0.2,
                           val_every=2)
    _, result = trained_batches(images(30, 8), options)
    assert [("val_loss" in h) for h in result.history] == [False, True, True]
    assert result.history[-1]["images"] == 60 and result.val_loss == result.history[-1]["val_loss"]


def test_the_length_is_epochs_or_images_never_both():
    assert TrainOptions().epochs == 100 and TrainOptions().images is None
    assert "images" not in TrainOptions(epochs=10).to_dict(), "epoch lengths keep their checkpoint names"
    assert TrainOptions(images=1000).to_dict()["images"] == 1000
    by_images = TrainOptions(images=1000)
    assert by_images.with_overrides(epochs=3) == TrainOptions(epochs=3)
    assert TrainOptions(epochs=3).with_overrides(images=500) == TrainOptions(images=500)
    assert by_images.with_overrides(lr=0.1).images == 1000
    with pytest.raises(UsageError, match="not both"):
        by_images.with_overrides(epochs=3, images=500)
    with pytest.raises(UsageError, match="not both"):
        TrainOptions(epochs=3, images=500).validate()
    with pytest.raises(UsageError, match="images must be >= 1"):
        TrainOptions(images=0).validate()


# --- the model store ------------------------------------------------------------------------------

TINY = Learner("tiny", lambda channels, size: TinyConv(channels), sigma_aware=False,
               defaults=lambda dataset: TrainOptions(epochs=1, batch_size=8))
OTHER = Learner("other", lambda channels, size: TinyConv(channels), sigma_aware=False,
                defaults=TINY.defaults)


def tiny_data() -> TrainingData:
    x = images(10, 8)
    return TrainingData("toy[split=train]", [f"t{i}" for i in range(10)], x,
                        tensors_hash({"images": x}))


def test_checkpoint_round_trip_json_and_fingerprint(tmp_path):
    data, options = tiny_data(), TINY.defaults("toy")
    path = train_checkpoint(TINY, data, options, tmp_path, torch.device("cpu"),
                            Registry(PluginSet()), quiet=True)
    assert path == checkpoint_path(tmp_path, TINY, data, options) and is_complete(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["learner"] == "tiny" and meta["data"]["hash"] == data.hash
    assert meta["options"] == options.to_dict() and meta["seed"] == 0
    assert set(meta["validation_ids"]) <= set(data.ids) and len(meta["validation_ids"]) == 1
    assert math.isfinite(meta["train_loss"]) and math.isfinite(meta["val_loss"])
    assert meta["versions"]["torch"] == importlib.metadata.version("torch")
    model = load_model(path, TINY)
    state = torch.load(path, weights_only=True)
    assert model.fingerprint == meta["weights_hash"] == tensors_hash(state)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)
    # Another seed is another request: another file.
    assert checkpoint_path(tmp_path, TINY, data, options.with_overrides(seed=1)) != path


def test_checkpoint_of_another_learner_or_bare_weights_are_refused(tmp_path):
    path = train_checkpoint(TINY, tiny_data(), TINY.defaults("toy"), tmp_path,
                            torch.device("cpu"), Registry(PluginSet()), quiet=True)
    with pytest.raises(UsageError, match="holds a 'tiny' model, not 'other'"):
        load_model(path, OTHER)
    bare = tmp_path / "bare.pt"
    torch.save(TinyConv().state_dict(), bare)
    with pytest.raises(UsageError, match="architecture is unknown"):
        load_model(bare, TINY)
    with pytest.raises(UsageError, match="not found"):
        load_model(tmp_path / "missing.pt", TINY)


def test_tensors_hash_depends_on_values_names_and_shapes():
    a = {"w": torch.zeros(2, 3)}
    assert tensors_hash(a) == tensors_hash({"w": torch.zeros(2, 3)})
    assert tensors_hash(a) != tensors_hash({"w": torch.zeros(3, 2)})
    assert tensors_hash(a) != tensors_hash({"v": torch.zeros(2, 3)})
    assert tensors_hash(a) != tensors_hash({"w": torch.zeros(2, 3).index_fill(1, torch.tensor([0]), 1e-7)})
