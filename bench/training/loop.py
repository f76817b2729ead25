"""The training loop: clean images held as one tensor on the device, noise drawn per batch there.

Loss is the MSE against the clean image. Every random draw (order, crops,
flips, noise levels, noise) comes from one ``torch.Generator`` on the device,
seeded from ``TrainOptions.seed``, and the model is initialised under the same
seed, so training on the CPU gives the same weights every time. A held-out
part of the training images gives the validation loss (fixed noise, drawn once
on the CPU), which early stopping watches. Mixed precision is used on CUDA
when asked. With ``ema`` the weights kept (validated, restored, returned) are an
exponential moving average of the trained ones (``WeightAverage``). The length
is given in epochs or in images seen (``TrainingLength``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from tqdm.auto import tqdm

from bench.device import synchronize
from bench.errors import UsageError
from bench.specs import format_value, parse_number
from bench.training.noise_range import largest_pairwise_distance

#: Noise families the loop can draw; Poisson data reaches Gaussian models through the VST.
TRAINING_NOISE = ("gaussian",)
#: Number of fixed noise levels each validation image is scored at, for a range.
VALIDATION_LEVELS = 3
SCHEDULES = ("constant", "cosine")
#: Spacings of a range of training levels: uniform, log-uniform (geometric), or EDM's log-normal.
SPACINGS = ("linear", "log", "lognormal")
#: ``lognormal``: ln sigma ~ N(P_MEAN, P_STD^2) truncated to the range (Karras et al. 2022's P_mean, P_std).
P_MEAN, P_STD = -1.2, 1.2
#: The top of a range left to the data: the largest distance between two training images.
DATA_HIGH = "diameter"
#: Training length when neither ``epochs`` nor ``images`` is given.
DEFAULT_EPOCHS = 100


@dataclass(frozen=True)
class TrainingNoise:
    """Gaussian noise levels: a list of levels, or a range ``low:high`` sampled uniformly
    (``spacing="linear"``), log-uniformly (``"log"``: a geometric range of levels) or
    log-normally (``"lognormal"``: EDM's ln sigma ~ N(-1.2, 1.2^2), truncated to the range).

    Each training image in a batch gets its own level. ``high`` may be left to the
    data (``from_data``): the largest pairwise distance of the training images
    (``bench.training.noise_range``), filled in by ``resolve`` before training.
    """

    levels: tuple[float, ...] = ()
    low: float = 0.0
    high: float = 0.0
    spacing: str = "linear"
    from_data: bool = False

    @property
    def is_range(self) -> bool:
        return not self.levels

    @property
    def label(self) -> str:
        if self.is_range:
            high = DATA_HIGH if self.from_data else format_value(self.high)
            return (f"gaussian:{format_value(self.low)}:{high}"
                    + (f":{self.spacing}" if self.spacing != "linear" else ""))
        return "gaussian:" + ",".join(format_value(v) for v in self.levels)

    def resolve(self, images: torch.Tensor) -> "TrainingNoise":
        """The noise with ``high`` computed from the training images when it is left to the data."""
        if not self.from_data:
            return self
        high = largest_pairwise_distance(images)
        if not high > self.low:
            raise UsageError(f"training noise {self.label}: the training images are at most {high:g} "
                             f"apart, not above the low end {self.low:g}")
        return replace(self, high=high, from_data=False)

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """(n,) noise levels, drawn on the device."""
        if self.from_data:
            raise ValueError("resolve() the noise range against the training images first")
        if self.is_range:
            u = torch.rand(n, generator=generator, device=device)
            if self.spacing == "lognormal":
                return self.lognormal_quantile(u)
            if self.spacing == "log":
                return self.low * (self.high / self.low) ** u
            return self.low + (self.high - self.low) * u
        levels = torch.tensor(self.levels, device=device)
        return levels[torch.randint(len(levels), (n,), generator=generator, device=device)]

    def lognormal_quantile(self, u: torch.Tensor) -> torch.Tensor:
        """Levels at probabilities ``u`` of the log-normal truncated to [low, high] (inverse CDF)."""
        a, b = (torch.special.ndtr(torch.tensor((math.log(v) - P_MEAN) / P_STD, dtype=torch.float64))
                for v in (self.low, self.high))
        z = torch.special.ndtri(a + (b - a) * u.double())
        return torch.exp(P_MEAN + P_STD * z).to(u.dtype).clamp(self.low, self.high)

    def validation_levels(self) -> tuple[float, ...]:
        """The levels validation images are scored at: the list, or midpoints spread over the range."""
        if not self.is_range:
            return self.levels
        if self.spacing == "lognormal":
            middle = (torch.arange(VALIDATION_LEVELS, dtype=torch.float64) + 0.5) / VALIDATION_LEVELS
            return tuple(self.lognormal_quantile(middle).tolist())
        if self.spacing == "log":
            ratio = self.high / self.low
            return tuple(self.low * ratio ** ((k + 0.5) / VALIDATION_LEVELS) for k in range(VALIDATION_LEVELS))
        step = (self.high - self.low) / VALIDATION_LEVELS
        return tuple(self.low + step * (k + 0.5) for k in range(VALIDATION_LEVELS))


def parse_training_noise(text: str) -> TrainingNoise:
    """``gaussian:0.05,0.2`` (levels), ``gaussian:0.01:0.25`` or ``0.01:0.25`` (a range), and
    ``gaussian:0.01:diameter:log`` (log-uniform up to the training images' largest distance)."""
    name, sep, rest = text.partition(":")
    try:
        parse_number(name)
        name, rest = "gaussian", text  # a bare range or level list
    except (ValueError, ZeroDivisionError):
        if not sep:
            rest = ""
    name = name.strip()
    if name not in TRAINING_NOISE:
        raise UsageError(f"training noise {text!r}: only {', '.join(TRAINING_NOISE)} noise can be "
                         "trained on (Poisson rows use the Anscombe VST)")
    try:
        if ":" in rest:
            low, high, *spacing = (v.strip() for v in rest.split(":"))
            if len(spacing) > 1 or (spacing and spacing[0] not in SPACINGS):
                raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}")
            from_data = high == DATA_HIGH
            noise = TrainingNoise(low=parse_number(low), high=0.0 if from_data else parse_number(high),
                                  spacing=spacing[0] if spacing else "linear", from_data=from_data)
        else:
            levels = tuple(parse_number(v) for v in rest.split(",") if v.strip())
            if not levels:
                raise ValueError("no levels")
            noise = TrainingNoise(levels=levels)
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"malformed training noise {text!r}: expected e.g. gaussian:0.05,0.2 "
                         "(levels), gaussian:0.01:0.25 (a range low:high) or gaussian:0.01:diameter:log "
                         "(log-uniform up to the largest distance between training images)") from None
    values = noise.levels or (noise.low, noise.high)
    if min(values) < 0:
        raise UsageError(f"training noise {text!r}: noise levels must be >= 0")
    if noise.is_range and not noise.from_data and noise.low > noise.high:
        raise UsageError(f"training noise {text!r}: the range low:high has low > high")
    if max(values) == 0 and not noise.from_data:
        raise UsageError(f"training noise {text!r}: at least one noise level must be > 0")
    if noise.spacing in ("log", "lognormal") and noise.low <= 0:
        kind = "log-spaced" if noise.spacing == "log" else "log-normal"
        raise UsageError(f"training noise {text!r}: a {kind} range needs a low end > 0")
    return noise


