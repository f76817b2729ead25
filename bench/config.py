"""Run configuration: a TOML file, overridden by command-line flags."""

from __future__ import annotations

import tomllib
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


@dataclass
class RunConfig:
    """Everything that defines a grid and where its results go."""

    datasets: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    denoisers: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim"])
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
    sigma_in: list[str] = field(default_factory=lambda: ["oracle"])
    #: ``[[sampling]]`` tables: sampler cells beside the denoiser grid (see ``bench.grid.sampler_cells``).
    sampling: list[dict] = field(default_factory=list)

    @property
    def has_denoising(self) -> bool:
        """Whether the config asks for denoiser cells (a sampling-only config does not)."""
        return bool(self.datasets or self.noise or self.denoisers or not self.sampling)

    def validate(self) -> None:
        names = ("datasets", "noise", "denoisers", "metrics") if self.has_denoising else ("metrics",)
        for name in names:
            if not getattr(self, name):
                raise UsageError(f"the grid has no {name}: give them in the config or with flags")
        if self.repetitions < 1:
            raise UsageError(f"repetitions must be >= 1, got {self.repetitions}")
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.save_images < 0:
            raise UsageError(f"save_images must be >= 0, got {self.save_images}")
        if self.limit_images is not None and self.limit_images < 1:
            raise UsageError(f"limit_images must be >= 1, got {self.limit_images}")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"unknown protocol {self.protocol!r}; choose {', '.join(PROTOCOLS)}")
        if self.device not in DEVICES:
            raise UsageError(f"unknown device {self.device!r}; choose {', '.join(DEVICES)}")
        if not self.sigma_in:
            raise UsageError("sigma_in is empty: give oracle, xF, N/255 or estimate:NAME")

    def to_dict(self) -> dict:
        return asdict(self)


def default_config_path() -> Path:
    return Path(str(resources.files("bench") / "configs" / "default.toml"))


def load_config(path: str | Path) -> dict:
    """Read a TOML config into a dict of RunConfig fields; UsageError on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"config file {path}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    for key in ("datasets", "noise", "denoisers", "metrics", "plugins", "sigma_in"):
        if key in data and isinstance(data[key], str):
            data[key] = [data[key]]
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
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout:g}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if name == "local" and (workers or scheduler):
        raise UsageError("--workers and --scheduler need --executor dask")
    if workers and scheduler:
        raise UsageError("give --workers (start a local cluster) or --scheduler (use one), not both")
