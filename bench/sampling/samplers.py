"""Batched score-based sampling: many chains advance together on the device.

A sampler (registered through ``register_samplers``) says which noise level
and step size each step uses (``schedule``) and how one step moves the chains
(``step``, or ``advance`` for a step that evaluates the model several times);
``run_chains`` drives it, draws every random number from one seeded
torch.Generator, counts the model evaluations (NFE: one per chain each time the
score or denoiser is evaluated for all chains), and stops when a chain turns
NaN or inf, reporting the step.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch

from bench.data.datasets import ImageSet
from bench.errors import UsageError
from bench.sampling.score import ScoreFn
from bench.specs import Spec

INITS = ("noise", "data")
#: Steps between checks for a diverged chain (each check waits for the device).
CHECK_EVERY = 20


@dataclass
class PointSet:
    """Point data (N, D) for samplers, with the true distribution when it is known."""

    points: torch.Tensor
    truth: object | None = None

    def limit(self, n: int | None) -> "PointSet":
        return self if n is None else PointSet(self.points[:n], self.truth)

    def __len__(self) -> int:
        return len(self.points)


def stack_items(data: ImageSet | PointSet, label: str) -> torch.Tensor:
    """A dataset as one (N, ...) tensor; UsageError when its images differ in size."""
    if isinstance(data, PointSet):
        return data.points
    shapes = {tuple(image.shape) for image in data.images}
    if len(shapes) != 1:
        raise UsageError(f"dataset {label!r} has images of {len(shapes)} sizes; "
                         "sampling needs one size (e.g. crop=N)")
    return torch.stack(data.images)


def check_positive(what: str, value: float) -> float:
    """value as a float; UsageError unless it is a finite number > 0."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{what} must be > 0, got {value:g}")
    return value


