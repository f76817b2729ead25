"""The grid: datasets x degradations x levels x denoisers x repetitions, as keyed cells.

Everything is resolved and validated here, before any cell runs or anything
is written, so a usage error leaves no trace.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from itertools import product

from bench.code_identity import harness_code
from bench.config import DEFAULT_METRICS, RunConfig
from bench.data.datasets import ImageSet, noise_name
from bench.errors import Skip, UsageError
from bench.noise.degradations import Degradation
from bench.noise.sigma_in import BLIND, MEAN, ORACLE, RESIDUAL, SigmaIn, on_noise, parse_all
from bench.plugins import error_line
from bench.registry import Entry, Registry
from bench.seeding import identity_hash
from bench.specs import Spec, parse_noise, parse_spec, without_paths
from bench.store.database import CellResult


#: Spec parameters the harness consumes instead of the factory.
HARNESS_PARAMS = ("vst",)
VST_CHOICES = ("anscombe", "none")


@dataclass(frozen=True)
class Cell:
    """One unit of work: a denoiser on one dataset at one noise level and repetition.

    ``denoiser`` is the row name (``vst=...`` shown for Poisson rows); ``model``
    names the built instance in ``Grid.denoisers``; ``mode`` says what the
    denoiser receives besides y: ``sigma``, ``map`` (a noise-level map, on noise that varies
    in space), ``peak`` or ``anscombe`` (sigma after VST).
    """

    dataset: str
    degradation: str
    level: float
    denoiser: str
    repetition: int
    model: str = field(compare=False)
    mode: str = field(compare=False)
    key: str = field(compare=False)
    #: None for the whole dataset, else ``ImageSet.subset`` (``first 3 of 12``).
    subset: str | None = field(default=None, compare=False)
    #: The level the denoiser receives (``bench.noise.sigma_in``): ``oracle``, ``x0.5``, ... or ``blind``.
    sigma_in: str = field(default=ORACLE, compare=False)

    def describe(self) -> str:
        given = "" if self.sigma_in in (ORACLE, BLIND) else f" given {self.sigma_in}"
        return f"{self.denoiser}{given} on {self.dataset} {self.degradation}:{self.level:.4g} rep {self.repetition}"

    @property
    def noisy_group(self) -> tuple:
        """Cells sharing this share the same noisy inputs."""
        return (self.dataset, self.degradation, self.level, self.repetition)


@dataclass
class Denoiser:
    """A built denoiser (or why it could not be built) with its registry entry."""

    spec: Spec
    entry: Entry
    model: object = None
    skip_reason: str | None = None
    build_error: str | None = None

    def unbuilt_result(self) -> CellResult | None:
        """The result of each of its cells when it was skipped or failed to build, else None."""
        if self.skip_reason:
            return CellResult("skipped", self.skip_reason)
        if self.build_error:
            return CellResult("error", self.build_error)
        return None


@dataclass
class Grid:
    config: RunConfig
    datasets: dict[str, ImageSet]
    dataset_entries: dict[str, Entry]
    degradations: dict[str, tuple[Degradation, Entry]]
    denoisers: dict[str, Denoiser]
    metrics: dict[str, tuple[object, Entry]]
    cells: list[Cell]
    #: ``sigma_in`` label -> choice, and estimator name -> ``estimate(y)`` for ``estimate:NAME`` choices.
    sigma_choices: dict[str, SigmaIn] = field(default_factory=dict)
    estimators: dict[str, object] = field(default_factory=dict)
    #: Sampler cells of the config's ``[[sampling]]`` tables (``bench.grid.sampler_cells.SamplingGrid``).
    sampling: object = None

    def metrics_for(self, dataset: str) -> dict[str, tuple[object, Entry]]:
        """The metrics its cells compute (``dataset_metrics``)."""
        return dataset_metrics(self.metrics, self.datasets[dataset])


def needs_reference(entry: Entry) -> bool:
    return not entry.metadata.get("no_reference")


def dataset_metrics(metrics: dict[str, tuple[object, Entry]], images: ImageSet) -> dict[str, tuple[object, Entry]]:
    """The metrics scored on ``images``: all of them, or on a set without a clean reference
    (``rni15``) only those that need none (``no_reference`` metadata)."""
    if images.reference:
        return metrics
    return {name: metric for name, metric in metrics.items() if not needs_reference(metric[1])}


def load_dataset(registry: Registry, spec: Spec, config: RunConfig) -> ImageSet:
    """A run's dataset: its data root applied, its image limit taken."""
    return registry.load_dataset(spec, config.data_root).limit(config.limit_images)


