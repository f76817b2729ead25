"""From a denoiser's output to per-image numbers: check, clamp (and round), score.

Part of every cell key (``bench.code_identity.harness_code``): a change here changes numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch


class DenoiserOutputError(Exception):
    """A denoiser returned something that cannot be scored."""


class MetricValueError(Exception):
    """A metric gave no finite value per image."""


def check_output(out, y: torch.Tensor) -> torch.Tensor:
    """The denoiser's output as a float tensor shaped like y, or DenoiserOutputError."""
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise DenoiserOutputError(f"returned {type(out).__name__}, expected a tensor")
    if out.device.type == "meta":
        raise DenoiserOutputError("returned a tensor without data (device 'meta')")
    if out.shape != y.shape:
        raise DenoiserOutputError(f"returned shape {tuple(out.shape)}, expected {tuple(y.shape)}")
    if not out.is_floating_point():
        raise DenoiserOutputError(f"returned dtype {out.dtype}, expected a float tensor")
    if not torch.isfinite(out).all():
        raise DenoiserOutputError("returned NaN or inf values")
    return out.to(device=y.device, dtype=torch.float32)


def metric_values(what: str, values, ids: list[str]) -> list[float]:
    """One finite float per image, or MetricValueError naming ``what`` (``metric psnr``) and the image."""
    values = torch.as_tensor(values).detach().double().cpu().reshape(-1)
    if values.numel() != len(ids):
        raise MetricValueError(f"{what} returned {values.numel()} values for {len(ids)} images")
    bad = [image_id for image_id, v in zip(ids, values.tolist()) if not math.isfinite(v)]
    if bad:
        raise MetricValueError(f"{what} is not finite ({values[ids.index(bad[0])].item()}) "
                               f"for image {bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else ""))
    return values.tolist()


def clamp_for_scoring(images: torch.Tensor, protocol: str) -> torch.Tensor:
    """Clamp to [0, 1]; the papers' protocols also round to 8 bits (as DPIR's test script)."""
    images = images.clamp(0.0, 1.0)
    if protocol != "default":
        images = torch.round(images * 255.0) / 255.0
    return images