def check_count(what: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def memory_bytes() -> int | None:
    """This machine's physical memory (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_chains_fit(what: str, chains: int, item: torch.Tensor) -> None:
    """UsageError when ``chains`` samples shaped as ``item`` would not fit in this machine's memory
    even alone (``sample --n 10**12`` asked for 8 TB), so it is refused at planning."""
    needed, total = chains * item.numel() * torch.finfo(torch.float32).bits // 8, memory_bytes()
    if total is not None and needed > total:
        raise UsageError(f"{what} = {chains}: {chains} samples of {'x'.join(map(str, item.shape))} need "
                         f"{needed / 1e9:.3g} GB for the samples alone, more than this machine's "
                         f"{total / 1e9:.3g} GB: use a smaller n")


def check_steps_fit(label: str, steps) -> None:
    """UsageError when a sampler's schedule (a list of at least ``steps`` references, 8 bytes each)
    would not fit in this machine's memory: ``steps=10**12`` is refused at planning."""
    total = memory_bytes()
    if isinstance(steps, int) and total is not None and steps * 8 > total:
        raise UsageError(f"{label}: {steps} steps need a schedule of {steps * 8 / 1e9:.3g} GB, more than this "
                         f"machine's {total / 1e9:.3g} GB: use fewer steps")


class Evaluations:
    """A score function that counts its calls (NFE) and also serves as the denoiser
    D(x, s) = x + s^2 score(x, s) (Tweedie), for samplers written in terms of D."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn, self.count = score_fn, 0
        self._sigmas: dict[tuple, torch.Tensor] = {}

    def sigma_tensor(self, sigma, x: torch.Tensor) -> torch.Tensor:
        if isinstance(sigma, torch.Tensor):
            return sigma
        key = (float(sigma), len(x), x.device, x.dtype)
        if key not in self._sigmas:
            self._sigmas[key] = torch.full((len(x),), float(sigma), device=x.device, dtype=x.dtype)
        return self._sigmas[key]

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.count += 1
        return self.score_fn(x, self.sigma_tensor(sigma, x))

    def denoise(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return x + float(sigma) ** 2 * self(x, sigma)


class Sampler:
    """Base class: a schedule of (sigma, step size) pairs and a batched update."""

    name = ""
    #: True when the sampler evaluates the score at several noise levels.
    requires_sigma_aware = False
    #: False for a row that needs no score model (the real-data floor): it ``draw``s instead.
    uses_score = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "finish" in vars(cls):  # a plugin written for 0.1's name would silently lose its last move
            raise TypeError(f"{cls.__name__}.finish: Sampler.finish is now Sampler.final_step; rename it")

    def params(self) -> dict:
        """Every parameter, defaults resolved: the row name shows them all."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        return Spec(self.name, self.params()).label

    def schedule(self) -> list[tuple[float, float]]:
        """(sigma, step size) for each step, in order; the first sigma also sets the start noise."""
        raise NotImplementedError

    @property
    def start_sigma(self) -> float:
        return self.schedule()[0][0]

    def step(self, x: torch.Tensor, score: torch.Tensor, step_size: float,
             generator: torch.Generator) -> torch.Tensor:
        """Move every chain once.

        :param x: the chains, (N, ...) on the run's device.
        :param score: the score at ``x`` for this step's sigma, shaped like ``x``.
        :param step_size: this step's size from ``schedule()``.
        :param generator: the cell's seeded generator on the device (draw all noise from it).
        :return: the new chains.
        """
        raise NotImplementedError

    def advance(self, x: torch.Tensor, level: tuple[float, float], score_fn: Evaluations,
                generator: torch.Generator) -> torch.Tensor:
        """One entry of ``schedule()``: by default ``step`` with the score at its sigma.

        Samplers that evaluate the model more than once per step (Heun) override it.
        """
        sigma, step_size = level
        return self.step(x, score_fn(x, sigma), step_size, generator)

    def final_step(self, x: torch.Tensor, score_fn: ScoreFn) -> torch.Tensor | None:
        """An optional last move (e.g. a denoising step); None when there is none."""
        return None

    def bind(self, model) -> "Sampler":
        """This sampler for one score model (e.g. its largest level filled in from the model)."""
        return self

    def resolved(self) -> dict:
        """Values this sampler worked out for its model (saved beside its samples)."""
        return {}

    def draw(self, pool: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """For samplers with ``uses_score = False``: n samples from held-out real items."""
        raise NotImplementedError


@dataclass
class SampleResult:
    """Where the chains ended and whether every chain stayed finite."""

    samples: torch.Tensor
    status: str  # "done" or "diverged"
    steps: int  # updates applied (the final denoising step counts as one)
    nfe: int = 0  # model evaluations per chain
    diverged_step: int | None = None
    diverged_chains: int = 0
    seconds: float = 0.0
    step_of_chain: torch.Tensor | None = field(default=None, repr=False)
    #: Values the sampler worked out for its score model (e.g. sigma_max from the model).
    resolved: dict = field(default_factory=dict)

    @property
    def message(self) -> str | None:
        if self.status != "diverged":
            return None
        return (f"diverged at step {self.diverged_step}: {self.diverged_chains} of "
                f"{len(self.samples)} chains turned NaN or inf")


def noise_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def initial_state(init: str, n: int, data: torch.Tensor, sigma: float,
                  generator: torch.Generator) -> torch.Tensor:
    """n starting points on the generator's device.

    ``noise``: Gaussian with the data's mean and the overall spread of the noisy
    data at sigma (per-coordinate variance averaged, plus sigma^2).
    ``data``: data items drawn with replacement, plus noise of std sigma.
    """
    if init not in INITS:
        raise UsageError(f"unknown init {init!r}; choose {', '.join(INITS)}")
    device = generator.device
    data = data.to(device=device, dtype=torch.float32)
    shape = (n, *data.shape[1:])
    z = torch.randn(shape, generator=generator, device=device)
    if init == "data":
        index = torch.randint(len(data), (n,), generator=generator, device=device)
        return data[index] + sigma * z
    spread = math.sqrt(float(data.var(dim=0).mean()) + sigma ** 2)
    return data.mean(dim=0, keepdim=True) + spread * z


def run_chains(sampler: Sampler, score_fn: ScoreFn, x0: torch.Tensor, generator: torch.Generator,
               check_every: int = CHECK_EVERY) -> SampleResult:
    """Advance all chains through the sampler's schedule, stopping on a non-finite chain.

    The first non-finite step of each chain is recorded on the device without
    waiting; the loop checks for one every ``check_every`` steps and stops there.
    """
    start = time.perf_counter()
    x = x0.clone()
    n = len(x)
    first_bad = torch.zeros(n, dtype=torch.long, device=x.device)  # 0 = still finite
    evaluations = Evaluations(score_fn)
    schedule = sampler.schedule()

    def note(x: torch.Tensor, step: int) -> None:
        bad = ~torch.isfinite(x.reshape(n, -1)).all(dim=1)
        first_bad.masked_fill_(bad & (first_bad == 0), step)

    def result(x: torch.Tensor, steps: int) -> SampleResult:
        bad = first_bad > 0
        count = int(bad.sum())
        return SampleResult(
            x, "diverged" if count else "done", steps, nfe=evaluations.count,
            diverged_step=int(first_bad[bad].min()) if count else None,
            diverged_chains=count, seconds=time.perf_counter() - start, step_of_chain=first_bad)

    with torch.no_grad():
        for step, level in enumerate(schedule, start=1):
            x = sampler.advance(x, level, evaluations, generator)
            note(x, step)
            if (step % check_every == 0 or step == len(schedule)) and bool((first_bad > 0).any()):
                return result(x, step)
        steps = len(schedule)
        final = sampler.final_step(x, evaluations)
        if final is not None:
            steps += 1
            x = final
            note(x, steps)
    return result(x, steps)