def build_denoiser(registry: Registry, spec: Spec) -> Denoiser:
    """Build it once for all its cells: a Skip or a crash is recorded, not raised (UsageError is)."""
    entry = registry.get("denoisers", spec.name)
    denoiser = Denoiser(spec, entry)
    try:
        denoiser.model = registry.build("denoisers", spec)
    except UsageError:
        raise
    except Skip as exc:
        denoiser.skip_reason = str(exc) or "skipped by plugin"
    except Exception as exc:  # a crashing plugin fails its cells, not the grid
        denoiser.build_error = f"building {spec.label} failed: {error_line(exc)}"
    return denoiser


def model_spec(spec: Spec, entry: Entry, dataset: str, family: str | None = None,
               level: float | None = None, channels: int | None = None) -> Spec:
    """What the factory gets: harness parameters removed; the dataset, the noise family and
    level, or the images' channels, added if it asks (``per_dataset``, ``per_level``, ``per_channels``)."""
    params = {k: v for k, v in spec.params.items() if k not in HARNESS_PARAMS}
    if entry.metadata.get("per_dataset"):
        params.setdefault("dataset", dataset)
    if entry.metadata.get("per_level") and family is not None:
        params.setdefault("degradation", family)
        params.setdefault("level", level)
    if entry.metadata.get("per_channels") and channels is not None:
        params.setdefault("channels", channels)
    return Spec(spec.name, params)


def model_identity(denoiser: Denoiser) -> str:
    """The built model's label, plus its ``fingerprint`` (e.g. a checkpoint's hash) if it has one;
    then a weights file's path is left out (the hash says which weights)."""
    fingerprint = getattr(denoiser.model, "fingerprint", None)
    if fingerprint is None:
        return denoiser.spec.label
    return f"{placeless(denoiser.spec.label, denoiser)}@{fingerprint}"


def placeless(label: str, denoiser: Denoiser) -> str:
    """A fingerprinted row's label without the places on disk its fingerprint stands for (a
    weights file; an ``outputs:DIR`` row's folder too)."""
    return without_paths(label, prefix_names_a_place=bool(denoiser.entry.metadata.get("outputs"))) or label


def call_mode(spec: Spec, entry: Entry, degradation: Degradation) -> tuple[str, str]:
    """(mode, row name) of a denoiser on a degradation; VST by default on Poisson."""
    vst = spec.params.get("vst", "anscombe")
    if vst not in VST_CHOICES:
        raise UsageError(f"{spec.label}: vst must be one of {', '.join(VST_CHOICES)}, got {vst!r}")
    params = {k: v for k, v in spec.params.items() if k not in HARNESS_PARAMS}
    if degradation.spatial and entry.metadata.get("noise_map"):
        return "map", Spec(spec.name, params).label
    if degradation.family != "poisson" or entry.metadata.get("native_poisson"):
        return ("peak" if degradation.family == "poisson" else "sigma"), Spec(spec.name, params).label
    if not entry.metadata.get("sigma_aware"):
        return "sigma", Spec(spec.name, params).label
    return ("anscombe" if vst == "anscombe" else "sigma"), Spec(spec.name, {**params, "vst": vst}).label


def dataset_identity(config: RunConfig, entry: Entry, label: str, *within, images: ImageSet | None = None) -> list:
    """A dataset's part of a cell key: its name, plugin, ``within`` (e.g. an image limit).

    With ``images`` whose files' content is known, the name is ``noise_name`` (no path, the
    content instead); otherwise the data folder counts where it decides the data
    (``uses_data_root``). Shared by sampler cells.
    """
    if images is not None and images.content_id is not None:
        return [noise_name(label, images), entry.fingerprint, *within, images.content_id]
    return [label, entry.fingerprint, *within, config.data_root if entry.metadata.get("uses_data_root") else None]


