"""``denoise-bench sample``: a sampling grid from flags (the ``[[sampling]]`` table of a run config).

Samplers x score models (any denoiser, through Tweedie) x datasets x repetitions
become sampler cells, run like denoiser cells (stored, resumable, isolated with
``--timeout``, on Dask with ``--executor dask``) and ranked by
``denoise-bench leaderboard --samples``.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from bench.cli.options import add_data_arguments, add_device, add_plugins, add_store
from bench.api.running import execute
from bench.cli.run import add_executor_flags, print_boards, print_summary, run_options
from bench.config import make_config
from bench.errors import UsageError
from bench.grid.sampler_cells import REFERENCE_N
from bench.plugins import load_plugins
from bench.registry import Registry
from bench.sampling.samplers import INITS
from bench.specs import Spec, parse_spec

#: Flags that set sampler parameters: flag -> the parameter it sets, the first a sampler has
#: (--sigma, the smallest level, is ``sigma_min`` of the EDM and DDIM samplers).
SAMPLER_FLAGS = {"steps": ("steps",), "step_size": ("step_size",), "sigma": ("sigma", "sigma_min")}


def configure(parser) -> None:
    parser.description = ("Run SAMPLER(s) with each --score DENOISER as score model (Tweedie) on each "
                          "--dataset, --repetitions times; samples and metrics go to the store "
                          "(`leaderboard --samples`). A run config's [[sampling]] tables do the same.")
    parser.add_argument("samplers", nargs="+", metavar="SAMPLER",
                        help="gradient-ascent, langevin, annealed-langevin[...], initial-noise")
    parser.add_argument("--score", action="append", required=True, metavar="DENOISER", dest="scores",
                        help="denoiser used as score model: name or name[key=value,...] (repeatable)")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME", dest="datasets",
                        help="e.g. gmm2d, gmm-images, mnist, fashion-mnist (repeatable)")
    parser.add_argument("--n", type=int, default=64, help="chains (= samples) per cell (default 64)")
    parser.add_argument("--repetitions", type=int, default=1, help="cells per combination, new seeds")
    parser.add_argument("--steps", type=int, help="steps (per noise level for annealed-langevin)")
    parser.add_argument("--step-size", type=float, help="step size (at the smallest sigma)")
    parser.add_argument("--sigma", type=float, help="noise level of the score (the smallest one)")
    parser.add_argument("--init", choices=INITS, default="noise",
                        help="start from noise or from noisy data items (default noise)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-n", type=int, default=REFERENCE_N,
                        help=f"reference items (test split or true samples) for MMD etc. (default {REFERENCE_N})")
    add_store(parser)
    add_device(parser)
    add_data_arguments(parser)
    add_plugins(parser, help="load a local plugin file (repeatable)")
    parser.add_argument("--models", metavar="DIR",
                        help="model store of learned score models and classifiers (default: models/ beside the store)")
    parser.add_argument("--no-train", action="store_true", help="fail instead of training a missing model")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table")
    add_executor_flags(parser)
    parser.set_defaults(func=main)


def sampler_spec(text: str, args, registry: Registry) -> str:
    """The sampler spec with --steps/--step-size/--sigma merged in (flags win); a flag that
    sets none of the sampler's parameters is a UsageError."""
    spec = parse_spec(text, "sampler")
    accepted = inspect.signature(registry.get("samplers", spec.name).factory).parameters
    params = dict(spec.params)
    for flag, names in SAMPLER_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        name = next((name for name in names if name in accepted), None)
        if name is None:
            raise UsageError(f"--{flag.replace('_', '-')} does not apply to {spec.name} "
                             f"(its parameters: {', '.join(accepted) or 'none'})")
        params[name] = value
    return Spec(spec.name, params).label


def main(args) -> int:
    if args.n < 2:
        raise UsageError(f"--n must be >= 2 (metrics compare samples), got {args.n}")
    if args.reference_n < 2:
        raise UsageError(f"--reference-n must be >= 2, got {args.reference_n}")
    plugins = load_plugins(args.plugins)
    registry = Registry(plugins)
    table = {"datasets": args.datasets, "scores": args.scores,
             "samplers": [sampler_spec(text, args, registry) for text in args.samplers], "n": args.n,
             "repetitions": args.repetitions, "init": args.init, "reference_n": args.reference_n}
    config = make_config({}, {"sampling": [table], "seed": args.seed, "store": args.store,
                              "plugins": args.plugins, "device": args.device, "data_root": args.data_root,
                              "offline": args.offline, "models": args.models,
                              "no_train": args.no_train or None})
    outcome = execute(config, run_options(args), plugins, registry, on_done=None if args.quiet else print_boards)
    print_summary(outcome)
    print(f"samples in {Path(outcome.store).parent / 'samples'}/<cell key>/; "
          f"table: `denoise-bench leaderboard --samples --store {outcome.store}`", file=sys.stderr)
    return outcome.summary.exit_code
