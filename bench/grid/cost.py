"""What a denoiser costs per image: parameters, FLOPs, latency and peak memory, measured properly.

- Parameters: of torch modules only (``None``, shown "n/a", for anything else).
- FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one call. It counts
  the operations it has formulas for (convolutions, matrix products,
  attention), two FLOPs per multiply-add; elementwise work is not counted. A
  method it sees none of (numpy code, pure elementwise filters) gets ``None``:
  "n/a", never zero.
- Latency: seconds per image (a batch of one) after a warm-up call, as the
  median and inter-quartile range over repeats. Torch modules go through
  ``torch.utils.benchmark.Timer`` (which synchronises the accelerator and runs
  at the process's thread count here); other callables through a plain
  ``perf_counter`` loop with ``bench.device.synchronize`` around each call.
- Peak memory: the working memory of one call after a warm-up call, beyond
  what was allocated before it (weights and input are resident already; the
  parameter column gives the weights). On CUDA ``torch.cuda.max_memory_allocated``
  after ``reset_peak_memory_stats``, minus ``memory_allocated`` before the call.
  On the CPU the peak bytes of the tensors alive during the call, counted op by
  op (``LiveTensorBytes``, a ``TorchDispatchMode``), plus the peak of Python and
  NumPy allocations (``tracemalloc``): what the method itself allocates, so the
  figure does not depend on what the allocator kept from models measured before
  (the process's resident set did: 8 MB alone, 0 MB after a bigger model).

Inputs are real: the dataset's first image of each shape (and that image
resized to 256x256) with seeded Gaussian noise at sigma = 25/255.
"""

from __future__ import annotations

import logging
import platform
import statistics
import time
import tracemalloc
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.data.datasets import shown_name
from bench.device import synchronize
from bench.seeding import noise_seed

#: Side of the reference shape every method is also measured at.
REFERENCE_SIDE = 256
#: Noise level of the measured inputs (cost barely depends on it).
SIGMA = 25 / 255
#: Timed calls after the warm-up (Timer may run more for fast models).
REPEATS = 5
#: Least and most total seconds Timer spends timing a fast model.
MIN_RUN_TIME, MAX_RUN_TIME = 0.5, 3.0
CUDA_MEMORY = "torch.cuda.max_memory_allocated growth during one call (after reset_peak_memory_stats)"
CPU_MEMORY = "peak bytes of live tensors (TorchDispatchMode) + peak Python/NumPy allocations (tracemalloc) in one call"


@dataclass
class Cost:
    """One denoiser's cost per image at one input shape on one device."""

    shape: tuple[int, int, int]
    parameters: int | None
    flops: float | None
    latency_median: float | None
    latency_iqr: float | None
    latency_repeats: int
    timer: str
    peak_memory: float | None
    memory_method: str
    device_name: str
    environment: dict = field(default_factory=dict)


def parameter_count(model) -> int | None:
    """Parameters of a torch module (buffers excluded); None for anything else."""
    if not isinstance(model, torch.nn.Module):
        return None
    return sum(p.numel() for p in model.parameters())


def count_flops(call) -> float | None:
    """FLOPs of one call as FlopCounterMode counts them; None when it counted nothing."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        call()
    total = counter.get_total_flops()
    return float(total) if total > 0 else None


def time_torch(call, repeats: int) -> tuple[list[float], str]:
    """Per-call seconds through torch.utils.benchmark.Timer (accelerator synchronised).

    ``adaptive_autorange`` times blocks of calls until their spread settles; its
    time limit allows at least ``repeats`` + 1 blocks of a slow model.
    """
    # importing the benchmark utilities loads torch's C++-extension helper, which warns about a
    # missing CUDA toolkit on CPU-only machines: irrelevant to timing Python calls
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    start = time.perf_counter()
    call()  # a first estimate of one call
    estimate = time.perf_counter() - start
    timer = Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    measurement = timer.adaptive_autorange(min_run_time=MIN_RUN_TIME,
                                           max_run_time=max(MAX_RUN_TIME, (repeats + 1) * estimate))
    return list(measurement.times), "torch.utils.benchmark.Timer"


def time_plain(call, device: torch.device, repeats: int) -> tuple[list[float], str]:
    """Per-call seconds with perf_counter, the device synchronised around each call."""
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times, "time.perf_counter"


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the tensor storages created by torch ops and still alive, and their peak.

    A storage counts once however many views of it exist; it is released when the last
    tensor seen on it is garbage (weakref finalizers). Inputs made before the mode are not counted.
    """

    def __init__(self):
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.holders: dict[int, int] = {}
        self.now = self.peak = 0

    def _release(self, pointer: int) -> None:
        self.holders[pointer] -= 1
        if self.holders[pointer] == 0:
            self.now -= self.sizes.pop(pointer)
            del self.holders[pointer]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
                continue
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if pointer not in self.sizes:
                self.sizes[pointer], self.holders[pointer] = storage.nbytes(), 0
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            self.holders[pointer] += 1
            weakref.finalize(tensor, self._release, pointer)
        return out