def cell_key(config: RunConfig, dataset: Entry, dataset_label: str, images: ImageSet, degradation: Entry,
             degradation_label: str, level: float, denoiser: Denoiser, row_label: str,
             metrics: dict[str, tuple[object, Entry]], repetition: int, sigma_in: SigmaIn = SigmaIn(ORACLE),
             estimator: Entry | None = None) -> str:
    """Hash of everything that can change a cell's numbers: the data (its content, not its
    path), the image subset, the plugins' code, the harness's code and libraries, and
    the level the denoiser receives (not for the oracle: keys made before that axis stand)."""
    if getattr(denoiser.model, "fingerprint", None) is not None:  # the weights' hash, not their path
        row_label = placeless(row_label, denoiser)
    identity = {
        "dataset": dataset_identity(config, dataset, dataset_label, images.subset, images=images),
        "degradation": [degradation_label, degradation.fingerprint, float(level).hex()],
        "denoiser": [row_label, model_identity(denoiser), denoiser.entry.fingerprint],
        "harness": harness_code(),
        "metrics": sorted([name, entry.fingerprint] for name, (_, entry) in metrics.items()),
        "seed": config.seed,
        "protocol": config.protocol,
        "repetition": repetition,
    }
    if sigma_in.label not in (ORACLE, BLIND):
        identity["sigma_in"] = [sigma_in.label, estimator.fingerprint if estimator else None]
    return identity_hash(identity)


def takes_a_level(entry: Entry, name: str = "") -> bool:
    """Whether a row (``name``) depends on the level it is given: it uses sigma, unless it is a
    family member that ignores it (``blind_members``), or it is one model per level (``per_level``:
    the level picks the model)."""
    if entry.is_family and name[len(entry.name):] in entry.metadata.get("blind_members", ()):
        return False
    return bool(entry.metadata.get("sigma_aware") or entry.metadata.get("per_level"))


def received_choices(choices: list[SigmaIn], entry: Entry, mode: str, name: str = "") -> list[SigmaIn]:
    """The levels a row is run at: every choice for a sigma-aware row given a sigma; one cell,
    ``blind``, for a row that ignores sigma (it reads the same for every choice); the oracle peak
    for a native Poisson row; ``mean`` is the oracle for a row not handed a noise map."""
    if not takes_a_level(entry, name):
        return [SigmaIn(BLIND)]
    if mode == "peak":
        return [SigmaIn(ORACLE)]
    if mode != "map":
        return list(dict.fromkeys(SigmaIn(ORACLE) if c.label == MEAN else c for c in choices))
    return choices


def model_level(choice: SigmaIn, family: str, level: float) -> tuple[float | None, str | None]:
    """(level a per-level model is chosen by, or None with the reason it cannot be chosen)."""
    if choice.label in (ORACLE, BLIND):
        return level, None
    if family != "gaussian":
        return None, f"per-level models pick their model by the true level on {family} data; sigma_in {choice.label} needs Gaussian noise"
    received = choice.one_level(level)
    if received is None:
        return None, (f"a per-level model needs one level per cell; {choice.label} gives one per image")
    return received, None


def sigma_in_setup(config: RunConfig, registry: Registry, entries: dict, degradations: dict) -> tuple[list[SigmaIn], dict, dict]:
    """The grid's sigma_in choices, the estimators they name (built) and their entries; UsageError for
    a choice no row can take or an estimator the noise does not suit (nothing written)."""
    choices = parse_all(config.sigma_in or [])
    if any(not c.is_oracle for c in choices) and not any(takes_a_level(e, spec.name) for spec, e in entries.items()):
        raise UsageError(f"--sigma-in {','.join(config.sigma_in)}: no row of the grid is sigma-aware "
                         f"({', '.join(spec.label for spec in entries)} ignore sigma)")
    if any(c.label == MEAN for c in choices) and not any(d.spatial for d, _ in degradations.values()):
        raise UsageError(f"sigma_in {MEAN}: the mean of a noise map, and no noise of the grid varies in space "
                         f"(try gaussian-map:25/255)")
    estimators, estimator_entries = {}, {}
    for choice in choices:
        if choice.estimator is None:
            continue
        entry = registry.get("estimators", choice.estimator)
        non_gaussian = sorted(name for name, (d, _) in degradations.items() if not d.gaussian_like)
        if entry.metadata.get("gaussian_only") and non_gaussian:
            raise UsageError(f"sigma_in {choice.label}: the estimator assumes Gaussian noise, and the grid has "
                             f"{', '.join(non_gaussian)} noise; run the estimate on a Gaussian grid")
        estimators[choice.estimator] = registry.build("estimators", Spec(choice.estimator))  # guarded: one line
        estimator_entries[choice.estimator] = entry
    return choices, estimators, estimator_entries


