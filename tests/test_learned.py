"""Learned denoisers: architectures, the train command, checkpoint reuse in runs, MNIST from a root."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from bench.config import RunConfig
from bench.errors import UsageError
from bench.grid.planning import build_grid
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.training.loop import split_validation
from bench.training.model_store import tensors_hash
from bench_plugins.empirical_mmse import EmpiricalMMSE
from bench_plugins.learned import DRUNET_SMALL, ConvDAE, MLPDAE, drunet

from conftest import rows, write_idx

pytestmark = pytest.mark.usefixtures("one_thread")

LEARNED = ("mlp-dae", "mlp-dae-sigma", "conv-dae", "conv-dae-sigma", "drunet-small", "drunet")

#: A learner with a tiny default budget, registered from a local plugin file, so a run can
#: train it within a test. It reuses the built-in conv DAE and factory.
TINY_PLUGIN = '''
import bench
from bench.training.loop import TrainOptions
from bench.training.model_store import Learner
from bench_plugins.learned import ConvDAE, learned_factory

TINY = Learner("tiny-dae", lambda channels, size: ConvDAE(channels, width=4), sigma_aware=False,
               defaults=lambda dataset: TrainOptions(epochs=2, batch_size=64, noise="0:0.2"))


@bench.hookimpl
def register_denoisers(register):
    register("tiny-dae", learned_factory(TINY), sigma_aware=False, per_dataset=True, learned=TINY)
'''


@pytest.fixture
def tiny_plugin(write_plugin):
    return write_plugin(TINY_PLUGIN, "tiny_learner.py")


def one_line_error(result, *fragments):
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- registry ------------------------------------------------------------------------------------

def test_learned_denoisers_are_registered_with_their_conditioning():
    registry = Registry(get_plugin_set())
    entries = {name: registry.get("denoisers", name) for name in LEARNED + ("empirical-mmse",)}
    assert all(e.metadata["per_dataset"] for e in entries.values())
    assert all(entries[name].metadata["learned"].name == name for name in LEARNED)
    aware = {name for name, e in entries.items() if e.metadata["sigma_aware"]}
    assert aware == {"mlp-dae-sigma", "conv-dae-sigma", "drunet-small", "drunet", "empirical-mmse"}


# --- architectures -------------------------------------------------------------------------------

def test_mlp_is_the_classic_784_128_64_10_autoencoder():
    model = MLPDAE(1, (28, 28))
    linear = [m for m in model.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (784, 128), (128, 64), (64, 10), (10, 64), (64, 128), (128, 784)]
    activations = [type(m) for m in model.net if not isinstance(m, nn.Linear)]
    assert activations == [nn.ELU] * 5 + [nn.Sigmoid]
    aware = MLPDAE(1, (28, 28), sigma_aware=True)
    assert aware.net[0].in_features == 2 * 784  # the sigma channel, flattened


def test_mlp_patchwise_equals_explicit_overlap_averaging():
    torch.manual_seed(0)
    model = MLPDAE(1, (4, 4), sigma_aware=True).eval()
    y = torch.rand(2, 1, 11, 9)
    sigma = torch.tensor([0.1, 0.2])
    with torch.no_grad():
        out = model(y, sigma)
        # Reference: every 4x4 window (stride 1 here), denoised alone, summed and counted by loops.
        total, count = torch.zeros_like(y), torch.zeros_like(y)
        for i in range(11 - 3):
            for j in range(9 - 3):
                patch = y[:, :, i:i + 4, j:j + 4]
                total[:, :, i:i + 4, j:j + 4] += model(patch, sigma)
                count[:, :, i:i + 4, j:j + 4] += 1
    assert out.shape == y.shape
    torch.testing.assert_close(out, total / count)


def test_mlp_patchwise_with_stride_covers_the_edges():
    torch.manual_seed(0)
    model = MLPDAE(1, (8, 8)).eval()  # stride 2; 13 - 8 is odd, so the last row needs padding
    y = torch.rand(1, 1, 13, 13)
    with torch.no_grad():
        out = model(y, torch.tensor([0.1]))
    assert out.shape == y.shape and torch.isfinite(out).all()
    assert 0 <= out.min() and out.max() <= 1  # averages of sigmoid outputs


def test_mlp_refuses_sizes_it_cannot_take():
    from bench.errors import UsageError

    with pytest.raises(UsageError, match="at most 4096 input values"):
        MLPDAE(1, (128, 128))
    with pytest.raises(ValueError, match="at least 8x8"):
        MLPDAE(1, (8, 8))(torch.rand(1, 1, 6, 12), torch.tensor([0.1]))


@pytest.mark.parametrize("shape", [(2, 1, 25, 25), (1, 3, 16, 13)])
def test_conv_dae_and_drunet_take_any_size(shape):
    torch.manual_seed(0)
    y, sigma = torch.rand(shape), torch.full((shape[0],), 0.1)
    for model in (ConvDAE(shape[1]), ConvDAE(shape[1], sigma_aware=True),
                  drunet(shape[1], None, **DRUNET_SMALL)):
        with torch.no_grad():
            assert model.eval()(y, sigma).shape == y.shape


def test_sigma_aware_models_use_sigma_and_blind_ones_ignore_it():
    torch.manual_seed(0)
    y = torch.rand(1, 1, 12, 12)
    low, high = torch.tensor([0.05]), torch.tensor([0.2])
    with torch.no_grad():
        for aware in (False, True):
            for model in (MLPDAE(1, (12, 12), aware), ConvDAE(1, aware)):
                changed = not torch.equal(model(y, low), model(y, high))
                assert changed == aware, f"{type(model).__name__} sigma_aware={aware}"


def test_empirical_mmse_is_the_softmax_posterior_mean(tmp_path):
    from bench.training.model_store import TrainingData

    atoms = torch.rand(6, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    model = EmpiricalMMSE(TrainingData("toy", [str(i) for i in range(6)], atoms,
                                       tensors_hash({"images": atoms})))
    y = atoms[:2] + 0.3 * torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.3, 0.5])
    # p(x_k | y) ~ exp(-|y - x_k|^2 / (2 sigma^2)), by hand in float64.
    d2 = ((y.double().flatten(1)[:, None] - atoms.double().flatten(1)[None]) ** 2).sum(-1)
    weights = torch.softmax(-d2 / (2 * sigma.double()[:, None] ** 2), dim=1)
    expected = (weights @ atoms.double().flatten(1)).view_as(y).float()
    torch.testing.assert_close(model(y, sigma), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="holds 1x5x5 training images"):
        model(torch.rand(1, 1, 6, 6), sigma[:1])


# --- the train command ---------------------------------------------------------------------------

def test_train_writes_a_checkpoint_and_reuses_it(cli, tmp_path):
    models = tmp_path / "models"
    args = ("train", "conv-dae", "--dataset", "lfw-faces", "--epochs", "1", "--batch-size", "64",
            "--models", models, "--quiet")
    first = cli(*args)
    assert first.code == 0, first.err
    path = models / first.out.splitlines()[0].split("/")[-1]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["learner"] == "conv-dae" and meta["data"]["label"] == "lfw-faces[split=train]"
    assert meta["data"]["n_images"] == 160 and meta["options"]["epochs"] == 1 and "ema" not in meta["options"]
    assert not set(meta["validation_ids"]) & {f"lfw{i:03d}" for i in range(0, 200, 5)}, \
        "validation images come from the train split"
    assert meta["train_loss"] > 0 and meta["val_loss"] > 0
    mtime = path.stat().st_mtime_ns
    again = cli(*args)
    assert again.code == 0 and "already trained" in again.err
    assert path.stat().st_mtime_ns == mtime
    averaged = cli(*args, "--ema", "0.2")  # another option, another checkpoint
    assert averaged.code == 0, averaged.err
    ema_path = models / averaged.out.splitlines()[0].split("/")[-1]
    assert ema_path != path and json.loads(ema_path.with_suffix(".json").read_text())["options"]["ema"] == 0.2


def test_run_trains_a_missing_model_once_then_reuses_it(cli, tiny_plugin, tmp_path):
    store, models = tmp_path / "s" / "bench.sqlite", tmp_path / "s" / "models"
    args = ("run", "-d", "lfw-faces", "-n", "gaussian:0.1", "-m", "tiny-dae", "-m", "noisy",
            "--plugin", tiny_plugin, "--store", store, "--limit-images", "4", "--quiet")
    first = cli(*args)
    assert first.code == 0, first.err
    trained = sorted(models.glob("tiny-dae--lfw-faces_split=train--*.pt"))
    assert len(trained) == 1, "the model store sits beside the store"
    assert rows(store, "SELECT status FROM cells WHERE denoiser = 'tiny-dae'") == [("done",)]
    mtime = trained[0].stat().st_mtime_ns
    second = cli(*args)
    assert second.code == 0 and "2 from earlier runs" in second.err
    assert trained[0].stat().st_mtime_ns == mtime, "reused, not retrained"


def test_cell_key_changes_with_the_checkpoint_weights(tiny_plugin, tmp_path):
    """Retrained weights are new cells; weights changed on disk behind their JSON are refused."""
    config = RunConfig(datasets=["lfw-faces"], noise=["gaussian:0.1"], denoisers=["tiny-dae"],
                       store=str(tmp_path / "bench.sqlite"), plugins=[str(tiny_plugin)],
                       limit_images=2)
    registry = Registry(get_plugin_set(config.plugins))
    first = build_grid(config, registry, quiet=True)
    assert build_grid(config, registry, quiet=True).cells[0].key == first.cells[0].key
    path = next((tmp_path / "models").glob("tiny-dae--*.pt"))
    state = torch.load(path, weights_only=True)
    changed = {k: v + 0.01 for k, v in state.items()}
    torch.save(changed, path)
    with pytest.raises(UsageError, match="changed after training"):
        build_grid(config, registry, quiet=True)
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "weights_hash": tensors_hash(changed)}))
    assert build_grid(config, registry, quiet=True).cells[0].key != first.cells[0].key


def test_no_train_fails_in_one_line_when_the_model_is_missing(cli, tiny_plugin, tmp_path):
    store = tmp_path / "bench.sqlite"
    result = cli("run", "-d", "lfw-faces", "-n", "gaussian:0.1", "-m", "tiny-dae", "--plugin",
                 tiny_plugin, "--store", store, "--no-train", "--quiet")
    one_line_error(result, "no trained tiny-dae", "--no-train", "denoise-bench train tiny-dae")
    assert not store.exists() and not (tmp_path / "models").exists()


def test_weights_parameter_and_empirical_mmse_in_a_run(cli, tmp_path):
    models = tmp_path / "models"
    trained = cli("train", "mlp-dae", "--dataset", "lfw-faces", "--epochs", "1", "--models",
                  models, "--quiet")
    assert trained.code == 0, trained.err
    weights = trained.out.splitlines()[0]
    store = tmp_path / "bench.sqlite"
    result = cli("run", "-d", "lfw-faces", "-n", "gaussian:0.1", "-m", f"mlp-dae[weights={weights}]",
                 "-m", "empirical-mmse", "-m", "drunet", "--store", store, "--limit-images", "3",
                 "--models", models, "--quiet")
    assert result.code == 0, result.err
    statuses = dict(rows(store, "SELECT denoiser, status FROM cells"))
    assert statuses == {f"mlp-dae[weights={weights}]": "done", "empirical-mmse": "done",
                        "drunet": "skipped"}
    reason = rows(store, "SELECT error FROM cells WHERE denoiser = 'drunet'")[0][0]
    assert "weights=PATH" in reason and "denoise-bench train drunet" in reason


def test_bare_drunet_weights_load_when_they_fit(cli, tmp_path):
    torch.manual_seed(0)
    bare = tmp_path / "drunet_small_bare.pth"
    torch.save(drunet(1, None, **DRUNET_SMALL).state_dict(), bare)
    store = tmp_path / "bench.sqlite"
    ok = cli("run", "-d", "lfw-faces", "-n", "gaussian:0.1", "-m", f"drunet-small[weights={bare}]",
             "--store", store, "--limit-images", "2", "--quiet")
    assert ok.code == 0, ok.err
    wrong = cli("run", "-d", "lfw-faces", "-n", "gaussian:0.1", "-m", f"drunet[weights={bare}]",
                "--store", tmp_path / "other.sqlite", "--quiet")
    one_line_error(wrong, "do not fit drunet")


# --- bad input -----------------------------------------------------------------------------------

def test_bad_training_input_is_one_line_exit_2(cli, tmp_path):
    models = tmp_path / "models"
    common = ("--models", models, "--epochs", "1", "--quiet")
    one_line_error(cli("train", "conv-dae", "--dataset", "lfw-facez", *common),
                   "unknown dataset 'lfw-facez'", "lfw-faces")
    one_line_error(cli("train", "conv-dae", "--dataset", "lfw-faces", "--noise", "0.3:0.1", *common),
                   "low > high")
    one_line_error(cli("train", "mlp-dae", "--dataset", "skimage-gray[crop=96]", "--patch", "0",
                       *common),
                   "at most 4096 input values")
    one_line_error(cli("train", "mlp-dae", "--dataset", "lfw-faces", "--patch", "30", *common),
                   "larger than the 25x25")
    one_line_error(cli("train", "mlp-dae", "--dataset", "skimage-gray", "--patch", "8", *common),
                   "images of one size")
    one_line_error(cli("train", "noisy", "--dataset", "lfw-faces", *common),
                   "not a learned denoiser", "conv-dae")
    one_line_error(cli("train", "conv-dae", "--dataset", "lfw-faces", "--ema", "0", *common),
                   "ema (half-life / images seen) must be in (0, 1]")
    assert not models.exists(), "nothing written on bad input"


def test_checkpoint_of_another_architecture_is_one_line_exit_2(cli, tmp_path):
    models = tmp_path / "models"
    trained = cli("train", "mlp-dae", "--dataset", "lfw-faces", "--epochs", "1", "--models",
                  models, "--quiet")
    weights = trained.out.splitlines()[0]
    store = tmp_path / "bench.sqlite"
    result = cli("run", "-d", "lfw-faces", "-n", "gaussian:0.1", "-m", f"conv-dae[weights={weights}]",
                 "--store", store, "--quiet")
    one_line_error(result, "holds a 'mlp-dae' model, not 'conv-dae'")
    assert not store.exists()


# --- MNIST from --data-root ----------------------------------------------------------------------

@pytest.fixture
def fake_mnist(tmp_path):
    """A tiny MNIST root in torchvision's layout: ROOT/MNIST/raw/*-ubyte (nothing downloads)."""
    raw = tmp_path / "mnist_root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    digits = {}
    for split, prefix, n in (("train", "train", 40), ("test", "t10k", 10)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size=n, dtype=np.uint8))
        digits[split] = images
    return tmp_path / "mnist_root", digits


