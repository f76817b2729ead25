"""``denoise-bench fetch NAME...``: download and verify datasets and weights ahead of a run.

For clusters and CI without internet: fetch where there is a network, then run
with ``--offline`` (or ``DENOISE_BENCH_OFFLINE=1``) on the same data folder.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from bench.cli.options import add_data_arguments, add_plugins
from bench.data import fetching
from bench.errors import UsageError
from bench.specs import parse_spec

if TYPE_CHECKING:  # the registry pulls in torch: every command's start-up imports this module
    from bench.registry import Entry, Registry


def configure(parser) -> None:
    parser.description = ("Download datasets (set12, bsd68, cbsd68, kodak24, mcmaster, urban100, mnist, "
                    "fashion-mnist) or a denoiser's weights (dncnn-s, dncnn-b, "
                    "deepinv:<Class>[pretrained=download]) into the data folder, verified.")
    parser.add_argument("names", nargs="+", metavar="NAME")
    add_data_arguments(parser, offline=False)
    add_plugins(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--pin", action="store_true",
                        help="also write the SHA-256 of each name's unpinned release weights into the pin file "
                             "($DENOISE_BENCH_PINS, else pins.json in the data folder)")
    parser.set_defaults(func=main)


def find(registry: Registry, name: str) -> tuple[str, Entry]:
    """The dataset or denoiser called ``name`` (datasets first); UsageError suggesting the closest."""
    for kind in ("datasets", "denoisers"):
        try:
            return kind, registry.get(kind, name)
        except UsageError:
            continue
    known = registry.names("datasets") + registry.names("denoisers")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UsageError(f"nothing called {name!r} to fetch{hint}; datasets: {', '.join(registry.names('datasets'))}")


def fetch_one(registry: Registry, text: str, data_root: str | None) -> str:
    """Fetch one name; returns a line saying what is now in the data folder."""
    spec = parse_spec(text)
    kind, entry = find(registry, spec.name)
    fetchable = entry.metadata.get("fetch")
    if fetchable is not None and not spec.params:
        fetchable.fetch()
        return f"{spec.label}: ready, {fetchable.status()[1] / 1e6:.1f} MB"
    if kind == "datasets":
        images = registry.load_dataset(spec, data_root)
        return f"{spec.label}: {len(images)} images ready"
    registry.build("denoisers", spec)  # downloads what the model needs (torch hub, ...)
    return f"{spec.label}: ready"


def pin_one(registry: Registry, text: str) -> str:
    """Pin a fetched name's release weights (``fetch`` metadata with a ``pin()``); the line to print."""
    spec = parse_spec(text)
    fetchable = find(registry, spec.name)[1].metadata.get("fetch")
    if not callable(getattr(fetchable, "pin", None)):
        raise UsageError(f"{spec.name}: nothing to pin (its files are pinned by a shipped manifest or its library)")
    path, names = fetchable.pin()
    return f"{spec.name}: pinned {', '.join(names) or 'nothing new'} in {path}"


def main(args) -> int:
    settings = fetching.settings()
    if settings.offline:
        raise UsageError(f"fetch downloads, but offline mode is on: unset {fetching.OFFLINE_ENV}")
    from bench.plugins import load_plugins
    from bench.registry import Registry

    registry = Registry(load_plugins(args.plugins))
    for name in args.names:
        print(fetch_one(registry, name, args.data_root))
        if args.pin:
            print(pin_one(registry, name))
    print(f"data folder: {settings.root}")
    return 0
