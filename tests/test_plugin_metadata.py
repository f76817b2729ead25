"""Plugin metadata is declared per kind, checked at registration and documented (as datasette does)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bench import hookspecs
from bench.plugins import get_plugin_set
from bench.registry import KINDS, Registry

# The hooks and their metadata keys are documented in docs/plugins.md (the README links to it).
PLUGIN_DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

TYPO = '''
import bench

@bench.hookimpl
def register_denoisers(register):
    register("typo", lambda: (lambda y, sigma: y), sigma_awre=True)
'''


def load(write_plugin, source: str):
    plugins = get_plugin_set([str(write_plugin(source))], entry_points=False)
    return plugins, Registry(plugins)


def test_an_unknown_metadata_key_marks_the_plugin_broken_with_a_hint(write_plugin):
    plugins, registry = load(write_plugin, TYPO)
    info = plugins.infos["file:my_plugin.py"]
    assert info.broken and "unknown metadata key 'sigma_awre' (did you mean 'sigma_aware'?)" in info.error
    assert "typo" not in registry.names("denoisers")


@pytest.mark.parametrize("call, message", [
    ('register_denoisers(register):\n    register("x", lambda: None, sigma_aware="yes")',
     "metadata 'sigma_aware' must be bool, got str"),
    ('register_metrics(register):\n    register("m", lambda: None)',
     "missing required metadata 'higher_is_better'"),
    ('register_metrics(register):\n    register("m", lambda: None, higher_is_better=1)',
     "metadata 'higher_is_better' must be bool, got int"),
    ('register_denoisers(register):\n    register("x", lambda: None, learned=True)',
     "metadata 'learned' must be bench.training.model_store.Learner"),
])
def test_wrong_types_and_missing_keys_mark_the_plugin_broken(write_plugin, call, message):
    plugins, _ = load(write_plugin, f"import bench\n\n@bench.hookimpl\ndef {call}\n")
    assert message in (plugins.infos["file:my_plugin.py"].error or "")


def test_the_built_in_plugins_declare_only_known_keys():
    plugins = get_plugin_set()
    assert not [i for i in plugins.infos.values() if i.broken]
    registry = Registry(plugins)
    for kind in KINDS:
        for entry in registry.entries(kind):
            assert set(entry.metadata) <= set(hookspecs.METADATA[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_every_hook_and_metadata_key_is_documented(kind):
    hook = getattr(hookspecs, f"register_{kind}")
    doc = inspect.getdoc(hook)
    plugin_docs = PLUGIN_DOCS.read_text()
    assert f"register_{kind}" in plugin_docs, f"docs/plugins.md does not document the hook register_{kind}"
    for key in hookspecs.METADATA[kind]:
        assert f"``{key}``" in doc, f"register_{kind}'s docstring does not document {key!r}"
        assert f"`{key}`" in plugin_docs, f"docs/plugins.md does not document the {kind} metadata key {key!r}"
