"""``bench.evaluate``: score denoisers (registered rows or objects from this session) on a grid or suite."""

from __future__ import annotations

import tempfile
from dataclasses import replace

import torch

from bench.api.inprocess import InProcess, SessionRow, add_rows, default_name, denoiser, restored, session_row
from bench.api.results import Results
from bench.api.running import RunOptions, execute
from bench.api.suites import is_suite, rows_to_run, suite_config
from bench.config import make_config
from bench.errors import UsageError

#: ``store=":memory:"`` keeps nothing: the run goes to a temporary folder, removed with the Results.
MEMORY = ":memory:"
#: The level an in-process row is probed at on noise whose level is not a std (Poisson, real).
PROBE_SIGMA = 0.1


def split_denoisers(denoisers) -> tuple[list[str], list[SessionRow]]:
    """(registered row specs, in-process rows) from a name, spec, object, list or dict."""
    if denoisers is None:
        return [], []
    if isinstance(denoisers, dict):
        items = list(denoisers.items())
    elif isinstance(denoisers, (list, tuple)):
        items = [(None, d) for d in denoisers]
    else:
        items = [(None, denoisers)]
    specs, rows = [], []
    for key, value in items:
        if isinstance(value, str):
            if key is not None and key != value:
                raise UsageError(f"{key!r}: a registered row keeps its own name ({value!r}); list it "
                                 "instead of naming it in a dict")
            specs.append(value)
            continue
        declared = value if isinstance(value, InProcess) else denoiser(value)
        name = key or declared.name or default_name(declared.obj)
        rows.append(session_row(declared, name))
    names = specs + [row.name for row in rows]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UsageError(f"two denoisers are named {duplicated[0]!r}: name them with a dict "
                         "({'a': model_a, 'b': model_b}) or bench.denoiser(obj, name=...)")
    return specs, rows


def run_options(executor, progress: bool, rows: list[SessionRow]) -> RunOptions:
    """The run options ``executor`` asks for (None or ``local``, ``dask``, or a RunOptions)."""
    if isinstance(executor, RunOptions):
        options = executor
    elif executor in (None, "local", "dask"):
        options = RunOptions(executor or "local")
    else:
        raise UsageError(f"executor must be 'local', 'dask' or a bench.api.running.RunOptions, got {executor!r}")
    if rows and (options.executor != "local" or options.timeout):
        raise UsageError(f"{rows[0].name} lives in this Python session and runs only in this process: "
                         "use executor='local' without a timeout, or register it as a plugin file")
    return replace(options, quiet=options.quiet or not progress,
                   argv=("python", "bench.evaluate", *(row.name for row in rows)))


def probe(rows: list[SessionRow]):
    """A check before anything is written: each in-process row, called on the grid's first image,
    returns a float tensor of its input's shape (else one UsageError)."""
    def check(grid, device) -> None:
        from bench.grid.scoring import DenoiserOutputError, check_output
        from bench.plugins import error_line

        if not grid.cells:
            return
        images = grid.datasets[grid.cells[0].dataset].images
        y = images[0].unsqueeze(0).to(device)
        first = grid.cells[0]
        gaussian = grid.degradations[first.degradation][0].family == "gaussian"
        sigma = torch.full((1,), float(first.level) if gaussian else PROBE_SIGMA, device=device)
        for row in rows:
            model = grid.denoisers[row.name].model
            if isinstance(model, torch.nn.Module):
                model = model.to(device).eval()
            try:
                with torch.no_grad():
                    check_output(model(y.clone(), sigma.clone()), y)
            except DenoiserOutputError as exc:
                raise UsageError(f"{row.name} {exc} (called on one image of {grid.cells[0].dataset}, "
                                 f"shape {tuple(y.shape)})") from None
            except Exception as exc:
                raise UsageError(f"{row.name} failed on one image of {grid.cells[0].dataset} "
                                 f"(shape {tuple(y.shape)}): {error_line(exc)}") from None
    return check


def evaluate(denoisers, suite: str | None = None, *, datasets=None, noise=None, sigma_in=None,
             protocol: str | None = None, metrics=None, repetitions: int | None = None,
             limit_images: int | None = None, store: str | None = None, device: str = "auto",
             executor=None, progress: bool = True, baselines: str = "published", plugins=None,
             seed: int | None = None, data_root: str | None = None, offline: bool | None = None,
             save_images: int | None = None, batch_size: int | None = None) -> Results:
    """Score ``denoisers`` on a named suite's grid (or the default one), with any grid value replaced.

    ``denoisers``: a registered row (``"dncnn-s"``, ``"nlm[h=0.1]"``), a ``torch.nn.Module``, a
    callable ``f(y, sigma)`` or ``f(y)``, a ``bench.denoiser(obj, ...)`` declaration, or a list or
    dict of them (dict keys name objects); None runs the suite's own rows. On a suite, its rows
    show beside yours: their published numbers (``baselines="published"``), run (``"run"``) or
    not at all (``"none"``). ``store=None`` is the command line's default store;
    ``store=":memory:"`` keeps nothing. Usage errors raise ``bench.UsageError``, nothing written.
    """
    base = suite_config(suite)
    specs, rows = split_denoisers(denoisers)
    given = specs + [row.name for row in rows]
    run, reference = rows_to_run(list(base.get("denoisers", [])), given, baselines, is_suite(suite))
    specs = [name for name in run if name not in {row.name for row in rows}]
    options = run_options(executor, progress, rows)
    folder = tempfile.TemporaryDirectory(prefix="denoise-bench-") if store == MEMORY else None
    overrides = {"datasets": as_list(datasets), "noise": as_list(noise), "sigma_in": as_list(sigma_in),
                 "protocol": protocol, "metrics": as_list(metrics), "repetitions": repetitions,
                 "limit_images": limit_images, "device": device, "seed": seed, "data_root": data_root,
                 "offline": offline, "save_images": save_images, "batch_size": batch_size,
                 "plugins": as_list(plugins), "store": f"{folder.name}/bench.sqlite" if folder else store,
                 "denoisers": specs + [row.name for row in rows]}
    try:
        config = make_config(base, overrides)
        from bench.plugins import load_plugins
        from bench.registry import Registry

        plugin_set = load_plugins(config.plugins)
        add_rows(plugin_set, rows)
        registry = Registry(plugin_set)  # a name already taken leaves the other plugin's entry
        taken = [row.name for row in rows if registry.get("denoisers", row.name).plugin != f"python:{row.name}"]
        if taken:
            raise UsageError(f"{taken[0]!r} is a registered row's name: name your object otherwise "
                             "(a dict key or bench.denoiser(obj, name=...))")
        with restored([row.obj for row in rows]):
            outcome = execute(config, options, plugin_set, registry, before_run=probe(rows) if rows else None)
    except BaseException:
        if folder is not None:
            folder.cleanup()
        raise
    return Results(outcome, registry, rows, reference, folder)


def as_list(value):
    """A single name as a one-item list; None stays None (the suite's value)."""
    if value is None:
        return None
    return [value] if isinstance(value, (str, float, int)) else list(value)