def test_train_on_mnist_from_a_data_root(cli, tmp_path, fake_mnist):
    root, digits = fake_mnist
    models = tmp_path / "models"
    result = cli("train", "mlp-dae", "--dataset", "mnist", "--data-root", root, "--epochs", "1",
                 "--models", models, "--quiet")
    assert result.code == 0, result.err
    meta = json.loads((models / result.out.splitlines()[0].split("/")[-1]).with_suffix(".json").read_text())
    expected = torch.from_numpy(digits["train"]).float().div(255).unsqueeze(1)
    assert meta["data"]["label"] == "mnist[split=train]" and meta["data"]["n_images"] == 40
    assert meta["data"]["hash"] == tensors_hash({"images": expected}), "the pixels we wrote"
    assert meta["arch"] == {"channels": 1, "size": [28, 28]}  # the classic 784 inputs
    # The same command without the root: one line saying what to do.
    one_line_error(cli("train", "mlp-dae", "--dataset", "mnist", "--models", models, "--quiet", "--offline"),
                   "denoise-bench fetch mnist")


def test_train_takes_a_length_in_images_seen_or_epochs_not_both(cli, tmp_path, fake_mnist):
    root, _ = fake_mnist
    models = tmp_path / "models"
    common = ("train", "mlp-dae", "--dataset", "mnist", "--data-root", root, "--models", models, "--quiet")
    result = cli(*common, "--images", "0.1k")
    assert result.code == 0, result.err
    meta = json.loads((models / result.out.splitlines()[0].split("/")[-1]).with_suffix(".json").read_text())
    # 40 digits less 4 held out: passes of 36, 36 and 28 images.
    assert meta["options"]["images"] == 100 and meta["options"]["epochs"] is None
    assert (meta["images_seen"], meta["epochs_run"]) == (100, 3)
    assert "100 images seen (3 epochs)" in result.out
    one_line_error(cli(*common, "--images", "100", "--epochs", "2"), "not both")
    bad = cli(*common, "--images", "18x")
    assert bad.code == 2 and "--images" in bad.err and "count" in bad.err


