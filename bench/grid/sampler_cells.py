"""Samplers as grid rows: ``[[sampling]]`` tables -> datasets x score models x samplers x repetitions.

A table in a run config (or the flags of ``denoise-bench sample``) names
datasets, score models (any denoiser, through Tweedie), samplers with their
parameters, the number of chains and repetitions. Everything is resolved here,
before anything runs or is written: names, parameters, data, reference sets,
score models and the per-dataset classifier of the sample metrics.

Reference sets never overlap the training data: a dataset with splits is
compared with half of its test split (``sample_metrics.split_reference``) and
memorisation is measured against its train split; a known distribution is
sampled afresh with a seed derived from the dataset's name, which no split
uses. The ``real-data`` floor row draws from what is held out of both: the
other half of the test split, or another fresh draw of a known distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from itertools import product

import torch

from bench.code_identity import harness_code
from bench.data.datasets import ImageSet
from bench.errors import UsageError
from bench.grid.cells import Denoiser, build_denoiser, dataset_identity, model_identity, model_spec
from bench.registry import Entry, Registry
from bench.sampling import sample_metrics
from bench.sampling.classifier import Judge, judge_for
from bench.sampling.samplers import (INITS, Sampler, check_chains_fit, check_count, check_steps_fit,
                                     stack_items)
from bench.sampling.sample_metrics import split_reference
from bench.seeding import identity_hash, noise_seed
from bench.specs import Spec, parse_spec
from bench.training.model_store import has_splits

#: Number of true samples drawn as reference when the distribution is known.
REFERENCE_N = 1000
#: The score label of a row that needs no score model (the real-data floor).
NO_SCORE = "none"


@dataclass(frozen=True)
class SamplingTable:
    """One ``[[sampling]]`` table: datasets x scores x samplers, ``chains`` chains, ``repetitions``."""

    datasets: list[str]
    scores: list[str]
    samplers: list[str]
    chains: int = 64
    repetitions: int = 1
    init: str = "noise"
    reference_n: int = REFERENCE_N

    @classmethod
    def parse(cls, raw: dict, where: str) -> "SamplingTable":
        """From TOML values (``dataset`` or ``datasets``, ``n`` for chains); UsageError on a bad one."""
        if not isinstance(raw, dict):
            raise UsageError(f"{where}: expected a table ([[sampling]]), got {type(raw).__name__}")
        values = dict(raw)
        if "dataset" in values:
            values["datasets"] = values.pop("dataset")
        if "n" in values:
            values["chains"] = values.pop("n")
        values.setdefault("scores", [])  # allowed only for rows that need no score (real-data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; known: dataset(s), scores, "
                             "samplers, n, repetitions, init, reference_n")
        for name in ("datasets", "scores", "samplers"):
            value = values.get(name)
            if isinstance(value, str):
                values[name] = [value]
            empty_ok = name == "scores" and values.get(name) == []
            if not (values.get(name) or empty_ok) or not isinstance(values[name], list) \
                    or not all(isinstance(v, str) for v in values[name]):
                raise UsageError(f"{where}: {name} must be a non-empty list of names")
        table = cls(**values)
        check_count(f"{where}: n (chains)", table.chains, minimum=2)
        check_count(f"{where}: repetitions", table.repetitions)
        check_count(f"{where}: reference_n", table.reference_n, minimum=2)
        if table.init not in INITS:
            raise UsageError(f"{where}: unknown init {table.init!r}; choose {', '.join(INITS)}")
        return table


def parse_tables(raw: list) -> list[SamplingTable]:
    if not isinstance(raw, list):
        raise UsageError("sampling must be a list of tables ([[sampling]])")
    return [SamplingTable.parse(table, f"sampling table {i + 1}") for i, table in enumerate(raw)]


@dataclass(frozen=True)
class SamplerCell:
    """One unit of sampling work: a sampler with a score model on a dataset, one repetition."""

    dataset: str
    score: str
    sampler: str
    chains: int
    init: str
    repetition: int
    #: Its table's reference size: two tables that differ only in it are two cells.
    reference_n: int
    model: str = field(compare=False)
    skip_reason: str | None = field(default=None, compare=False)
    key: str = field(default="", compare=False)

    def describe(self) -> str:
        return f"{self.sampler} score={self.score} on {self.dataset} ({self.chains} chains) rep {self.repetition}"

    @property
    def noisy_group(self) -> tuple:
        """Cells sharing this start from the same chains (executors group work by it)."""
        return ("sampling", self.dataset, self.init, self.chains, self.repetition)


@dataclass
class SamplingData:
    """A dataset as the sampler cells see it: start statistics, references, training items."""

    items: torch.Tensor
    reference: torch.Tensor | None
    training: torch.Tensor | None
    truth: object | None
    judge: Judge | None
    entry: Entry
    #: Real items in neither the training data nor the reference: the real-data row's pool.
    held_out: torch.Tensor | None = None
    #: The dataset as loaded (an ``ImageSet`` of a folder knows its files' content).
    loaded: object = None

    def starts(self, init: str) -> torch.Tensor:
        """What chains start from: ``noise`` takes the items' mean and spread; ``data`` draws items
        that are never the reference's: the training split, the items as given when the reference
        is a fresh draw, or the items the reference leaves."""
        if init != "data":
            return self.items
        if self.training is not None:
            return self.training
        if self.truth is not None:
            return self.items
        if self.held_out is None or len(self.held_out) == 0:
            raise ValueError("init=data: the dataset has no items beyond its reference to start chains "
                             "from; lower reference_n")
        return self.held_out


@dataclass
class SamplingGrid:
    tables: list[SamplingTable]
    #: (dataset, reference_n) -> its data: tables with another reference_n get their own reference.
    data: dict[tuple[str, int], SamplingData]
    samplers: dict[str, tuple[Sampler, Entry]]
    scores: dict[str, Denoiser]
    cells: list[SamplerCell]

    @property
    def metric_info(self) -> dict[str, bool]:
        """higher_is_better of every metric these cells can record."""
        info = {name: m.higher_is_better for name, m in {**sample_metrics.METRICS,
                                                          **sample_metrics.COSTS}.items()}
        for data in self.data.values():
            if data.judge is not None:
                info.update(data.judge.metric_info())
        return info


def reference_seed(seed: int, dataset: str) -> int:
    """The seed of a known distribution's reference draw: a hash, never a split's small seed."""
    return noise_seed(seed, dataset, "reference", "sampling", 0.0, 0)


def load_sampling_data(registry: Registry, spec: Spec, data_root: str | None, seed: int,
                       reference_n: int, judge: Judge | None) -> SamplingData:
    """The dataset as given (chain start statistics) and references independent of the training data.

    With splits: training = ``split=train``; reference and held-out = the two halves
    of ``split=test``. Without: the first ``reference_n`` items are the reference,
    the rest are held out, and there is no training set to memorise. A known
    distribution (``truth``) is sampled afresh for the reference and again, with
    another seed, for the held-out pool.
    """
    entry = registry.get("datasets", spec.name)
    data = registry.load_dataset(spec, data_root)
    items = stack_items(data, spec.label)
    truth = getattr(data, "truth", None)
    training = reference = None
    if has_splits(entry):
        other = {k: v for k, v in spec.params.items() if k != "split"}
        splits = {split: stack_items(registry.load_dataset(Spec(spec.name, {**other, "split": split}),
                                                           data_root), spec.label)
                  for split in ("train", "test")}
        reference, held_out = split_reference(splits["test"])
        training, reference = splits["train"], reference[:reference_n]
    else:
        reference, held_out = items[:reference_n], items[reference_n:]
    if truth is not None:
        reference = truth.sample(reference_n, torch.Generator().manual_seed(reference_seed(seed, spec.label)))
        held_out = truth.sample(reference_n, torch.Generator().manual_seed(
            reference_seed(seed, f"{spec.label}:held-out")))
    return SamplingData(items, reference, training, truth, judge, entry, held_out, data)


def sigma_mismatch(sampler: Sampler, score: Denoiser | None) -> str | None:
    """Why this sampler cannot use this score model, or None."""
    if score is not None and sampler.requires_sigma_aware and not score.entry.metadata.get("sigma_aware"):
        return (f"{sampler.name} evaluates the score at many noise levels, but {score.spec.label!r} "
                "is not sigma-aware (it ignores sigma); use langevin or gradient-ascent at one sigma")
    return None


def sampler_cell_key(config, data: SamplingData, dataset: str, score: Denoiser | None, sampler: Sampler,
                     sampler_entry: Entry, table: SamplingTable, repetition: int) -> str:
    """Hash of everything that can change a sampler cell's numbers: the data (a folder by its
    content), the score model, the sampler, every parameter of the table, the harness's code and libraries."""
    identity = {
        "dataset": dataset_identity(config, data.entry, dataset,
                                    images=data.loaded if isinstance(data.loaded, ImageSet) else None),
        "score": [model_identity(score), score.entry.fingerprint] if score is not None else None,
        "sampler": [sampler.label, sampler_entry.fingerprint],
        "chains": table.chains, "init": table.init, "repetition": repetition, "seed": config.seed,
        "reference_n": table.reference_n,
        "metrics": [data.judge.fingerprint if data.judge else None],
        "harness": harness_code(),
    }
    return identity_hash(identity)


