"""The noise level a denoiser receives: the true one, off by a factor, fixed, or estimated per image.

A grid axis (``--sigma-in``, TOML ``sigma_in``): ``oracle`` (the default, the true
level), ``xF`` (F times the true level: ``x0.5``, ``x2``), ``N/255`` or a number (a
fixed level, in [0, 1] units), ``estimate:NAME`` (the named estimator's estimate of
each noisy image, see ``register_estimators``) and ``mean`` (on noise whose std varies in
space, its mean for a row that would take the map; the oracle for every other row) and
``residual`` (on real camera noise, which has no true level: the std of noisy - reference of
each image; on drawn noise, the oracle). Left unset, the level is the truth the data gives:
the oracle on drawn noise, the residual on real noise.
Rows that ignore sigma (blind) run once and read ``blind``. On such noise the oracle and
factors hand a map-taking row the whole map (times the factor), every other row its mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.errors import UsageError
from bench.specs import parse_number

ORACLE = "oracle"
#: What a denoiser that ignores sigma reads in the ``sigma_in`` column: one cell serves every choice.
BLIND = "blind"
ESTIMATE = "estimate:"
#: A noise map's mean instead of the map itself.
MEAN = "mean"
#: The smallest factor or fixed level (its inverse the largest): float32's step at 1. Past these a
#: level handed over underflows or overflows in a denoiser's float32 arithmetic (``x1e308``: inf).
SMALLEST = torch.finfo(torch.float32).eps
#: Real noise's reference level: the std of (noisy - reference) per image.
RESIDUAL = "residual"


@dataclass(frozen=True)
class SigmaIn:
    """One choice of the level handed over; ``label`` is its canonical spelling."""

    label: str
    factor: float | None = None
    fixed: float | None = None
    estimator: str | None = None

    @property
    def is_oracle(self) -> bool:
        return self.label == ORACLE

    def received(self, sigma: torch.Tensor, estimates: torch.Tensor | None = None,
                 sigma_map: torch.Tensor | None = None) -> torch.Tensor:
        """The level handed over, from the true ``sigma`` (B,), per-image ``estimates`` and, for a
        row that takes one, the true per-pixel ``sigma_map`` (B, 1, H, W) (then it is a map too,
        unless the choice is one level per image: fixed, estimated, ``mean``)."""
        true = sigma if sigma_map is None or self.label == MEAN else sigma_map
        if self.factor is not None:
            return true * self.factor
        if self.fixed is not None:
            return torch.full_like(sigma, self.fixed)
        if self.estimator is not None:
            return estimates.to(device=sigma.device, dtype=sigma.dtype)
        return true

    def one_level(self, level: float) -> float | None:
        """The single level a whole cell receives at true ``level`` (per-level models pick theirs by
        it), or None when it differs per image (estimates)."""
        if self.estimator is not None:
            return None
        return self.received(torch.tensor([float(level)], dtype=torch.float64)).item()


def parse_sigma_in(text: str) -> SigmaIn:
    """``oracle``, ``mean``, ``x0.5``, ``25/255`` or ``estimate:NAME``; UsageError in one line otherwise."""
    text = str(text).strip()
    if text in (ORACLE, MEAN, RESIDUAL):
        return SigmaIn(text)
    if text.startswith(ESTIMATE):
        name = text[len(ESTIMATE):].strip()
        if not name:
            raise UsageError(f"sigma_in {text!r}: name the estimator, e.g. estimate:skimage "
                             "(`denoise-bench list estimators`)")
        return SigmaIn(f"{ESTIMATE}{name}", estimator=name)
    if text.startswith("x"):
        try:
            factor = parse_number(text[1:])
        except (ValueError, ZeroDivisionError):
            factor = None
        if factor is None or not SMALLEST <= factor <= 1 / SMALLEST:
            raise UsageError(f"sigma_in {text!r}: a factor of the true level must be a number > 0, from "
                             f"{SMALLEST:.2g} to {1 / SMALLEST:.2g} (float32's resolution), e.g. x0.5 or x2")
        return SigmaIn(f"x{factor:g}", factor=factor)
    try:
        fixed = parse_number(text)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"unknown sigma_in {text!r}: use oracle, xF (x0.5), N/255 (a fixed level), "
                         "estimate:NAME, mean (a noise map's mean) or residual (real noise)") from None
    if not SMALLEST <= fixed <= 1 / SMALLEST:
        raise UsageError(f"sigma_in {text!r}: a fixed level must be > 0, from {SMALLEST:.2g} to "
                         f"{1 / SMALLEST:.2g} (float32's resolution)")
    return SigmaIn(f"{fixed * 255:g}/255", fixed=fixed)


def parse_all(texts: list[str]) -> list[SigmaIn]:
    """Every choice, duplicates (``x1`` and ``oracle`` are not merged) dropped in order."""
    found = {choice.label: choice for choice in map(parse_sigma_in, texts)}
    return list(found.values())


def on_noise(choices: list[SigmaIn] | None, captured: bool, has_reference: bool) -> list[SigmaIn]:
    """The choices on one dataset's noise; ``choices`` None is the default, the truth the data gives.

    Drawn noise: the oracle by default, ``residual`` is the oracle. Real (``captured``) noise: the
    residual by default, none without a reference (estimates only); ``oracle`` and ``mean`` are a
    UsageError (it has no true level), as is ``residual`` alone on a set without a reference.
    """
    if not captured:
        given = choices or [SigmaIn(ORACLE)]
        return list(dict.fromkeys(SigmaIn(ORACLE) if c.label == RESIDUAL else c for c in given))
    if choices is None:
        return [SigmaIn(RESIDUAL)] if has_reference else []
    wrong = [c.label for c in choices if c.label in (ORACLE, MEAN)]
    if wrong:
        raise UsageError(f"--sigma-in {wrong[0]}: real camera noise has no true level; use residual "
                         f"(the std of noisy - reference per image, its default) or estimate:NAME")
    kept = [c for c in choices if has_reference or c.label != RESIDUAL]
    if choices and not kept:
        raise UsageError("--sigma-in residual needs a clean reference, and a set of real noise without one "
                         "(rni15) has none: use estimate:NAME or a fixed level")
    return kept