def build_degradation(registry: Registry, text: str) -> tuple[str, Degradation, Entry]:
    """``gaussian`` or ``gaussian-map[shape=peaks]``: its canonical label (the ``degradation`` of
    cells and tables: parameters at their defaults left out), the built degradation and its entry;
    bad parameters are one UsageError."""
    spec = parse_spec(text, "noise")
    degradation, entry = registry.build("degradations", spec), registry.get("degradations", spec.name)
    try:
        defaults = {name: p.default for name, p in inspect.signature(entry.factory).parameters.items()}
    except (TypeError, ValueError):  # builtins without a signature
        defaults = {}
    given = {k: v for k, v in spec.params.items() if k not in defaults or defaults[k] != v}
    return Spec(spec.name, given).label, degradation, entry


def build_denoiser_grid(config: RunConfig, registry: Registry) -> Grid:
    """The denoiser cells of a config (its sampler cells: ``bench.grid.planning.build_grid``)."""
    dataset_specs = [parse_spec(text, "dataset") for text in config.datasets]
    denoiser_specs = [parse_spec(text, "denoiser") for text in config.denoisers]
    metrics = {name: (registry.build("metrics", Spec(name)), registry.get("metrics", name))
               for name in dict.fromkeys(config.metrics)}

    degradations: dict[str, tuple[Degradation, Entry]] = {}
    levels: list[tuple[str, float]] = []
    for text in config.noise:
        noise = parse_noise(text, bare=True)
        label, degradation, entry = build_degradation(registry, noise.degradation)
        degradation = degradations.setdefault(label, (degradation, entry))[0]
        if not (noise.levels or degradation.default_levels):
            parse_noise(text)  # the malformed-spec error: this one needs its levels
        levels += [(label, degradation.parse_level(v)) for v in noise.levels or degradation.default_levels]
    levels = list(dict.fromkeys(levels))

    datasets = {spec.label: load_dataset(registry, spec, config) for spec in dataset_specs}
    for label, data in datasets.items():
        if not isinstance(data, ImageSet):
            raise UsageError(f"dataset {label!r} is {type(data).__name__}, not images; "
                             "`run` scores image denoisers (sample point data with `denoise-bench sample`)")
    check_noise_fits_data(datasets, {label: d for label, (d, _) in degradations.items()})
    check_metrics_fit_data(config, metrics, datasets)
    dataset_entries = {spec.label: registry.get("datasets", spec.name) for spec in dataset_specs}
    denoiser_entries = {spec: registry.get("denoisers", spec.name) for spec in dict.fromkeys(denoiser_specs)}

    choices, estimators, estimator_entries = sigma_in_setup(config, registry, denoiser_entries, degradations)

    denoisers: dict[str, Denoiser] = {}
    cells = []
    for dataset, (degradation, level), repetition, (spec, entry) in product(
            datasets, levels, range(config.repetitions), denoiser_entries.items()):
        mode, row = call_mode(spec, entry, degradations[degradation][0])
        images = datasets[dataset].images
        channels = images[0].shape[0] if images else None
        on_data = on_noise(None if config.sigma_in is None else choices, degradations[degradation][0].captured,
                           datasets[dataset].reference)
        if takes_a_level(entry, spec.name) and not on_data:
            raise UsageError(f"{spec.label} on {dataset} (real noise without a reference) has no level to be "
                             f"given: add --sigma-in estimate:NAME (`denoise-bench list estimators`)")
        for choice in received_choices(on_data, entry, mode, spec.name):
            name = build_for_choice(registry, denoisers, spec, entry, dataset,
                                    degradations[degradation][0].family, level, choice, channels)
            check_fits(denoisers[name], entry, datasets[dataset], dataset, channels)
            key = cell_key(config, dataset_entries[dataset], dataset, datasets[dataset],
                           degradations[degradation][1], degradation, level, denoisers[name], row,
                           dataset_metrics(metrics, datasets[dataset]),
                           repetition, choice, estimator_entries.get(choice.estimator))
            cells.append(Cell(dataset, degradation, level, row, repetition, name, mode, key,
                              datasets[dataset].subset, choice.label))
    return Grid(config, datasets, dataset_entries, degradations, denoisers, metrics, cells,
                sigma_choices={c.label: c for c in [*choices, SigmaIn(BLIND), SigmaIn(ORACLE), SigmaIn(RESIDUAL)]},
                estimators=estimators)