def build_sampling(config, registry: Registry) -> SamplingGrid | None:
    """Resolve the config's ``[[sampling]]`` tables into sampler cells (None when it has none).

    Call inside the run's model context (``bench.grid.planning.build_grid`` does), so
    learned score models and classifiers load or train where the run keeps models.
    """
    if not config.sampling:
        return None
    tables = parse_tables(config.sampling)
    samplers: dict[str, tuple[Sampler, Entry]] = {}
    sampler_of: dict[tuple[int, str], str] = {}
    for i, table in enumerate(tables):
        for text in table.samplers:
            spec = parse_spec(text, "sampler")
            entry = registry.get("samplers", spec.name)
            sampler = registry.build("samplers", spec)
            check_steps_fit(sampler.label, getattr(sampler, "steps", None))
            samplers.setdefault(sampler.label, (sampler, entry))
            sampler_of[i, text] = sampler.label
        entries = [registry.get("denoisers", parse_spec(name, "denoiser").name) for name in table.scores]
        for text in table.samplers:
            sampler = samplers[sampler_of[i, text]][0]
            if sampler.uses_score and not entries:
                raise UsageError(f"sampling table {i + 1}: {sampler.name} needs a score model; list "
                                 "them in scores (only rows such as real-data go without)")
            if sampler.uses_score and sampler.requires_sigma_aware and not any(e.metadata.get("sigma_aware") for e in entries):
                raise UsageError(f"{sampler.name} evaluates the score at many noise levels, but "
                                 f"{', '.join(map(repr, table.scores))} not sigma-aware (they ignore "
                                 "sigma); use langevin or gradient-ascent at one sigma")

    data: dict[tuple[str, int], SamplingData] = {}  # (dataset, reference_n): each table its own reference
    judges: dict[str, Judge | None] = {}
    for table in tables:
        for text in table.datasets:
            spec = parse_spec(text, "dataset")
            if spec.label not in judges:
                judges[spec.label] = judge_for(spec, registry)
            if (spec.label, table.reference_n) not in data:
                data[spec.label, table.reference_n] = load_sampling_data(
                    registry, spec, config.data_root, config.seed, table.reference_n, judges[spec.label])
    for i, table in enumerate(tables):
        for text in table.datasets:
            item = data[parse_spec(text, "dataset").label, table.reference_n].items[0]
            check_chains_fit(f"sampling table {i + 1}: n", table.chains, item)
    scores: dict[str, Denoiser] = {}
    cells = []
    for i, table in enumerate(tables):
        for dataset_text, score_text, sampler_text, repetition in product(
                table.datasets, [*table.scores, None], table.samplers, range(table.repetitions)):
            sampler, sampler_entry = samplers[sampler_of[i, sampler_text]]
            if sampler.uses_score != (score_text is not None):  # score-free rows once, after the rest
                continue
            dataset = parse_spec(dataset_text, "dataset").label
            score, score_label, model = None, NO_SCORE, NO_SCORE
            if score_text is not None:
                score_spec = parse_spec(score_text, "denoiser")
                built = model_spec(score_spec, registry.get("denoisers", score_spec.name), dataset)
                if built.label not in scores:
                    scores[built.label] = build_denoiser(registry, built)
                score, score_label, model = scores[built.label], score_spec.label, built.label
                check_binds(sampler, score)
            key = sampler_cell_key(config, data[dataset, table.reference_n], dataset, score, sampler, sampler_entry,
                                   table, repetition)
            cells.append(SamplerCell(dataset, score_label, sampler.label, table.chains, table.init,
                                     repetition, table.reference_n, model,
                                     sigma_mismatch(sampler, score), key))
    return SamplingGrid(tables, data, samplers, scores, unique(cells))


def check_binds(sampler: Sampler, score: Denoiser) -> None:
    """A sampler that cannot take this score model (``sigma_max=model`` on a model that records
    no range) is a UsageError at planning, not a failed cell; anything else it raises is left
    for the cell to report."""
    if score.model is None:
        return
    try:
        sampler.bind(score.model)
    except UsageError:
        raise
    except Exception:
        pass


def unique(cells: list[SamplerCell]) -> list[SamplerCell]:
    """The cells in order, each identity once (a score-free row named in two tables runs once)."""
    return list(dict.fromkeys(cells))
