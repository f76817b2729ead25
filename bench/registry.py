"""The registry: every denoiser, dataset, degradation, metric and sampler by name."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from bench.data.datasets import ImageSet
from bench.errors import Skip, UsageError
from bench.hookspecs import METADATA
from bench.plugins import PluginSet, error_line
from bench.specs import Spec

KINDS = ("denoisers", "datasets", "degradations", "metrics", "samplers", "estimators")
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
