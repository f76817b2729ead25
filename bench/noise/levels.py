"""How a degradation's level is shown: its name and scale in tables, its axis in figures.

A degradation describes its own level (``Degradation.scale``); the run stores that
description, so leaderboards, reports and figures label any degradation, a
third-party one too, without knowing it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

STYLES = ("ascii", "unicode", "latex")


@dataclass(frozen=True)
class LevelScale:
    """A level is shown as ``name=value*factor`` (e.g. ``sigma=15`` for 15/255).

    :param name: the level's name in tables (``sigma``, ``peak``).
    :param factor: multiplies the level for display (255 for sigma on the 0-255 scale).
    :param symbols: the name per style where it differs (``{"unicode": "σ"}``).
    :param axis_label: the x-axis label of figures.
    :param log_axis: draw that axis on a log scale.
    :param text: shown instead of ``name=value``, for a degradation whose one level is not a
        number (real noise: ``captured``).
    """

    name: str = "level"
    factor: float = 1.0
    #: The name per style where it differs from ``name`` (e.g. ``{"unicode": "σ"}``).
    symbols: dict = field(default_factory=dict, hash=False, compare=False)
    axis_label: str = "level"
    log_axis: bool = False
    text: str | None = None

    def label(self, level: float, style: str = "ascii") -> str:
        """``sigma=15``, ``σ=15`` or ``$\\sigma$=15`` for a level of 15/255 (``text`` where it has one)."""
        if self.text is not None:
            return self.text
        return f"{self.symbols.get(style, self.name)}={self.shown(level):.4g}"

    def shown(self, level: float) -> float:
        """The level on the scale people read (axis values too)."""
        return level * self.factor

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LevelScale":
        return cls(**json.loads(text))


GAUSSIAN = LevelScale("sigma", 255.0, {"unicode": "σ", "latex": r"$\sigma$"},
                      "noise std σ (0-255 scale)")
#: A noise map's level is its mean std.
MAP_MEAN = LevelScale("mean_sigma", 255.0, {"unicode": "σ̄", "latex": r"$\bar\sigma$"},
                      "mean noise std σ̄ of the map (0-255 scale)")
POISSON = LevelScale("peak", 1.0, {}, "Poisson peak (higher = less noise)", log_axis=True)
#: Real camera noise: the captures' own noise, one level that is no number; what is handed over
#: (residual, estimates) is a std, shown on the 0-255 scale.
CAPTURED = LevelScale("sigma", 255.0, {"unicode": "σ", "latex": r"$\sigma$"}, "real camera noise (captured)",
                      text="captured")
#: What stores written before levels described themselves get for the built-ins.
BUILTIN = {"gaussian": GAUSSIAN, "poisson": POISSON}
GENERIC = LevelScale()


def label(scales: dict[str, LevelScale], noise: str, level, style: str = "ascii") -> str:
    """A level's label for a degradation name; ``-`` where there is no level."""
    if level is None or level != level or level == -1.0:  # NaN or the wide table's placeholder
        return "-"
    return scale_of(scales, noise).label(level, style)


def scale_of(scales: dict[str, LevelScale], noise: str) -> LevelScale:
    return scales.get(noise) or BUILTIN.get(noise) or GENERIC
