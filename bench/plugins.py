"""Build the plugin manager: entry points (built-ins and installed packages) and local files.

Each plugin loads on its own; one that fails to import, raises in a hook or
implements a misspelt hook is recorded as broken with its error and breaks
nothing else.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pluggy

from bench import hookspecs
from bench.code_identity import file_hash, plugin_fingerprint
from bench.errors import UsageError

ENTRY_POINT_GROUP = hookspecs.PROJECT
#: Comma-separated entry-point names; when set, only these entry points load.
LOAD_ENV = "DENOISE_BENCH_PLUGINS"


@dataclass
class PluginInfo:
    """Where a plugin came from, what it implements and whether it loaded."""

    name: str
    source: str
    version: str = ""
    fingerprint: str = ""
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    local: bool = False

    @property
    def broken(self) -> bool:
        return self.error is not None


def error_line(exc: BaseException) -> str:
    lines = f"{type(exc).__name__}: {exc}".splitlines()
    return lines[0] if lines else type(exc).__name__


def unknown_hooks(pm: pluggy.PluginManager, module: ModuleType) -> str:
    """``unknown hook 'register_denoiser' (did you mean 'register_denoisers'?)``: no module names."""
    known = sorted(name for name in dir(hookspecs) if name.startswith("register_"))
    wrong = sorted(caller.name for caller in pm.get_hookcallers(module) or [] if not caller.has_spec())
    parts = []
    for name in wrong:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return (f"unknown hook{'s' if len(parts) > 1 else ''} {', '.join(parts) or '?'}; "
            f"hooks: {', '.join(known)}")


def local_error(info: PluginInfo) -> UsageError:
    return UsageError(f"plugin {info.source} failed to load: {info.error}")


class PluginSet:
    """A pluggy manager plus what we know about each plugin, broken ones included."""

    def __init__(self, strict_local: bool = False):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        #: A command's own plugin files must load and register cleanly (``load_plugins``);
        #: ``list`` shows them broken instead.
        self.strict_local = strict_local

    def add(self, module: ModuleType, info: PluginInfo) -> None:
        """Register a module; a misspelt hook marks it broken and unregisters it."""
        info.fingerprint = info.fingerprint or plugin_fingerprint(module)
        self.infos[info.name] = info
        self.pm.register(module, name=info.name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            info.error = unknown_hooks(self.pm, module)
            self.pm.unregister(name=info.name)
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or [])

    def mark_broken(self, name: str, error: str) -> None:
        """A plugin whose hook raised: drop it from the manager, keep it listed.

        With ``strict_local``, a plugin file the user named is a UsageError instead, whether
        or not the grid uses its rows.
        """
        self.infos[name].error = error
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        if self.strict_local and self.infos[name].local:
            raise local_error(self.infos[name])

    def broken_local(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.local and info.broken]


def _load_entry_points(plugins: PluginSet) -> None:
    wanted = os.environ.get(LOAD_ENV)
    names = {n.strip() for n in wanted.split(",")} if wanted else None
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if names is not None and ep.name not in names:
            continue
        dist = getattr(ep, "dist", None)
        info = PluginInfo(
            name=ep.name,
            source=f"{dist.name if dist else '?'}:{ep.value}",
            version=dist.version if dist else "",
        )
        try:
            module = ep.load()
        except Exception as exc:  # a broken package must not break the CLI
            info.error = error_line(exc)
            plugins.infos[info.name] = info
            continue
        plugins.add(module, info)


def _load_file(plugins: PluginSet, path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"plugin file not found: {path}")
    name = f"file:{file.name}"
    info = PluginInfo(name=name, source=str(file.resolve()), local=True)
    module_name = f"denoise_bench_local_{file.stem}_{file_hash(file)}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        info.error, info.fingerprint = error_line(exc), file_hash(file)
        plugins.infos[name] = info
        return
    plugins.add(module, info)


def load_plugins(files: tuple[str, ...] | list[str] = ()) -> PluginSet:
    """Every plugin, for a command: a broken plugin file the user named is a UsageError (exit 2)."""
    plugins = get_plugin_set(files, strict_local=True)
    broken = plugins.broken_local()
    if broken:
        raise local_error(broken[0])
    return plugins


def get_plugin_set(files: tuple[str, ...] | list[str] = (), entry_points: bool = True,
                   strict_local: bool = False) -> PluginSet:
    """Load every plugin: entry points (unless disabled) then local files."""
    plugins = PluginSet(strict_local)
    if entry_points:
        _load_entry_points(plugins)
    for path in files:
        _load_file(plugins, path)
    return plugins
