"""Parse ``name[key=value,...]`` specs and noise specs such as ``gaussian:0.1,25/255``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from bench.errors import UsageError

_SPEC = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<params>[^\[\]]*)\])?$")


def parse_number(text: str) -> float:
    """``0.1``, ``25/255`` or ``1e-2`` as a float; ValueError otherwise."""
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        value = float(num) / float(den)
    else:
        value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


#: Suffixes of counts: ``180k`` = 180,000 (EDM's kimg), ``1.5M`` = 1,500,000.
COUNT_SUFFIXES = {"k": 1_000, "m": 1_000_000}


def parse_count(text: str) -> int:
    """A whole count: ``180000``, ``180_000``, ``180k`` or ``1.5M``; ValueError otherwise."""
    digits = text.strip().replace("_", "")
    scale = COUNT_SUFFIXES.get(digits[-1:].lower())
    try:
        value = Decimal(digits[:-1] if scale else digits) * (scale or 1)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a count (e.g. 180000 or 180k)") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole count (e.g. 180000 or 180k)")
    return int(value)


def parse_value(text: str):
    """A parameter value: bool, int, float (``k/255`` too) or the string itself."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return parse_number(text)
    except (ValueError, ZeroDivisionError):
        return text


def format_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Spec:
    """A plugin name with parameters, e.g. ``nlm[h=0.05,patch_size=7]``."""

    name: str
    params: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """Canonical, readable name: parameters sorted, values normalised."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={format_value(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}[{inner}]"

    def __eq__(self, other):
        return isinstance(other, Spec) and self.label == other.label

    def __hash__(self):
        return hash(self.label)


#: Parameters that name a place on disk (a folder, a weights file), not what is in it.
PATH_PARAMS = ("root", "path", "weights", "data_root")


def without_paths(label: str, prefix_names_a_place: bool = False) -> str | None:
    """The label with every place on disk left out (``root=``, ``weights=`` ... dropped; with
    ``prefix_names_a_place``, ``folder:PATH`` -> ``folder:``), or None when it names none.
    Identities use it with the content's hash instead, so the same files spelt two ways
    (relative, absolute, ``~``) are one thing."""
    try:
        spec = parse_spec(label)
    except UsageError:
        return None
    params = {k: v for k, v in spec.params.items() if k not in PATH_PARAMS}
    prefix, colon, place = spec.name.partition(":")
    placed = prefix_names_a_place and colon and place
    if len(params) == len(spec.params) and not placed:
        return None
    return Spec(prefix + colon if placed else spec.name, params).label


def parse_spec(text: str, what: str = "plugin") -> Spec:
    """Parse ``name`` or ``name[k=v,...]``; raise UsageError on malformed text."""
    match = _SPEC.match(text.strip())
    if not match:
        raise UsageError(f"malformed {what} spec {text!r}: expected name or name[key=value,...]")
    params = {}
    body = match.group("params")
    if body is not None and body.strip():
        for item in body.split(","):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key.isidentifier() or not value.strip():
                raise UsageError(
                    f"malformed {what} spec {text!r}: {item.strip()!r} is not key=value"
                )
            if key in params:
                raise UsageError(f"malformed {what} spec {text!r}: {key!r} given twice")
            params[key] = parse_value(value)
    return Spec(match.group("name").strip(), params)


@dataclass(frozen=True)
class NoiseSpec:
    """A degradation name and its levels as given, e.g. ``gaussian`` and ``["0.1", "25/255"]``."""

    degradation: str
    levels: tuple[str, ...]


def parse_noise(text: str, bare: bool = False) -> NoiseSpec:
    """Split ``name:level,level`` into a NoiseSpec; levels are checked by the degradation.

    ``bare``: a name alone is accepted too, with no levels (a degradation with a level of its
    own, such as ``real``, supplies it; the grid refuses it for any other)."""
    name, sep, levels = text.partition(":")
    items = tuple(item.strip() for item in levels.split(",") if item.strip())
    if bare and not sep and name.strip():
        return NoiseSpec(name.strip(), ())
    if not sep or not name.strip() or not items:
        raise UsageError(
            f"malformed noise spec {text!r}: expected e.g. gaussian:0.1,25/255 or poisson:4,16"
        )
    return NoiseSpec(name.strip(), items)
