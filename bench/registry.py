"""The registry: every denoiser, dataset, degradation, metric and sampler by name."""

from __future__ import annotations

import difflib
import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.data.datasets import ImageSet
from bench.errors import Skip, UsageError
from bench.hookspecs import METADATA
from bench.plugins import PluginSet, error_line
from bench.specs import Spec

KINDS = ("denoisers", "datasets", "degradations", "metrics", "samplers", "estimators")
#: Kinds whose factories run while a grid is planned: an error there is one line naming the
#: plugin (a denoiser's fails its cells instead, see ``bench.grid.cells.build_denoiser``).
PLANNED_KINDS = ("datasets", "degradations", "metrics", "estimators")
#: A registered name ending with this is a family: ``folder:`` serves ``folder:PATH``.
FAMILY_MARK = ":"


@dataclass(frozen=True)
class Entry:
    """One registered name: its factory, the plugin it came from and its metadata."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    fingerprint: str
    metadata: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        return self.metadata.get("description", "")

    @property
    def is_family(self) -> bool:
        return self.name.endswith(FAMILY_MARK)


def check_metadata(kind: str, name: str, metadata: dict) -> None:
    """ValueError (the plugin is then broken) for an undeclared key, a wrong type or a missing key."""
    declared = METADATA[kind]
    what = f"{kind[:-1]} {name!r}"
    for key, value in metadata.items():
        if key not in declared:
            close = difflib.get_close_matches(key, list(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(declared)}"
            raise ValueError(f"{what}: unknown metadata key {key!r}{hint}")
        if not declared[key].accepts(value):
            raise ValueError(f"{what}: metadata {key!r} must be {declared[key].type_name}, "
                             f"got {type(value).__name__}")
    missing = [key for key, spec in declared.items() if spec.required and key not in metadata]
    if missing:
        raise ValueError(f"{what}: missing required metadata {', '.join(map(repr, missing))}")


def guarded(function: Callable, what: str, kind: str | None = None) -> Callable:
    """``function`` whose unexpected errors become one UsageError naming ``what`` (its plugin).

    UsageError and Skip pass through. For a factory of ``kind``: a metric it makes is checked
    (``checked_metric``), a degradation's ``parse_level`` is guarded the same way.
    """
    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            made = function(*args, **kwargs)
        except (UsageError, Skip):
            raise
        except Exception as exc:
            raise UsageError(f"{what} failed: {error_line(exc)}") from None
        if kind == "metrics":
            return checked_metric(made, what)
        parse_level = getattr(made, "parse_level", None)
        if callable(parse_level) and kind == "degradations":
            try:
                made.parse_level = guarded(parse_level, f"{what}.parse_level")
            except (AttributeError, TypeError):  # frozen or slotted: left as it is
                pass
        return made

    return call


def checked_metric(metric: Callable, what: str) -> Callable:
    """``metric`` that raises a ValueError naming it unless it returns one value per image."""
    import torch

    @functools.wraps(metric, updated=())
    def score(x_hat, x):
        values = metric(x_hat, x)
        if not isinstance(values, torch.Tensor) or tuple(values.shape) != (x.shape[0],):
            got = (f"a tensor of shape {tuple(values.shape)}" if isinstance(values, torch.Tensor)
                   else type(values).__name__)
            raise ValueError(f"{what} returned {got}; a metric returns one value per image "
                             f"(a tensor of shape ({x.shape[0]},))")
        return values

    return score


def check_value_types(what: str, factory: Callable, params: dict) -> None:
    """UsageError for a parameter whose value is not of the type the factory declares.

    The declared type is the parameter's annotation when it is built from bool, int, float,
    str and None, else the type of its default; ``width=abc`` for ``width: float`` is refused
    here, before any cell runs, instead of failing every cell.
    """
    try:
        signature = inspect.signature(factory, eval_str=True)
    except (TypeError, ValueError, NameError, SyntaxError):
        return
    for key, value in params.items():
        parameter = signature.parameters.get(key)
        allowed = declared_types(parameter) if parameter is not None else None
        if allowed and not any(accepts(kind, value) for kind in allowed):
            names = " or ".join(TYPE_WORDS[k] for k in allowed if k is not type(None))
            raise UsageError(f"{what}: {key} must be {names}, got {value!r}")


TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "text", type(None): "none"}


def declared_types(parameter: inspect.Parameter) -> tuple[type, ...] | None:
    """The simple types a parameter takes (None when it declares something else)."""
    annotation = parameter.annotation
    if annotation is not parameter.empty:
        args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) or \
            typing.get_origin(annotation) is typing.Union else (annotation,)
        return args if args and all(a in TYPE_WORDS for a in args) else None
    default = parameter.default
    if default is not parameter.empty and default is not None and type(default) in TYPE_WORDS:
        return (type(default),)
    return None


def accepts(kind: type, value) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is str:
        return not isinstance(value, bool)  # ``name=5`` is text that looks like a number
    if kind is bool:
        return isinstance(value, bool) or value in (0, 1)  # ``gray=1``
    return isinstance(value, kind)


class Registry:
    """Collects registrations from every loaded plugin, one plugin at a time."""

    def __init__(self, plugins: PluginSet):
        self.plugins = plugins
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            self._collect(kind)

    def _collect(self, kind: str) -> None:
        hook = getattr(self.plugins.pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            name = impl.plugin_name
            info = self.plugins.infos[name]
            found: dict[str, Entry] = {}

            def register(entry_name: str, factory: Callable, **metadata) -> None:
                if not callable(factory):
                    raise TypeError(f"factory for {entry_name!r} is not callable")
                check_metadata(kind, entry_name, metadata)
                if kind in PLANNED_KINDS:
                    factory = guarded(factory, f"{kind[:-1]} {entry_name!r} (plugin {name})", kind)
                if entry_name in self._entries[kind] or entry_name in found:
                    owner = self._entries[kind].get(entry_name, found.get(entry_name)).plugin
                    raise ValueError(f"{kind[:-1]} {entry_name!r} already registered by {owner}")
                found[entry_name] = Entry(kind, entry_name, factory, name, info.fingerprint, metadata)

            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except Exception as exc:
                self._drop(name)
                self.plugins.mark_broken(name, f"register_{kind}: {error_line(exc)}")
                continue
            self._entries[kind].update(found)

    def _drop(self, plugin: str) -> None:
        for kind in KINDS:
            self._entries[kind] = {
                k: e for k, e in self._entries[kind].items() if e.plugin != plugin
            }

    def entries(self, kind: str) -> list[Entry]:
        return sorted(self._entries[kind].values(), key=lambda e: e.name)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name`` (or its family); UsageError listing the names otherwise."""
        entries = self._entries[kind]
        if name in entries:
            return entries[name]
        prefix, sep, _ = name.partition(FAMILY_MARK)
        if sep and prefix + FAMILY_MARK in entries:
            return entries[prefix + FAMILY_MARK]
        message = f"unknown {kind[:-1]} {name!r}"
        close = difflib.get_close_matches(name, list(entries), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        message += f"; available: {', '.join(sorted(entries)) or 'none'}"
        broken = [i.name for i in self.plugins.infos.values() if i.broken]
        if broken:
            message += f"; broken plugins: {', '.join(broken)} (see `denoise-bench list plugins`)"
        raise UsageError(message)

    def build(self, kind: str, spec: Spec):
        """Call the factory with the spec's parameters (and a family's suffix first)."""
        entry = self.get(kind, spec.name)
        args = (spec.name[len(entry.name):],) if entry.is_family else ()
        try:
            inspect.signature(entry.factory).bind(*args, **spec.params)
        except TypeError as exc:
            raise UsageError(f"{kind[:-1]} {spec.label!r}: bad parameters ({exc})") from None
        except ValueError:  # builtins without a signature
            pass
        check_value_types(f"{kind[:-1]} {spec.label!r}", entry.factory, spec.params)
        return entry.factory(*args, **spec.params)

    def load_dataset(self, spec: Spec, data_root: str | None = None) -> ImageSet:
        """Build a dataset (``root`` from ``data_root`` when it asks); missing data is a UsageError."""
        entry = self.get("datasets", spec.name)
        if entry.metadata.get("uses_data_root") and "root" not in spec.params and data_root:
            spec = Spec(spec.name, {**spec.params, "root": data_root})
        try:
            images = self.build("datasets", spec)
        except Skip as exc:
            raise UsageError(f"dataset {spec.label!r} unavailable: {exc}") from None
        if len(images) == 0:
            raise UsageError(f"dataset {spec.label!r} has no images")
        return images
