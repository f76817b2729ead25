"""Bad config values, spec values and plugin factories: one line, exit 2, nothing written."""

from __future__ import annotations

import time

import pytest

from bench.config import DEFAULT_MAX_CELLS

TINY = ["-d", "skimage-gray[crop=16]", "--limit-images", "1", "-n", "gaussian:0.1", "-m", "noisy",
        "--metric", "psnr", "--quiet"]


def refused(result, store, *needles: str) -> None:
    """Exit 2, one line on stderr holding every needle, no store written."""
    assert result.code == 2, (result.out, result.err)
    assert len(result.err.strip().splitlines()) == 1, result.err
    for needle in needles:
        assert needle in result.err, result.err
    assert "Traceback" not in result.err
    assert not store.exists() and not store.parent.exists(), "something was written"


@pytest.mark.parametrize("line,message", [
    ('repetitions = "3"', "repetitions must be an integer, got str '3'"),
    ("datasets = 5", "datasets must be a list of strings, got int 5"),
    ("seed = 1.5", "seed must be an integer, got float 1.5"),
    ("batch_size = true", "batch_size must be an integer, got bool True"),
    ("offline = 1", "offline must be true or false, got int 1"),
    ("denoisers = [1, 2]", "denoisers must be a list of strings"),
    ("limit_images = [1]", "limit_images must be an integer, got list"),
    ("seed = -1", "seed must be between 0 and 2**63 - 1, got -1"),
    ("repetitions = 0", "repetitions must be >= 1, got 0"),
])
def test_wrong_types_and_ranges_in_a_config_file(cli, store, tmp_path, line, message):
    config = tmp_path / "grid.toml"
    config.write_text('datasets = ["skimage-gray[crop=16]"]\nnoise = ["gaussian:0.1"]\n'
                      'denoisers = ["noisy"]\n' * ("datasets" not in line and "denoisers" not in line) + line + "\n")
    refused(cli("run", config, "--store", store, "--quiet"), store, message)


