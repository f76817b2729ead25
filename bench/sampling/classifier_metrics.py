"""Sample metrics in a classifier's eyes: Frechet distance of features, confidence, class coverage.

``features`` (N, F) and ``logits`` (N, K) come from a classifier trained on the
real data (``bench.sampling.classifier``); the reference statistics from its test split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bench.sampling.sample_metrics import MetricInfo

#: A class is present when at least this share of the uniform 1/K is predicted (1% of samples for K=10).
PRESENT_FRACTION = 0.1

METRICS = {
    "classifier_fd": MetricInfo(False, "Frechet distance between sample and test-split features of the "
                                       "dataset's LeNet (84-d penultimate layer)"),
    "confidence": MetricInfo(True, "mean max-softmax probability of the LeNet on the samples"),
    "classes_present": MetricInfo(True, "classes predicted for at least 1% of the samples (of 10)"),
    "label_kl": MetricInfo(False, "KL divergence of the predicted-label histogram from uniform "
                                  "(0: balanced, log 10 = 2.30: one class)"),
}


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance (unbiased) of a feature set, in float64."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def of(cls, features: torch.Tensor) -> "FeatureStats":
        f = features.double().cpu().numpy()
        if len(f) < 2:
            raise ValueError("feature statistics need at least 2 items")
        return cls(f.mean(axis=0), np.cov(f, rowvar=False))


def psd_root(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (round-off clipped)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) (Frechet / FID formula, Dowson & Landau).

    Tr (C_a C_b)^(1/2) = Tr (C_a^(1/2) C_b C_a^(1/2))^(1/2), a symmetric PSD matrix:
    its eigenvalues give the trace without a general matrix square root, so
    singular covariances (collapsed samples) need no offset.
    """
    diff = a.mean - b.mean
    root_a = psd_root(a.cov)
    inner = root_a @ b.cov @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    value = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_root
    return float(max(value, 0.0))


def label_histogram(logits: torch.Tensor) -> torch.Tensor:
    """Share of samples predicted as each class, (K,)."""
    k = logits.shape[1]
    return torch.bincount(logits.argmax(dim=1), minlength=k).double() / len(logits)


def label_kl(histogram: torch.Tensor) -> float:
    """KL(histogram || uniform) = sum p log(K p), in nats."""
    k = len(histogram)
    p = histogram[histogram > 0]
    return float((p * torch.log(k * p)).sum())


def classes_present(histogram: torch.Tensor) -> int:
    return int((histogram >= PRESENT_FRACTION / len(histogram)).sum())


def evaluate(features: torch.Tensor, logits: torch.Tensor, reference: FeatureStats) -> dict[str, float]:
    """Every metric of METRICS for one sample set."""
    histogram = label_histogram(logits)
    confidence = float(torch.softmax(logits.double(), dim=1).max(dim=1).values.mean())
    values = {"classifier_fd": frechet_distance(FeatureStats.of(features), reference),
              "confidence": confidence, "classes_present": classes_present(histogram),
              "label_kl": label_kl(histogram)}
    if not all(math.isfinite(v) for v in values.values()):
        raise ValueError(f"classifier metrics are not finite: {values}")
    return values