@dataclass(frozen=True)
class TrainOptions:
    """Everything that decides what a training run produces (besides model and data).

    The length is ``epochs`` (passes over the training images) or ``images`` (images
    seen, as EDM's kimg: the same length whatever the size of the train split),
    never both; with neither, ``DEFAULT_EPOCHS``.
    """

    epochs: int | None = None
    #: Training examples drawn over all epochs (a crop counts as one with ``patch``); the
    #: last epoch is cut at the step where the count is reached.
    images: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    noise: str = "gaussian:0:0.25"
    seed: int = 0
    #: Train on random patch x patch crops (the MLP's input size); None: whole images.
    patch: int | None = None
    #: Random horizontal flips of the training images.
    hflip: bool = False
    val_fraction: float = 0.1
    #: Validate every this many epochs, and at the end of training.
    val_every: int = 1
    #: Stop after this many validations without a lower validation loss (then keep the best).
    early_stopping: int | None = None
    #: Mixed precision (float16 autocast); only used on CUDA.
    amp: bool = False
    #: ``constant`` learning rate, or ``cosine``: annealed to 0 over the whole length, per step.
    schedule: str = "constant"
    #: Keep an exponential moving average of the weights, half-life = ``ema`` x the images seen so
    #: far (Karras et al. 2022's ramp-up, theirs 0.05), and return it; None: the last weights.
    ema: float | None = None

    def __post_init__(self):
        if self.epochs is None and self.images is None:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS)

    def validate(self) -> TrainingNoise:
        """Check every value (UsageError on a bad one); returns the parsed noise."""
        if self.epochs is not None and self.images is not None:
            raise UsageError(f"give the training length as epochs or as images seen, not both "
                             f"(got epochs {self.epochs} and images {self.images})")
        for name in ("epochs", "images", "batch_size", "val_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        if self.ema is not None and not 0 < self.ema <= 1:
            raise UsageError(f"ema (half-life / images seen) must be in (0, 1], got {self.ema}")
        if self.patch is not None and self.patch < 1:
            raise UsageError(f"patch must be >= 1, got {self.patch}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; choose {', '.join(SCHEDULES)}")
        if not 0 <= self.val_fraction < 1:
            raise UsageError(f"val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.early_stopping is not None:
            if self.early_stopping < 1:
                raise UsageError(f"early-stopping patience must be >= 1, got {self.early_stopping}")
            if self.val_fraction == 0:
                raise UsageError("early stopping needs validation images: use a val-fraction > 0")
        return parse_training_noise(self.noise)

    def with_overrides(self, **overrides) -> "TrainOptions":
        """A copy with the given values replaced (None means keep); a length given in epochs or
        in images replaces the other (UsageError when both are given)."""
        known = {f.name for f in fields(self)}
        given = {k: v for k, v in overrides.items() if k in known and v is not None}
        if "epochs" in given and "images" in given:
            raise UsageError("give the training length as epochs or as images seen, not both")
        if "epochs" in given or "images" in given:
            given = {"epochs": None, "images": None, **given}
        return replace(self, **given)

    def length(self, per_epoch: int) -> "TrainingLength":
        """The length of training on ``per_epoch`` examples a pass."""
        total = self.images if self.images is not None else self.epochs * per_epoch
        return TrainingLength(per_epoch, total)

    def to_dict(self) -> dict:
        """All options, less those added later and left at their default (``LATER_OPTIONS``), so
        that checkpoints trained before an option existed keep their names in the model store."""
        return {k: v for k, v in asdict(self).items() if not (k in LATER_OPTIONS and v == LATER_OPTIONS[k])}


#: Options added after checkpoints were first named, with the default under which they are left out.
LATER_OPTIONS = {"ema": None, "images": None}


@dataclass(frozen=True)
class TrainingLength:
    """How long a run trains: ``total`` examples drawn, ``per_epoch`` a pass, the last pass cut short."""

    per_epoch: int
    total: int

    @property
    def epochs(self) -> int:
        return math.ceil(self.total / self.per_epoch)

    def size(self, epoch: int) -> int:
        """Examples drawn in ``epoch`` (from 1): a whole pass, or what is left of the total."""
        return min(self.per_epoch, self.total - (epoch - 1) * self.per_epoch)

    def steps(self, batch_size: int) -> int:
        """Optimizer steps over the whole length, each epoch ending on a (possibly smaller) batch."""
        full, rest = divmod(self.total, self.per_epoch)
        return full * math.ceil(self.per_epoch / batch_size) + math.ceil(rest / batch_size)

    def describe(self) -> str:
        """``176,400 images seen (22.5 epochs of 7,840)``."""
        epochs = f"{self.total / self.per_epoch:,.2f}".rstrip("0").rstrip(".")
        return f"{self.total:,} images seen ({epochs} epochs of {self.per_epoch:,})"


@dataclass
class TrainResult:
    """What a training run produced: the final weights, losses per validation, timings."""

    state_dict: dict
    history: list[dict] = field(default_factory=list)
    train_loss: float = float("nan")
    val_loss: float | None = None
    best_epoch: int | None = None
    epochs_run: int = 0
    images_seen: int = 0
    stopped_early: bool = False
    steps: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    #: The training noise as used (a range left to the data is filled in).
    noise: str = ""

    def summary(self) -> dict:
        """Everything except the weights, for the checkpoint's JSON."""
        return {k: v for k, v in asdict(self).items() if k != "state_dict"}


def split_validation(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a seeded random ``fraction`` of n held out (at least one)."""
    if fraction == 0 or n < 2:
        return list(range(n)), []
    n_val = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])


def patches_per_image(height: int, width: int, patch: int | None) -> int:
    """Random crops drawn per image per epoch: as many as it takes to tile the image once."""
    if patch is None:
        return 1
    return math.ceil(height / patch) * math.ceil(width / patch)


def random_crops(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random size x size crop of each image in a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    top = torch.randint(h - size + 1, (b,), generator=generator, device=x.device)
    left = torch.randint(w - size + 1, (b,), generator=generator, device=x.device)
    offsets = torch.arange(size, device=x.device)
    rows = (top[:, None] + offsets)[:, :, None]
    cols = (left[:, None] + offsets)[:, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflips(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


@dataclass
class ValidationSet:
    """Held-out clean images, each at every validation level, with noise fixed once."""

    x: torch.Tensor
    y: torch.Tensor
    sigma: torch.Tensor


def validation_set(images: torch.Tensor, noise: TrainingNoise, seed: int,
                   device: torch.device) -> ValidationSet | None:
    """Noise drawn on the CPU, so the validation inputs are the same on every device."""
    if len(images) == 0:
        return None
    levels = noise.validation_levels()
    x = images.repeat(len(levels), 1, 1, 1)
    sigma = torch.tensor(levels, dtype=torch.float32).repeat_interleave(len(images))
    generator = torch.Generator().manual_seed(seed + 1)
    y = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=generator)
    return ValidationSet(x.to(device), y.to(device), sigma.to(device))


def weighted_squared_error(model: torch.nn.Module, out: torch.Tensor, x: torch.Tensor,
                           sigma: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error (B,), times ``model.loss_weight(sigma)`` when the model has one
    (e.g. EDM's lambda(sigma), so that levels decades apart count alike)."""
    error = (out.float() - x).pow(2).flatten(1).mean(dim=1)
    weight = getattr(model, "loss_weight", None)
    return error * weight(sigma) if callable(weight) else error


def validation_loss(model: torch.nn.Module, val: ValidationSet, batch_size: int, amp: bool) -> float:
    """Mean (weighted) squared error over the validation set, in eval mode."""
    model.eval()
    total = 0.0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        for i in range(0, len(val.x), batch_size):
            sigma = val.sigma[i:i + batch_size]
            out = model(val.y[i:i + batch_size], sigma)
            total += weighted_squared_error(model, out, val.x[i:i + batch_size], sigma).sum().item()
    model.train()
    return total / len(val.x)


def check_trainable(images: torch.Tensor, options: TrainOptions) -> None:
    """UsageError when the images cannot feed this configuration."""
    if images.ndim != 4 or len(images) == 0:
        raise UsageError("training needs a non-empty (N, C, H, W) batch of images")
    _, _, h, w = images.shape
    if options.patch is not None and options.patch > min(h, w):
        raise UsageError(f"patch {options.patch} is larger than the {h}x{w} training images")


def noisy_batch(x: torch.Tensor, options: TrainOptions, noise: TrainingNoise,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean, noisy, sigma) for a batch of training images: crop, flip, then add noise."""
    if options.patch is not None and options.patch < min(x.shape[2:]):
        x = random_crops(x, options.patch, generator)
    if options.hflip:
        x = random_hflips(x, generator)
    sigma = noise.sample(len(x), generator, x.device)
    y = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=generator, device=x.device)
    return x, y, sigma


def adam(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, fused (one kernel for all parameters, same math) where this torch supports it."""
    try:
        return torch.optim.Adam(list(model.parameters()), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(list(model.parameters()), lr=lr)


@dataclass
class Optimisation:
    """One training step's machinery: the model, Adam, the learning-rate schedule, the AMP scaler."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    amp: bool

    @classmethod
    def create(cls, model: torch.nn.Module, options: TrainOptions, total_steps: int,
               amp: bool) -> "Optimisation":
        optimizer = adam(model, options.lr)
        scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
                     if options.schedule == "cosine" else None)
        return cls(model, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=amp), amp)

    def step(self, x: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """One update on the (weighted) MSE of ``model(y, sigma)`` against ``x``; returns the (detached) loss."""
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            loss = weighted_squared_error(self.model, self.model(y, sigma), x, sigma).mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()


class WeightAverage:
    """An exponential moving average of a model's weights (EDM's EMA, Karras et al. 2022).

    After a batch of b images, with n images seen in all: avg <- beta avg + (1 - beta) w,
    beta = 0.5^(b / (ratio n)): the half-life grows with training, so early weights fade.
    Buffers are copied as they are.
    """

    def __init__(self, model: torch.nn.Module, ratio: float):
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        self.ratio, self.seen = ratio, 0

    def update(self, model: torch.nn.Module, batch: int) -> None:
        self.seen += batch
        beta = 0.5 ** (batch / (self.ratio * self.seen))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1 - beta)
            for mine, theirs in zip(self.model.buffers(), model.buffers()):
                mine.copy_(theirs)


class BestWeights:
    """Early stopping's memory: the best validation loss, its weights, validations since."""

    def __init__(self, keep_weights: bool):
        self.loss, self.state, self.stale, self.keep_weights = math.inf, None, 0, keep_weights

    def update(self, model: torch.nn.Module, result: TrainResult, epoch: int) -> None:
        if result.val_loss < self.loss:
            self.loss, self.stale, result.best_epoch = result.val_loss, 0, epoch
            if self.keep_weights:
                self.state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1

    def restore(self, model: torch.nn.Module, result: TrainResult) -> None:
        """Load the best weights back (and their losses into ``result``) if a later epoch was worse."""
        if self.state is not None and result.best_epoch != result.epochs_run:
            model.load_state_dict(self.state)
            best = result.history[result.best_epoch - 1]
            result.train_loss, result.val_loss = best["train_loss"], best["val_loss"]


def training_length(images: torch.Tensor, options: TrainOptions) -> TrainingLength:
    """The length of training on ``images`` under ``options``: an epoch is one pass over the
    images left after the validation split (over as many crops as tile each, with ``patch``)."""
    n_train = len(split_validation(len(images), options.val_fraction, options.seed)[0])
    return options.length(n_train * patches_per_image(images.shape[2], images.shape[3], options.patch))


def run_epoch(optimisation: Optimisation, data: torch.Tensor, order: torch.Tensor, options: TrainOptions,
              noise: TrainingNoise, generator: torch.Generator, bar, epoch: int,
              val_loss: float | None, average: WeightAverage | None = None) -> float:
    """One pass over ``order`` (indices into ``data``) in batches, updating ``average`` after each;
    returns the mean training loss."""
    total = torch.zeros((), device=data.device)
    steps = math.ceil(len(order) / options.batch_size)
    for step in range(steps):
        idx = order[step * options.batch_size:(step + 1) * options.batch_size]
        total += optimisation.step(*noisy_batch(data[idx], options, noise, generator)) * len(idx)
        if average is not None:
            average.update(optimisation.model, len(idx))
        bar.update(1)
        if not bar.disable and (step % 20 == 19 or step == steps - 1):
            seen = min(len(order), (step + 1) * options.batch_size)
            bar.set_postfix_str(f"epoch {epoch} loss {total.item() / seen:.3g}"
                                + (f" val {val_loss:.3g}" if val_loss else ""))
    return total.item() / len(order)


def train(model: torch.nn.Module, images: torch.Tensor, options: TrainOptions,
          device: torch.device, desc: str = "train", quiet: bool = False) -> TrainResult:
    """Train ``model(y, sigma)`` to return the clean image; returns the weights and losses.

    ``images`` is the whole training split as one (N, C, H, W) CPU tensor in [0, 1].
    """
    noise = options.validate()
    check_trainable(images, options)
    train_idx, val_idx = split_validation(len(images), options.val_fraction, options.seed)
    noise = noise.resolve(images[train_idx])
    if noise.is_range and callable(getattr(model, "record_noise_range", None)):
        model.record_noise_range(noise.low, noise.high)
    amp = options.amp and device.type == "cuda"
    data = images[train_idx].to(device)
    val = validation_set(images[val_idx], noise, options.seed, device)
    generator = torch.Generator(device=device).manual_seed(options.seed)
    model = model.to(device).train()
    length = training_length(images, options)
    total_steps = length.steps(options.batch_size)
    optimisation = Optimisation.create(model, options, total_steps, amp)
    average = WeightAverage(model, options.ema) if options.ema is not None else None
    kept = average.model if average is not None else model  # the weights validated and returned
    result, best, seconds = TrainResult(state_dict={}), BestWeights(options.early_stopping is not None), 0.0
    with tqdm(total=total_steps, desc=desc, unit="batch",
              disable=quiet, dynamic_ncols=True, leave=not quiet) as bar:  # closed on error too
        for epoch in range(1, length.epochs + 1):
            synchronize(device)
            start = time.perf_counter()
            order = torch.randperm(length.per_epoch, generator=generator, device=device) % len(data)
            order = order[:length.size(epoch)]
            result.train_loss = run_epoch(optimisation, data, order, options, noise, generator, bar,
                                          epoch, result.val_loss, average)
            synchronize(device)
            seconds += time.perf_counter() - start
            result.steps += math.ceil(len(order) / options.batch_size)
            result.epochs_run, result.images_seen = epoch, result.images_seen + len(order)
            result.history.append({"epoch": epoch, "images": result.images_seen,
                                   "train_loss": result.train_loss})
            if val is None or not (epoch % options.val_every == 0 or epoch == length.epochs):
                continue
            result.val_loss = validation_loss(kept, val, options.batch_size, amp)
            result.history[-1]["val_loss"] = result.val_loss
            best.update(kept, result, epoch)
            if options.early_stopping is not None and best.stale >= options.early_stopping:
                result.stopped_early = True
                break
    best.restore(kept, result)
    if kept is not model:
        model.load_state_dict(kept.state_dict())
    result.state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    result.seconds = seconds
    result.images_per_second = result.images_seen / seconds if seconds > 0 else 0.0
    result.noise = noise.label
    return result


def seeded_init(build, seed: int) -> torch.nn.Module:
    """Call ``build()`` with torch's global RNG seeded, leaving the caller's RNG state alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
