"""``denoise-bench train``: train a learned denoiser on a dataset's train split into the model store."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from bench.cli.options import add_data_arguments, add_device, add_plugins
from bench.device import resolve_device
from bench.errors import UsageError
from bench.training.model_store import (DEFAULT_MODELS_DIR, checkpoint_path, is_complete, load_training_data,
                                        read_meta, train_checkpoint, training_spec)
from bench.plugins import load_plugins
from bench.registry import Registry
from bench.specs import parse_count, parse_spec


def configure(parser) -> None:
    parser.description = ("Train on the dataset's train split (MSE against the clean image) and write a "
                    "checkpoint into the model store. Options left out take the learner's defaults "
                    "for that dataset; with none given, `run` finds and reuses the checkpoint.")
    parser.add_argument("denoiser", help="a learned denoiser (see `denoise-bench list denoisers`)")
    parser.add_argument("--dataset", required=True, help="e.g. lfw-faces, mnist (train split used)")
    parser.add_argument("--noise", help="gaussian:0.05,0.2 (levels) or gaussian:LO:HI / LO:HI (a range)")
    parser.add_argument("--epochs", type=int, help="training length in passes over the train split")
    parser.add_argument("--images", type=image_count, metavar="N",
                        help="training length in images seen (180k = 180,000), the same whatever the size "
                             "of the train split; instead of --epochs")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--patch", type=int,
                        help="train on random NxN patches (the MLP's input size); 0: whole images")
    parser.add_argument("--hflip", action=argparse.BooleanOptionalAction,
                        help="random horizontal flips (--no-hflip: none)")
    parser.add_argument("--val-fraction", type=float, help="share of the images held out for validation")
    parser.add_argument("--val-every", type=int, metavar="EPOCHS", help="validate every EPOCHS epochs")
    parser.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                        help="stop after PATIENCE validations without improvement; keep the best")
    parser.add_argument("--schedule", choices=("constant", "cosine"),
                        help="learning rate: constant, or cosine-annealed to 0")
    parser.add_argument("--ema", type=float, metavar="RATIO",
                        help="keep (and return) an average of the weights, half-life RATIO x the images "
                             "seen so far (EDM's; score-unet's default on MNIST-like sets is 0.2)")
    parser.add_argument("--amp", action="store_true", default=None,
                        help="mixed precision (CUDA only)")
    add_device(parser)
    add_data_arguments(parser)
    parser.add_argument("--models", default=DEFAULT_MODELS_DIR,
                        help=f"model store folder (default {DEFAULT_MODELS_DIR})")
    add_plugins(parser, help="load a local plugin file (repeatable)")
    parser.add_argument("--force", action="store_true", help="retrain even if this checkpoint exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=main)


def image_count(text: str) -> int:
    try:
        return parse_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


OPTIONS = ("noise", "epochs", "images", "batch_size", "lr", "seed", "patch", "hflip", "val_fraction",
           "val_every", "early_stopping", "amp", "schedule", "ema")


def main(args) -> int:
    registry = Registry(load_plugins(args.plugins))
    spec = parse_spec(args.denoiser, "denoiser")
    entry = registry.get("denoisers", spec.name)
    learner = entry.metadata.get("learned")
    if learner is None:
        trainable = [e.name for e in registry.entries("denoisers") if e.metadata.get("learned")]
        raise UsageError(f"{spec.name!r} is not a learned denoiser; trainable: {', '.join(trainable)}")
    if spec.params:
        raise UsageError(f"train takes a denoiser name without parameters, got {spec.label!r}")
    device = resolve_device(args.device)
    data = load_training_data(training_spec(args.dataset, registry), registry, args.data_root)
    options = learner.defaults(data.dataset).with_overrides(
        **{name: getattr(args, name) for name in OPTIONS})
    if args.patch == 0:
        options = replace(options, patch=None)
    options.validate()
    if options.amp and device.type != "cuda":
        raise UsageError("--amp needs a CUDA device (--device cuda)")
    path = checkpoint_path(args.models, learner, data, options)
    if is_complete(path) and not args.force:
        print(f"already trained: {path} (--force retrains)", file=sys.stderr)
    else:
        train_checkpoint(learner, data, options, args.models, device, registry, args.quiet)
    meta = read_meta(path)
    val = meta["val_loss"]
    length = f"{meta['epochs_run']} epochs"  # checkpoints written before images seen was recorded
    if "images_seen" in meta:
        length = f"{meta['images_seen']:,} images seen ({length})"
    print(f"{path}\n  weights {meta['weights_hash']}, {meta['parameters']} parameters, "
          f"{length} in {meta['seconds']:.1f} s "
          f"({meta['images_per_second']:.0f} images/s), train loss {meta['train_loss']:.5g}, "
          f"val loss {'-' if val is None else f'{val:.5g}'}")
    if options == learner.defaults(data.dataset):
        print(f"  runs evaluating {learner.name} on {data.dataset} whose model store is "
              f"{args.models} reuse it", file=sys.stderr)
    else:
        print(f"  use it: denoise-bench run -d DATASET -m \"{learner.name}[weights={path}]\"",
              file=sys.stderr)
    return 0