def test_deep_nesting_is_one_line(cli, store, tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text("datasets = " + "[" * 2000 + "]" * 2000 + "\n")
    refused(cli("run", config, "--store", store), store, "nest too deeply")
    config.write_text("sampling = [[[[[1]]]]]\n")
    refused(cli("run", config, "--store", store), store, "sampling nests too deeply")


def test_a_utf8_bom_is_accepted(cli, store, tmp_path):
    config = tmp_path / "bom.toml"
    config.write_bytes(b"\xef\xbb\xbf" + b'datasets = ["skimage-gray[crop=16]"]\nnoise = ["gaussian:0.1"]\n'
                       b'denoisers = ["noisy"]\nmetrics = ["psnr"]\n')
    result = cli("run", config, "--limit-images", "1", "--store", store, "--quiet")
    assert result.code == 0, result.err


def test_a_huge_grid_is_refused_at_once_and_max_cells_lifts_the_limit(cli, store):
    started = time.monotonic()
    refused(cli("run", *TINY, "--repetitions", "1000000", "--store", store), store,
            f"1,000,000 cells, more than the limit of {DEFAULT_MAX_CELLS:,}", "--max-cells 1000000")
    assert time.monotonic() - started < 5
    refused(cli("run", *TINY, "--repetitions", "3", "--max-cells", "2", "--store", store), store, "--max-cells 3")
    refused(cli("run", *TINY, "--max-cells", "0", "--store", store), store, "max_cells must be >= 1")
    result = cli("run", *TINY, "--repetitions", "3", "--max-cells", "3", "--store", store)
    assert result.code == 0 and "3 cells" in result.err, result.err


@pytest.mark.parametrize("row,message", [
    ("gaussian-filter[width=abc]", "denoiser 'gaussian-filter[width=abc]': width must be a number, got 'abc'"),
    ("median[size=2.5]", "size must be an integer, got 2.5"),
    ("nlm[h=true]", "h must be a number, got True"),
])
def test_wrong_types_in_a_row_spec_are_refused_before_any_cell(cli, store, row, message):
    args = [a if a != "noisy" else row for a in TINY]
    refused(cli("run", *args, "--store", store), store, message)


def test_a_dataset_parameter_of_the_wrong_type(cli, store):
    args = [a if a != "skimage-gray[crop=16]" else "skimage-gray[crop=big]" for a in TINY]
    refused(cli("run", *args, "--store", store), store, "crop must be an integer, got 'big'")


def test_repetition_is_not_an_abbreviation_of_repetitions(cli, store):
    refused(cli("run", *TINY, "--repetition", "3", "--store", store), store,
            "unrecognized arguments: --repetition (did you mean --repetitions?)")


# --- plugin factories that raise ---------------------------------------------------------------------

RAISING = {
    "metric": '''
@bench.hookimpl
def register_metrics(register):
    def make():
        raise RuntimeError("no GPU for my metric")
    register("bad-metric", make, higher_is_better=True)
''',
    "degradation": '''
@bench.hookimpl
def register_degradations(register):
    def make():
        raise KeyError("sigma table")
    register("bad-noise", make)
''',
    "parse_level": '''
from bench.noise.degradations import GaussianDegradation

class Bad(GaussianDegradation):
    name = "bad-noise"
    def parse_level(self, text):
        return 1 / 0

@bench.hookimpl
def register_degradations(register):
    register("bad-noise", Bad)
''',
    "dataset": '''
@bench.hookimpl
def register_datasets(register):
    def make():
        raise OSError("disk on fire")
    register("bad-set", make)
''',
}
ARGS = {"metric": ("--metric", "bad-metric"), "degradation": ("-n", "bad-noise:0.1"),
        "parse_level": ("-n", "bad-noise:0.1"), "dataset": ("-d", "bad-set")}
SAYS = {"metric": "metric 'bad-metric' (plugin file:raising.py) failed: RuntimeError: no GPU for my metric",
        "degradation": "degradation 'bad-noise' (plugin file:raising.py) failed: KeyError: 'sigma table'",
        "parse_level": "degradation 'bad-noise' (plugin file:raising.py).parse_level failed: ZeroDivisionError",
        "dataset": "dataset 'bad-set' (plugin file:raising.py) failed: OSError: disk on fire"}


@pytest.mark.parametrize("kind", sorted(RAISING))
def test_a_plugin_factory_that_raises_is_one_line_naming_the_plugin(cli, store, write_plugin, kind):
    plugin = write_plugin("import bench\n" + RAISING[kind], "raising.py")
    flag, value = ARGS[kind]
    args = list(TINY)
    if flag in ("-d", "-n"):
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    refused(cli("run", *args, "--plugin", plugin, "--store", store), store, SAYS[kind])


def test_a_metric_returning_one_value_fails_its_cells_with_a_clear_message(cli, store, write_plugin):
    plugin = write_plugin('''
import bench

@bench.hookimpl
def register_metrics(register):
    register("mean-error", lambda: (lambda x_hat, x: (x_hat - x).abs().mean()), higher_is_better=False)
''', "one_value.py")
    result = cli("run", *TINY, "--metric", "mean-error", "--plugin", plugin, "--store", store)
    assert result.code != 0
    assert ("metric 'mean-error' (plugin file:one_value.py) returned a tensor of shape (); a metric returns "
            "one value per image (a tensor of shape (1,))") in result.err, result.err


def test_a_broken_plugin_file_is_reported_even_when_its_rows_are_unused(cli, store, write_plugin):
    plugin = write_plugin('''
import bench

@bench.hookimpl
def register_denoisers(register):
    raise ValueError("half-written plugin")
''', "unused.py")
    refused(cli("run", *TINY, "--plugin", plugin, "--store", store), store,
            "plugin", "unused.py failed to load: register_denoisers: ValueError: half-written plugin")
    listed = cli("list", "plugins", "--plugin", plugin)  # list shows it broken instead of refusing
    assert listed.code == 0 and "half-written plugin" in listed.out


def test_a_misspelt_hook_is_named_without_internal_module_names(cli, store, write_plugin):
    plugin = write_plugin('''
import bench

@bench.hookimpl
def register_denoiser(register):
    pass
''', "typo.py")
    result = cli("run", *TINY, "--plugin", plugin, "--store", store)
    refused(result, store, "unknown hook 'register_denoiser' (did you mean 'register_denoisers'?)")
    assert "denoise_bench_local" not in result.err and "<module" not in result.err
