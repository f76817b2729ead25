"""Run configuration: a TOML file, overridden by command-line flags, checked against its schema.

The schema is ``RunConfig``'s own field types: every value (from a file or a flag) is
checked against them, then against its range, before anything is built or written.
A grid larger than ``max_cells`` (``DEFAULT_MAX_CELLS`` unless given) is refused.
"""

from __future__ import annotations

import os
import threading
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

from bench.errors import UsageError

DEFAULT_STORE = "results/bench.sqlite"
#: default: float noisy input, float outputs scored; paper: outputs rounded to 8 bits (the DnCNN,
#: FFDNet, DPIR, SwinIR test scripts); clip and uint8 also clip (and round) the noisy input.
PROTOCOLS = ("default", "paper", "clip", "uint8")
EXECUTORS = ("local", "dask")
DEVICES = ("auto", "cpu", "cuda")
#: The largest grid run without ``--max-cells`` (a typo such as ``repetitions = 1000000``
#: would otherwise write a million pending rows).
DEFAULT_MAX_CELLS = 20_000
#: How deep a config's values may nest (``[[sampling]]`` tables are two levels).
MAX_DEPTH = 4
#: A config's ``[suite]`` table (description, version, reference rows) names it as a suite; it
#: describes the grid and is not part of it.
SUITE_TABLE = "suite"
#: The metrics of a run that names none (and of the shipped default config): on a set without a
#: clean reference they are left out rather than refused (``bench.grid.cells.dataset_metrics``).
DEFAULT_METRICS = ("psnr", "ssim")
#: Seeds are hashed into 64-bit noise seeds.
SEED_RANGE = (0, 2**63 - 1)


@dataclass
class RunConfig:
    """Everything that defines a grid and where its results go."""

    datasets: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    denoisers: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    repetitions: int = 1
    seed: int = 0
    store: str = DEFAULT_STORE
    plugins: list[str] = field(default_factory=list)
    device: str = "auto"
    limit_images: int | None = None
    batch_size: int = 8
    protocol: str = "default"
    data_root: str | None = None
    #: Never touch the network: fetched data and weights must already be in the data folder.
    offline: bool = False
    save_images: int = 0
    #: Model store for learned denoisers (default: ``models/`` beside the store).
    models: str | None = None
    #: Fail instead of training a learned denoiser that has no checkpoint yet.
    no_train: bool = False
    #: After the cells, measure each denoiser's cost (parameters, FLOPs, latency, memory).
    cost: bool = False
    #: The level each sigma-aware denoiser receives, a grid axis (``bench.noise.sigma_in``).
    #: None: the truth the data gives (``oracle`` on drawn noise, ``residual`` on real noise).
    sigma_in: list[str] | None = None
    #: ``[[sampling]]`` tables: sampler cells beside the denoiser grid (see ``bench.grid.sampler_cells``).
    sampling: list[dict] = field(default_factory=list)
    #: The largest grid this run may have (None: ``DEFAULT_MAX_CELLS``); ``--max-cells`` lifts it.
    max_cells: int | None = None

    @property
    def has_denoising(self) -> bool:
        """Whether the config asks for denoiser cells (a sampling-only config does not)."""
        return bool(self.datasets or self.noise or self.denoisers or not self.sampling)

    def validate(self) -> None:
        """UsageError (one line) for a value of the wrong type or range, or a grid too large."""
        check_types(asdict(self))
        names = ("datasets", "noise", "denoisers", "metrics") if self.has_denoising else ("metrics",)
        for name in names:
            if not getattr(self, name):
                raise UsageError(f"the grid has no {name}: give them in the config or with flags")
        for name, minimum in (("repetitions", 1), ("batch_size", 1), ("save_images", 0),
                              ("limit_images", 1), ("max_cells", 1)):
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise UsageError(f"{name} must be >= {minimum}, got {value}")
        if not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise UsageError(f"seed must be between {SEED_RANGE[0]} and 2**63 - 1, got {self.seed}")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"unknown protocol {self.protocol!r}; choose {', '.join(PROTOCOLS)}")
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose {', '.join(DEVICES)}")
        if self.sigma_in is not None and not self.sigma_in:
            raise UsageError("sigma_in is empty: give oracle, xF, N/255 or estimate:NAME")
        limit = self.max_cells or DEFAULT_MAX_CELLS
        planned = planned_cells(self)
        if planned > limit:
            raise UsageError(f"the grid has {planned:,} cells, more than the limit of {limit:,}: "
                             f"check repetitions and the lists, or lift it with --max-cells {planned}")

    def to_dict(self) -> dict:
        return asdict(self)


ITEM_NAMES = {str: "strings", dict: "tables", int: "integers"}


