"""Denoisers built in a Python session (a ``torch.nn.Module``, a callable) as rows of a grid.

Each becomes a plugin of its own, registered in the run's plugin set, so it runs on the
same grid, noise and store as a registered row. Its cells are keyed by what it is:

- a module by the source of its classes (the user's own; a library's by name, its version
  being in every key), the SHA-256 of its ``state_dict`` and its plain settings;
- a function by its source (its byte code where the source cannot be read), its defaults,
  its closure and the globals it reads, where those are plain data, tensors, modules,
  functions or classes, followed recursively.

Where no stable identity can be made (a lambda over a live object), the cells get a key of
their own each call: computed and shown, never reused, and the table says so.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import sysconfig
import types
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.errors import UsageError
from bench.seeding import identity_hash
from bench.specs import parse_spec

#: Folders of the standard library and installed packages: their classes count by name (and
#: the library's version, which every key holds), not by source.
LIBRARY_FOLDERS = tuple(str(Path(p).resolve()) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")})
#: How deep the identity follows globals and closures before it gives up (unstable).
MAX_DEPTH = 12
UNCACHED = "uncached"


class NoIdentity(Exception):
    """No stable identity can be made for an object (its cells are then not cached)."""


@dataclass
class InProcess:
    """A denoiser object declared for ``bench.evaluate`` (``bench.denoiser(obj, ...)``)."""

    obj: object
    name: str | None = None
    #: Whether it is called as ``obj(y, sigma)`` (True) or ``obj(y)``; None: from its signature.
    sigma_aware: bool | None = None
    #: The method's name in published tables, where it holds the paper's own weights.
    published_as: str | None = None


def denoiser(obj, name: str | None = None, *, sigma_aware: bool | None = None,
             published_as: str | None = None) -> InProcess:
    """Declare how an in-process denoiser is named and called.

    ``sigma_aware=None`` reads it from the signature: ``forward(y, sigma)`` (or ``f(y, sigma)``)
    is sigma-aware, ``forward(y)`` is blind. A declaration the signature cannot honour is a
    ``bench.UsageError``.
    """
    if isinstance(obj, InProcess):
        obj = obj.obj
    if not callable(obj):
        raise UsageError(f"a denoiser must be a torch.nn.Module or a callable f(y, sigma), got "
                         f"{type(obj).__name__}")
    if sigma_aware is not None and not isinstance(sigma_aware, bool):
        raise UsageError(f"sigma_aware must be True, False or None, got {sigma_aware!r}")
    return InProcess(obj, name, sigma_aware, published_as)


def default_name(obj) -> str:
    """A row name for an object given without one: its function's or class's name."""
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        name = obj.__name__
    else:
        name = type(obj).__name__
    return "lambda" if name == "<lambda>" else name


def check_name(name: str) -> str:
    """The row name, or UsageError where it is not a plain name (``[``, ``,`` ``=`` are spec syntax)."""
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"a denoiser name must be a non-empty string, got {name!r}")
    try:
        spec = parse_spec(name, "denoiser")
    except UsageError:
        spec = None
    if spec is None or spec.params or spec.name != name or ":" in name:
        raise UsageError(f"denoiser name {name!r}: use a plain name (letters, digits, '-', '_', '.'), "
                         "no brackets, colons or commas")
    return name


def resolve_sigma_aware(declared: InProcess, name: str) -> bool:
    """The declared sigma-awareness checked against the signature (UsageError on a mismatch)."""
    target = declared.obj.forward if isinstance(declared.obj, torch.nn.Module) else declared.obj
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return bool(declared.sigma_aware)
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return bool(declared.sigma_aware)
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    call = "forward" if isinstance(declared.obj, torch.nn.Module) else "it"
    if declared.sigma_aware is None:
        return len(positional) >= 2
    if declared.sigma_aware and len(positional) < 2:
        raise UsageError(f"{name}: declared sigma_aware=True, but {call} takes only "
                         f"({', '.join(p.name for p in positional) or 'nothing'}); give it a sigma argument "
                         "or declare sigma_aware=False")
    if not declared.sigma_aware and required >= 2:
        raise UsageError(f"{name}: declared sigma_aware=False, but {call} requires "
                         f"({', '.join(p.name for p in positional)}); declare sigma_aware=True")
    return declared.sigma_aware


class Called:
    """What the grid calls as ``model(y, sigma)``: the object, with sigma or without."""

    def __init__(self, obj, sigma_aware: bool):
        self.obj, self.sigma_aware = obj, sigma_aware

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.obj(y, sigma) if self.sigma_aware else self.obj(y)


class CalledModule(torch.nn.Module):
    """``Called`` for a module: the grid moves it to the run's device and sets eval mode."""

    def __init__(self, module: torch.nn.Module, sigma_aware: bool):
        super().__init__()
        self.inner, self.sigma_aware = module, sigma_aware

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.inner(y, sigma) if self.sigma_aware else self.inner(y)


def called(obj, sigma_aware: bool):
    return CalledModule(obj, sigma_aware) if isinstance(obj, torch.nn.Module) else Called(obj, sigma_aware)


@contextmanager
def restored(objects: list):
    """Give each module back as it came: its device and train/eval mode (the grid moves and evals it)."""
    modules = [obj for obj in objects if isinstance(obj, torch.nn.Module)]
    states = []
    for module in modules:
        first = next(iter(module.parameters()), None)
        first = first if first is not None else next(iter(module.buffers()), None)
        states.append((module, module.training, first.device if first is not None else None))
    try:
        yield
    finally:
        for module, training, device in states:
            if device is not None:
                module.to(device)
            module.train(training)



# identities -------------------------------------------------------------------------------------

def is_library(module_name: str | None) -> bool:
    """Whether a module is the standard library's or an installed package's (not the user's code)."""
    module = sys.modules.get(module_name or "")
    path = getattr(module, "__file__", None)
    if module is None or path is None:
        return module_name in sys.builtin_module_names
    resolved = str(Path(path).resolve())
    return any(resolved.startswith(folder + "/") for folder in LIBRARY_FOLDERS)


def tensor_digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state_dict: every parameter and buffer, by name, dtype, shape, bytes."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor_digest(value).encode() if isinstance(value, torch.Tensor) else repr(value).encode())
    return digest.hexdigest()


def code_identity(code: types.CodeType) -> list:
    """A code object's byte code, constants and names (nested code followed): for code without source."""
    consts = [code_identity(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_code.hex(), consts, list(code.co_names), list(code.co_varnames), sys.version_info[:2]]


def source_or_code(obj) -> list:
    try:
        return ["source", inspect.getsource(obj)]
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is None:
            raise NoIdentity(f"the source of {getattr(obj, '__qualname__', obj)!r} cannot be read")
        return ["code", code_identity(code)]


def global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


class Identifier:
    """Builds one object's identity, following what it refers to (each object once)."""

    def __init__(self):
        self.seen: dict[int, str] = {}

    def of(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise NoIdentity("it refers to objects nested too deeply")
        if value is None or isinstance(value, (bool, int, str, bytes)):
            return repr(value)
        if isinstance(value, float):
            return value.hex()
        if isinstance(value, (tuple, list, set, frozenset)):
            items = [self.of(v, depth + 1) for v in value]
            return [type(value).__name__, sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items]
        if isinstance(value, dict):
            return ["dict", sorted([repr(k), self.of(v, depth + 1)] for k, v in value.items())]
        if isinstance(value, torch.Tensor):
            return ["tensor", tensor_digest(value)]
        if type(value).__module__ == "numpy" and hasattr(value, "tobytes"):
            return ["array", str(value.dtype), list(getattr(value, "shape", ())),
                    hashlib.sha256(value.tobytes()).hexdigest()]
        if isinstance(value, (torch.dtype, torch.device)):
            return str(value)
        if id(value) in self.seen:  # a cycle or a shared object: named once
            return ["seen", self.seen[id(value)]]
        self.seen[id(value)] = getattr(value, "__qualname__", type(value).__qualname__)
        if isinstance(value, types.ModuleType):
            return self.module(value)
        if isinstance(value, type):
            return self.cls(value, depth)
        if isinstance(value, torch.nn.Module):
            return self.torch_module(value, depth)
        if isinstance(value, types.MethodType):
            return ["method", self.of(value.__self__, depth + 1), self.of(value.__func__, depth + 1)]
        if isinstance(value, types.FunctionType):
            return self.function(value, depth)
        if isinstance(value, types.BuiltinFunctionType) or is_library(getattr(value, "__module__", None)) and \
                callable(value) and hasattr(value, "__qualname__"):
            return ["library", f"{getattr(value, '__module__', '')}.{value.__qualname__}"]
        if callable(value) and hasattr(value, "__dict__"):  # an instance with __call__
            return ["instance", self.cls(type(value), depth + 1), self.of(vars(value), depth + 1)]
        raise NoIdentity(f"it refers to a {type(value).__name__} object, whose state cannot be hashed")

    def module(self, module: types.ModuleType):
        if is_library(module.__name__):
            return ["module", module.__name__]
        path = getattr(module, "__file__", None)
        source = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path and Path(path).is_file() else None
        return ["module", module.__name__, source]

    def cls(self, cls: type, depth: int):
        if is_library(cls.__module__):
            return ["class", f"{cls.__module__}.{cls.__qualname__}"]
        try:
            body = ["source", inspect.getsource(cls)]
        except (OSError, TypeError):
            body = ["code", sorted([name, code_identity(v.__code__)] for name, v in vars(cls).items()
                                   if isinstance(v, types.FunctionType))]
        bases = [self.of(base, depth + 1) for base in cls.__bases__ if base is not object]
        return ["class", cls.__qualname__, body, bases]

    def torch_module(self, module: torch.nn.Module, depth: int):
        """Its classes, its weights, and the plain settings of each submodule (``stride``, ``scale``...)."""
        parts = []
        for name, sub in module.named_modules():
            settings = {k: v for k, v in vars(sub).items() if not k.startswith("_") and k != "training"}
            parts.append([name, self.cls(type(sub), depth + 1), self.of(settings, depth + 1)])
        return ["torch.nn.Module", parts, state_digest(module)]

    def function(self, function: types.FunctionType, depth: int):
        if is_library(function.__module__):
            return ["library", f"{function.__module__}.{function.__qualname__}"]
        closure = [self.of(cell.cell_contents, depth + 1) for cell in function.__closure__ or ()]
        names = sorted(n for n in global_names(function.__code__) if n in function.__globals__)
        referred = {n: self.of(function.__globals__[n], depth + 1) for n in names}
        return ["function", source_or_code(function), self.of(function.__defaults__, depth + 1),
                self.of(function.__kwdefaults__, depth + 1), closure, referred]


def fingerprint(obj) -> tuple[str, str | None]:
    """(a short hash of the object's identity, None), or (a fresh uncached marker, the reason).

    This module's own source is part of it: the wrappers here are what the grid calls (the
    harness part of a key leaves out the ``api`` layer, ``bench.code_identity``)."""
    try:
        return identity_hash([Identifier().of(obj), hashlib.sha256(Path(__file__).read_bytes()).hexdigest()], 16), None
    except NoIdentity as exc:
        return f"{UNCACHED}-{uuid.uuid4().hex[:16]}", str(exc)
    except RecursionError:
        return f"{UNCACHED}-{uuid.uuid4().hex[:16]}", "it refers to objects nested too deeply"


@dataclass
class SessionRow:
    """An in-process denoiser ready for the grid: its row name, what the grid calls, its identity."""

    name: str
    obj: object
    sigma_aware: bool
    published_as: str | None
    fingerprint: str
    #: Why its cells are not cached (no stable identity), or None.
    uncached: str | None

    @property
    def model(self):
        return called(self.obj, self.sigma_aware)


def session_row(declared: InProcess, name: str) -> SessionRow:
    """Name checked, sigma-awareness resolved, identity made."""
    name = check_name(name)
    sigma_aware = resolve_sigma_aware(declared, name)
    key, reason = fingerprint(declared.obj)
    return SessionRow(name, declared.obj, sigma_aware, declared.published_as, key, reason)


def add_rows(plugins, rows: list[SessionRow]) -> None:
    """Register each row as a plugin of its own (``python:NAME``), its identity as the plugin's
    fingerprint, so it enters every key of its cells."""
    from bench.hookspecs import hookimpl
    from bench.plugins import PluginInfo

    for row in rows:
        module = types.ModuleType(f"denoise_bench_session.{row.name}")
        module.register_denoisers = hookimpl(registration(row))
        kind = "module" if isinstance(row.obj, torch.nn.Module) else "callable"
        plugins.add(module, PluginInfo(name=f"python:{row.name}", source=f"this Python session ({kind})",
                                       fingerprint=row.fingerprint))


def registration(row: SessionRow):
    def register_denoisers(register):
        metadata = {"published_as": row.published_as} if row.published_as else {}
        register(row.name, lambda: row.model, sigma_aware=row.sigma_aware,
                 description=f"in-process {type(row.obj).__name__} from this Python session", **metadata)
    return register_denoisers
