"""Classifier sample metrics against closed forms, and the LeNet judge on a separable labelled set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.stats import ortho_group

from bench.sampling import classifier_metrics as cm
from bench.sampling.classifier import ClassifierOptions, load_or_train
from conftest import write_labelled_blocks

pytestmark = pytest.mark.usefixtures("one_thread")


def stats(mean, cov) -> cm.FeatureStats:
    return cm.FeatureStats(np.asarray(mean, float), np.asarray(cov, float))


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    """For diagonal covariances: |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0
    assert cm.frechet_distance(stats(mu_a, np.diag(a)), stats(mu_b, np.diag(b))) == pytest.approx(expected)


def test_frechet_distance_matches_the_fid_formula_with_scipys_sqrtm():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)), rng.normal(size=(300, 6)) * 2 + 0.5
    a, b = cm.FeatureStats.of(torch.tensor(x)), cm.FeatureStats.of(torch.tensor(y))
    root = linalg.sqrtm(a.cov @ b.cov).real
    expected = np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov + b.cov - 2 * root)
    assert cm.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_is_rotation_invariant_and_zero_on_itself():
    rng = np.random.default_rng(0)
    q = ortho_group.rvs(4, random_state=1)
    x, y = rng.normal(size=(500, 4)) * [1, 2, 3, 4], rng.normal(size=(500, 4)) + 1
    fa, fb = cm.FeatureStats.of(torch.tensor(x)), cm.FeatureStats.of(torch.tensor(y))
    ra, rb = cm.FeatureStats.of(torch.tensor(x @ q.T)), cm.FeatureStats.of(torch.tensor(y @ q.T))
    assert cm.frechet_distance(ra, rb) == pytest.approx(cm.frechet_distance(fa, fb), rel=1e-6)
    assert cm.frechet_distance(fa, fa) == pytest.approx(0, abs=1e-6)


def test_label_histogram_kl_and_classes_by_hand():
    logits = torch.full((100, 10), -5.0)
    labels = torch.tensor([0] * 50 + [1] * 49 + [2])
    logits[torch.arange(100), labels] = 5.0
    histogram = cm.label_histogram(logits)
    assert histogram[:3].tolist() == [0.5, 0.49, 0.01]
    assert cm.label_kl(histogram) == pytest.approx(sum(p * math.log(10 * p) for p in (0.5, 0.49, 0.01)))
    assert cm.classes_present(histogram) == 3, "1 of 100 samples is the 1% threshold"
    assert cm.label_kl(torch.full((10,), 0.1, dtype=torch.float64)) == pytest.approx(0)
    assert cm.label_kl(torch.eye(10, dtype=torch.float64)[0]) == pytest.approx(math.log(10))
    expected_confidence = math.exp(5) / (math.exp(5) + 9 * math.exp(-5))
    values = cm.evaluate(torch.randn(100, 4), logits, cm.FeatureStats.of(torch.randn(50, 4)))
    assert values["confidence"] == pytest.approx(expected_confidence)


@pytest.fixture(scope="module")
def blocks_root(tmp_path_factory):
    return write_labelled_blocks(tmp_path_factory.mktemp("blocks"), {"train": 400, "t10k": 200})


def test_the_judge_separates_real_images_from_noise_and_collapse(blocks_root, tmp_path):
    judge = load_or_train("mnist", str(blocks_root), tmp_path, torch.device("cpu"), True,
                          ClassifierOptions(images=6_000, batch_size=32))
    assert judge.accuracy > 0.95
    from bench.data.labelled import load_labelled

    train, _ = load_labelled("mnist", str(blocks_root), "train")
    real = judge.evaluate(train[:200], torch.device("cpu"))
    noise = judge.evaluate(torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0)),
                           torch.device("cpu"))
    collapsed = judge.evaluate(train[:1].repeat(200, 1, 1, 1), torch.device("cpu"))
    assert real["classes_present"] == 10 and real["label_kl"] < 0.01
    assert real["classifier_fd"] < noise["classifier_fd"] / 10
    assert collapsed["classes_present"] == 1 and collapsed["label_kl"] == pytest.approx(math.log(10))
    assert real["classifier_fd"] < collapsed["classifier_fd"]
    with pytest.raises(ValueError, match="1x28x28"):
        judge.evaluate(torch.rand(4, 1, 16, 16), torch.device("cpu"))
    again = load_or_train("mnist", str(blocks_root), tmp_path, torch.device("cpu"), False,
                          ClassifierOptions(images=6_000, batch_size=32))
    assert again.fingerprint == judge.fingerprint, "loaded from the model store, not retrained"


def test_the_judge_trains_for_its_images_seen_whatever_the_split(monkeypatch):
    """LeNet's length is in images seen: 250 over 100 images is two passes and a cut half pass."""
    from bench.sampling import classifier

    batches = []

    class Counted(classifier.LeNet):
        def forward(self, x):
            batches.append(len(x))
            return super().forward(x)

    monkeypatch.setattr(classifier, "LeNet", Counted)
    x = torch.rand(100, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(100) % 10
    classifier.train_lenet(x, labels, ClassifierOptions(images=250, batch_size=32), torch.device("cpu"))
    assert sum(batches) == 250
    assert batches == [32, 32, 32, 4] * 2 + [32, 18]