def cpu_peak_bytes(call) -> int:
    """Peak tensor bytes (``LiveTensorBytes``) plus peak Python/NumPy bytes (tracemalloc) of one call."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    try:
        with LiveTensorBytes() as tensors:
            call()
        python_peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        if not tracing:
            tracemalloc.stop()
    return tensors.peak + max(0, python_peak)


def peak_memory(call, device: torch.device) -> tuple[float | None, str]:
    """Peak memory of one call, bytes, and how it was measured (call it after a warm-up call)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before), CUDA_MEMORY
    return float(cpu_peak_bytes(call)), CPU_MEMORY


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    """What the timings depend on besides the code: threads, CUDA and cuDNN versions."""
    found = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        found.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return found


def noisy_input(image: torch.Tensor, shape: tuple[int, int, int], seed: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, sigma) for one image brought to ``shape`` (resized when it differs), seeded noise."""
    x = image[None]
    if tuple(image.shape) != shape:
        x = torch.nn.functional.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False)
    generator = torch.Generator().manual_seed(seed)
    y = x + SIGMA * torch.randn(x.shape, generator=generator)
    return y.to(device), torch.full((1,), SIGMA, device=device)


def measure(model, image: torch.Tensor, shape: tuple[int, int, int], device: torch.device,
            repeats: int = REPEATS, seed: int = 0) -> Cost:
    """Cost of ``model(y, sigma)`` per image of ``shape`` (an image of the dataset brought to it)."""
    y, sigma = noisy_input(image, shape, noise_seed(seed, "cost", "x".join(map(str, shape)),
                                                    "gaussian", SIGMA, 0), device)

    def call():
        with torch.no_grad():
            return model(y, sigma)

    flops = count_flops(call)  # also the warm-up call (lazy imports, caches)
    memory, method = peak_memory(call, device)
    if isinstance(model, torch.nn.Module):
        times, timer = time_torch(call, repeats)
    else:
        times, timer = time_plain(call, device, repeats)
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (0, 0, 0)
    return Cost(shape=shape, parameters=parameter_count(model), flops=flops,
                latency_median=statistics.median(times), latency_iqr=q3 - q1,
                latency_repeats=len(times), timer=timer, peak_memory=memory, memory_method=method,
                device_name=device_name(device), environment=environment(device))


@dataclass(frozen=True)
class Request:
    """One measurement a grid needs: a built denoiser on one dataset's image shape."""

    dataset: str  # as leaderboards name it (``bench.data.datasets.shown_name``)
    denoiser: str  # the row name without harness parameters (``vst``), as leaderboards join it
    model: str  # key of the built model in ``Grid.denoisers``
    shape: tuple[int, int, int]
    images: int  # images of the dataset with this shape (0 for the reference shape)
    image_index: int
    source: str  # key of the images in ``Grid.datasets``


def base_name(row: str) -> str:
    """A leaderboard row's denoiser without the harness's ``vst`` parameter."""
    from bench.grid.cells import HARNESS_PARAMS
    from bench.specs import Spec, parse_spec

    spec = parse_spec(row, "denoiser")
    return Spec(spec.name, {k: v for k, v in spec.params.items() if k not in HARNESS_PARAMS}).label


def shape_indices(images: list[torch.Tensor]) -> dict[tuple[int, int, int], list[int]]:
    """Indices of a dataset's images by shape, in dataset order."""
    shapes: dict[tuple[int, int, int], list[int]] = {}
    for i, image in enumerate(images):
        shapes.setdefault(tuple(image.shape), []).append(i)
    return shapes


def requests(grid) -> list[Request]:
    """Every (dataset, denoiser, shape) of a grid's built denoisers, and the 256x256 reference shape."""
    found: dict[tuple, Request] = {}
    for cell in grid.cells:
        if grid.denoisers[cell.model].model is None:  # skipped or failed to build
            continue
        name = base_name(cell.denoiser)
        shapes = shape_indices(grid.datasets[cell.dataset].images)
        wanted = [(shape, len(idx), idx[0]) for shape, idx in shapes.items()]
        for channels, first in {shape[0]: idx[0] for shape, idx in shapes.items()}.items():
            reference = (channels, REFERENCE_SIDE, REFERENCE_SIDE)
            if reference not in shapes:
                wanted.append((reference, 0, first))
        dataset = shown_name(cell.dataset, cell.subset)  # as the leaderboard names it
        for shape, count, first in wanted:
            found.setdefault((dataset, name, shape), Request(dataset, name, cell.model, shape, count, first,
                                                                    cell.dataset))
    return list(found.values())
