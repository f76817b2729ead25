"""Plugin discovery: local files, broken plugins, misspelt hooks, the registry's errors."""

import re
from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.plugins import LOAD_ENV, get_plugin_set
from bench.registry import Registry
from bench.specs import Spec

README = Path(__file__).resolve().parents[1] / "README.md"

BOX = '''
import bench

@bench.hookimpl
def register_denoisers(register):
    register("box-local", lambda size=3: (lambda y, sigma: y), sigma_aware=False, description="test")
'''


def readme_plugin_example() -> str:
    """The plugin example of the README, as a user would paste it."""
    match = re.search(r"```python\n(# box3\.py.*?)```", README.read_text(), re.S)
    assert match, "README lost its box3.py plugin example"
    return match.group(1)


def test_readme_plugin_example_runs_as_pasted(cli, write_plugin, store):
    path = write_plugin(readme_plugin_example(), "box3.py")
    result = cli("run", "--plugin", path, "-d", "skimage-gray[crop=64]", "-n", "gaussian:0.1",
                 "-m", "box3", "-m", "noisy", "--store", store, "--quiet")
    assert result.code == 0, result.err
    listed = cli("list", "denoisers", "--plugin", path)
    assert re.search(r"box3\s+file:box3\.py\s+3x3 mean", listed.out), listed.out


def test_builtins_come_through_entry_points():
    plugins = get_plugin_set()
    assert plugins.infos["core"].source.endswith("bench_plugins.core")
    registry = Registry(plugins)
    assert {"noisy", "gaussian-filter"} <= set(registry.names("denoisers"))
    assert {"psnr", "ssim", "mse"} <= set(registry.names("metrics"))


def test_environment_variable_narrows_entry_points(monkeypatch):
    monkeypatch.setenv(LOAD_ENV, "core")
    registry = Registry(get_plugin_set())
    assert registry.names("denoisers") == []
    assert "psnr" in registry.names("metrics")


def test_plugin_that_fails_to_import_is_listed_broken_and_breaks_nothing(cli, write_plugin):
    path = write_plugin("import bench\nraise RuntimeError('boom at import')\n", "bad.py")
    plugins = get_plugin_set([path])
    info = plugins.infos["file:bad.py"]
    assert info.broken and "boom at import" in info.error
    assert "noisy" in Registry(plugins).names("denoisers")
    listed = cli("list", "plugins", "--plugin", path)
    assert listed.code == 0 and "broken" in listed.out and "boom at import" in listed.out


def test_misspelt_hook_fails_loudly(write_plugin):
    path = write_plugin("import bench\n\n@bench.hookimpl\ndef register_denoiser(register):\n    pass\n")
    info = get_plugin_set([path]).infos["file:my_plugin.py"]
    assert info.broken and "register_denoiser" in info.error


def test_run_refuses_a_broken_local_plugin(cli, write_plugin, store):
    path = write_plugin("import bench\n\n@bench.hookimpl\ndef register_denoiser(register):\n    pass\n")
    result = cli("run", "--plugin", path, "--store", store, "--quiet")
    assert result.code == 2
    assert "failed to load" in result.err and "register_denoiser" in result.err
    assert not store.exists()


def test_plugin_whose_hook_raises_is_marked_broken(write_plugin):
    path = write_plugin("import bench\n\n@bench.hookimpl\ndef register_denoisers(register):\n"
                        "    register('half', lambda: None)\n    raise ValueError('oops')\n")
    registry = Registry(get_plugin_set([path]))
    assert "half" not in registry.names("denoisers")
    assert "oops" in registry.plugins.infos["file:my_plugin.py"].error


def test_duplicate_name_marks_the_second_plugin_broken(write_plugin):
    path = write_plugin("import bench\n\n@bench.hookimpl\ndef register_denoisers(register):\n"
                        "    register('noisy', lambda: None)\n")
    registry = Registry(get_plugin_set([path]))
    assert registry.get("denoisers", "noisy").plugin == "basic-denoisers"
    assert "already registered" in registry.plugins.infos["file:my_plugin.py"].error


def test_unknown_name_lists_the_available_ones():
    registry = Registry(get_plugin_set())
    with pytest.raises(UsageError, match=r"unknown denoiser 'nosy' \(did you mean 'noisy'\?\); available: .*gaussian-filter"):
        registry.get("denoisers", "nosy")


def test_bad_parameters_are_usage_errors(write_plugin):
    registry = Registry(get_plugin_set([write_plugin(BOX)]))
    assert registry.build("denoisers", Spec("box-local", {"size": 5})) is not None
    with pytest.raises(UsageError, match="box-local.*bad parameters"):
        registry.build("denoisers", Spec("box-local", {"radius": 5}))


def test_source_change_changes_the_fingerprint(write_plugin):
    first = get_plugin_set([write_plugin(BOX)]).infos["file:my_plugin.py"].fingerprint
    second = get_plugin_set([write_plugin(BOX + "\n# edited\n")]).infos["file:my_plugin.py"].fingerprint
    assert first != second


def test_missing_plugin_file_is_a_usage_error(cli, store):
    result = cli("run", "--plugin", "/nonexistent/plugin.py", "--store", store)
    assert result.code == 2 and "plugin file not found" in result.err
    assert not store.exists()


def test_a_change_in_a_helper_module_of_the_plugins_package_changes_its_fingerprint(tmp_path, monkeypatch):
    import importlib
    import sys

    from bench.plugins import plugin_fingerprint

    package = tmp_path / "fp_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("def scale(y):\n    return y\n")
    (package / "unused.py").write_text("X = 1\n")
    (package / "plugin.py").write_text("import bench\nfrom fp_pkg.helper import scale\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def fingerprint() -> str:
        for name in [n for n in sys.modules if n.startswith("fp_pkg")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        return plugin_fingerprint(importlib.import_module("fp_pkg.plugin"))

    before = fingerprint()
    (package / "unused.py").write_text("X = 2\n")
    assert fingerprint() == before  # not used by the plugin
    (package / "helper.py").write_text("def scale(y):\n    return 2 * y\n")
    assert fingerprint() != before


def test_the_built_in_rows_fingerprint_their_helper_modules():
    import bench_plugins.ffdnet

    from bench.code_identity import source_fingerprint
    from bench.plugins import plugin_fingerprint

    entry = Registry(get_plugin_set()).get("denoisers", "ffdnet")
    # ffdnet.py builds on matconvnet.py: the entry's fingerprint covers both files
    assert entry.fingerprint == plugin_fingerprint(bench_plugins.ffdnet) != source_fingerprint(bench_plugins.ffdnet)