def check_fits(denoiser: Denoiser, entry: Entry, images: ImageSet, dataset: str, channels: int | None) -> None:
    """UsageError for a row built for other images than the dataset's: a model built for a number
    of channels (its ``channels``, e.g. a gray-only model on colour data), or published outputs
    (``outputs`` metadata) that do not cover the dataset."""
    built = getattr(denoiser.model, "channels", None)
    if built is not None and channels is not None and built != channels:
        kind = {1: "gray", 3: "colour"}
        raise UsageError(f"{denoiser.spec.label} is built for {kind.get(built, built)} ({built}-channel) images and "
                         f"{dataset} is {kind.get(channels, channels)} ({channels} channels): give a model for "
                         f"{channels}-channel images (e.g. in_channels={channels}) or a {kind.get(built, '')} set")
    if entry.metadata.get("outputs") and denoiser.model is not None:
        denoiser.model.check(images, dataset)


def check_noise_fits_data(datasets: dict[str, ImageSet], degradations: dict[str, Degradation]) -> None:
    """UsageError for real noise on a set without captures, or drawn noise on a set without a reference."""
    for label, images in datasets.items():
        for name, degradation in degradations.items():
            if degradation.captured and images.captures is None:
                raise UsageError(f"-n {name}: {label} has no noisy captures, only clean images; real noise "
                                 f"needs a real-noise set (polyu, cc15, rni15) or draw noise (-n gaussian:25/255)")
            if not degradation.captured and not images.reference:
                raise UsageError(f"-n {name} on {label}: its images are noisy captures without a clean "
                                 f"reference, so drawn noise has nothing to be scored against; use -n real")


def check_metrics_fit_data(config: RunConfig, metrics: dict[str, tuple[object, Entry]],
                           datasets: dict[str, ImageSet]) -> None:
    """UsageError for a metric needing a reference asked on a set without one; the default metrics
    are left out there instead (``dataset_metrics``)."""
    if tuple(config.metrics) == DEFAULT_METRICS:
        return
    unreferenced = [label for label, images in datasets.items() if not images.reference]
    asked = [name for name, (_, entry) in metrics.items() if needs_reference(entry)]
    if unreferenced and asked:
        raise UsageError(f"metric {asked[0]} needs a clean reference and {unreferenced[0]} has none (real noisy "
                         f"images alone): drop it from --metrics for that set, or leave --metrics at its "
                         f"default ({', '.join(DEFAULT_METRICS)}), which skips it there")


def build_for_choice(registry: Registry, denoisers: dict[str, Denoiser], spec: Spec, entry: Entry,
                     dataset: str, family: str, level: float, choice: SigmaIn,
                     channels: int | None) -> str:
    """Build (once) the model a cell at this choice uses; returns its key in ``denoisers``.

    A per-level model is the one of the level the row receives (x2 at 25/255 runs the 50/255
    model); where no level can pick one, a stand-in that skips its cells with the reason."""
    if entry.metadata.get("per_level"):
        received, reason = model_level(choice, family, level)
        if reason:
            name = f"{spec.label} ({choice.label})"
            denoisers.setdefault(name, Denoiser(spec, entry, skip_reason=reason))
            return name
        level = received
    built = model_spec(spec, entry, dataset, family, level, channels)
    if built.label not in denoisers:
        denoisers[built.label] = build_denoiser(registry, built)
    return built.label