#: Today's MNIST lengths of the learners the origin studies train, in passes over the
#: 60,000 training digits (before lengths were given in images seen).
ORIGIN_EPOCHS = {"mlp-dae": 10, "mlp-dae-sigma": 10, "conv-dae-sigma": 2, "score-unet": 3}


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_origin_learners_train_as_long_as_before_on_the_full_split_and_on_a_small_one(dataset):
    """On the 60,000 training images, the length in images seen is the epochs it was before, to the
    image; on 8,000 the same number of images (so more passes)."""
    from bench.sampling.classifier import ClassifierOptions
    from bench.training.loop import training_length

    registry = Registry(get_plugin_set())
    for name, epochs in ORIGIN_EPOCHS.items():
        options = registry.get("denoisers", name).metadata["learned"].defaults(dataset)
        full = training_length(torch.zeros(60_000, 1, 1, 1), options)
        small = training_length(torch.zeros(8_000, 1, 1, 1), options)
        n_train = len(split_validation(60_000, options.val_fraction, options.seed)[0])
        assert options.epochs is None, f"{name} on {dataset} is still trained by epochs"
        assert (full.epochs, full.per_epoch, full.total) == (epochs, n_train, epochs * n_train), name
        assert small.total == full.total and small.epochs > full.epochs, name
    assert ClassifierOptions().images == 3 * 60_000, "the LeNet judge: three passes of 60,000"


def test_mnist_run_evaluates_the_model_trained_on_its_train_split(cli, tiny_plugin, tmp_path,
                                                                  fake_mnist):
    root, _ = fake_mnist
    store = tmp_path / "bench.sqlite"
    result = cli("run", "-d", "mnist", "--data-root", root, "-n", "gaussian:0.2", "-m", "tiny-dae",
                 "--plugin", tiny_plugin, "--store", store, "--quiet")
    assert result.code == 0, result.err
    assert rows(store, "SELECT n_images, status FROM cells") == [(10, "done")]
    assert len(list((tmp_path / "models").glob("tiny-dae--mnist_split=train--*.pt"))) == 1