def type_name(kind) -> str:
    """``int``, ``list of str``, ``int or nothing``: a declared type as a user reads it."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(type_name(k) for k in typing.get_args(kind) if k is not type(None))
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        return f"a list of {ITEM_NAMES.get(item, getattr(item, '__name__', item))}"
    return {int: "an integer", str: "a string", bool: "true or false", float: "a number",
            dict: "a table"}.get(kind, getattr(kind, "__name__", str(kind)))


def matches(value, kind) -> bool:
    """Whether ``value`` is of the declared ``kind`` (bool is not an int; a list's items are checked)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(matches(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is list:
        return isinstance(value, list) and all(matches(v, typing.get_args(kind)[0]) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_types(values: dict) -> None:
    """UsageError naming the first value whose type is not the one ``RunConfig`` declares."""
    hints = typing.get_type_hints(RunConfig)
    for name, value in values.items():
        if name in hints and not matches(value, hints[name]):
            raise UsageError(f"{name} must be {type_name(hints[name])}, got {type(value).__name__} "
                             f"{_short(value)}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def depth(value) -> int:
    """How deeply lists and tables nest in a parsed value (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def planned_cells(config: RunConfig) -> int:
    """How many cells the config's grid has (denoiser and sampler cells), computed from its lists alone."""
    from bench.specs import parse_noise

    levels = sum(max(1, len(parse_noise(text, bare=True).levels)) for text in config.noise) if config.has_denoising else 0
    total = len(config.datasets) * levels * len(config.denoisers) * config.repetitions * max(1, len(config.sigma_in or ()))

    def count(table: dict, *names: str) -> int:
        value = next((table[n] for n in names if n in table), [])
        return 1 if isinstance(value, str) else len(value) if isinstance(value, list) else 0

    for table in config.sampling:
        if isinstance(table, dict):
            repetitions = table.get("repetitions", 1)
            repetitions = repetitions if isinstance(repetitions, int) and repetitions > 0 else 1
            total += count(table, "dataset", "datasets") * count(table, "scores") * \
                count(table, "samplers") * repetitions
    return total


def default_config_path() -> Path:
    return Path(str(resources.files("bench") / "configs" / "default.toml"))


def load_config(path: str | Path) -> dict:
    """Read a TOML config into a dict of RunConfig fields; UsageError on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # a UTF-8 BOM is allowed
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"config file {path} is a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"config file {path}: values nest too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # a NUL byte in the path: no file has such a name
        raise UsageError(f"cannot read config file {str(path)!r}: {exc}") from None
    too_deep = [key for key, value in data.items() if depth(value) > MAX_DEPTH - 1]
    if too_deep:
        raise UsageError(f"config file {path}: {too_deep[0]} nests too deeply (at most {MAX_DEPTH} levels)")
    if isinstance(data.get(SUITE_TABLE), dict):  # a named suite's description, not part of the grid
        data.pop(SUITE_TABLE)
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"config file {path}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    for key in ("datasets", "noise", "denoisers", "metrics", "plugins", "sigma_in"):
        if key in data and isinstance(data[key], str):
            data[key] = [data[key]]
    try:
        check_types(data)
    except UsageError as exc:
        raise UsageError(f"config file {path}: {exc}") from None
    if "plugins" in data:  # plugin paths are relative to the config file
        data["plugins"] = [str((path.parent / p).resolve()) for p in data["plugins"]]
    return data


def make_config(file_values: dict, overrides: dict) -> RunConfig:
    """Merge config-file values with flags that were given (not None / not empty)."""
    values = dict(file_values)
    values.update({k: v for k, v in overrides.items() if v not in (None, [], ())})
    try:
        config = RunConfig(**values)
    except TypeError as exc:
        raise UsageError(f"bad configuration: {exc}") from None
    config.validate()
    return config


def check_executor_options(name: str, workers: int | None, scheduler: str | None,
                           timeout: float | None) -> None:
    """UsageError for executor options that do not go together (before anything runs)."""
    if name not in EXECUTORS:
        raise UsageError(f"unknown executor {name!r}; choose {', '.join(EXECUTORS)}")
    if timeout is not None and not 0 < timeout <= threading.TIMEOUT_MAX:
        raise UsageError(f"--timeout must be > 0 seconds and finite, got {timeout:g}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if workers is not None and workers > (os.cpu_count() or 1):
        raise UsageError(f"--workers {workers} would start {workers} processes on this machine's "
                         f"{os.cpu_count() or 1} CPUs: give at most {os.cpu_count() or 1}, or "
                         "--scheduler ADDRESS for a cluster")
    if name == "local" and (workers or scheduler):
        raise UsageError("--workers and --scheduler need --executor dask")
    if workers and scheduler:
        raise UsageError("give --workers (start a local cluster) or --scheduler (use one), not both")
