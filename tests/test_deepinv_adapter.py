"""``deepinv:<ClassName>[k=v,...,weights=PATH]``: any deepinv denoiser as a row, or a clear refusal."""

from __future__ import annotations

import importlib.util
import sys

import deepinv
import pytest
import torch

import bench
from bench.config import RunConfig
from bench.grid.planning import build_grid
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.specs import parse_spec
from conftest import rows

SMALL_DNCNN = "in_channels=1,out_channels=1,depth=3,nf=8"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_set())


@pytest.fixture
def dncnn_weights(tmp_path):
    """A small gray DnCNN's checkpoint and the model it came from."""
    torch.manual_seed(0)
    model = deepinv.models.DnCNN(in_channels=1, out_channels=1, depth=3, nf=8, pretrained=None)
    path = tmp_path / "dncnn.pth"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def build(registry, text):
    return registry.build("denoisers", parse_spec(text))


def test_weights_load_into_the_named_class_and_the_adapter_adds_nothing(registry, dncnn_weights):
    path, reference = dncnn_weights
    adapter = build(registry, f"deepinv:DnCNN[{SMALL_DNCNN},weights={path}]").eval()
    assert isinstance(adapter.model, deepinv.models.DnCNN)
    y = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.1, 0.2])
    with torch.no_grad():
        torch.testing.assert_close(adapter(y, sigma), reference(y, sigma), rtol=0, atol=0)


def test_checkpoints_nested_under_state_dict_load_too(registry, dncnn_weights, tmp_path):
    path, reference = dncnn_weights
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": reference.state_dict()}, nested)
    adapter = build(registry, f"deepinv:DnCNN[{SMALL_DNCNN},weights={nested}]")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(adapter.model.state_dict()[name], tensor), name


def test_sigma_scale_reaches_threshold_style_models(registry):
    """TVDenoiser's second argument is its threshold: the row passes sigma_scale * sigma."""
    adapter = build(registry, "deepinv:TVDenoiser[sigma_scale=0.5,n_it_max=50]")
    y = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(2))
    expected = deepinv.models.TVDenoiser(n_it_max=50)(y, 0.05)
    torch.testing.assert_close(adapter(y, torch.tensor([0.1])), expected)


def test_a_deepinv_row_runs_through_the_cli(cli, store, dncnn_weights):
    path, _ = dncnn_weights
    spec = f"deepinv:DnCNN[{SMALL_DNCNN},weights={path}]"
    result = cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:25/255", "-n", "poisson:16",
                 "-m", spec, "-m", "deepinv:MedianFilter[kernel_size=3]", "--limit-images", "2",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err
    cells = set(rows(store, "SELECT degradation, denoiser, status FROM cells"))
    label = parse_spec(spec).label
    poisson_label = parse_spec(spec[:-1] + ",vst=anscombe]").label
    assert cells == {("gaussian", "deepinv:MedianFilter[kernel_size=3]", "done"),
                     ("gaussian", label, "done"),
                     ("poisson", "deepinv:MedianFilter[kernel_size=3,vst=anscombe]", "done"),
                     ("poisson", poisson_label, "done")}


def test_missing_weights_or_packages_are_skipped_with_the_reason(cli, store, monkeypatch):
    result = cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:25/255", "-m", "deepinv:DRUNet",
                 "-m", "noisy", "--limit-images", "1", "--store", store, "--quiet")
    assert result.code == 0, result.err
    assert dict(rows(store, "SELECT denoiser, status FROM cells")) == {"deepinv:DRUNet": "skipped",
                                                                       "noisy": "done"}
    error, = rows(store, "SELECT error FROM cells WHERE denoiser = 'deepinv:DRUNet'")[0]
    assert "needs weights: pass weights=PATH" in error


@pytest.mark.skipif(importlib.util.find_spec("ptwt") is not None, reason="ptwt is installed here")
def test_wavelet_denoiser_without_ptwt_is_skipped_before_it_runs(registry):
    with pytest.raises(bench.Skip, match="needs the ptwt package"):
        build(registry, "deepinv:WaveletDenoiser")


def test_an_import_error_while_building_is_a_skip(registry, monkeypatch):
    """deepinv's BM3D imports the bm3d package in its constructor (as SwinIR once did timm)."""
    monkeypatch.setitem(sys.modules, "bm3d", None)
    with pytest.raises(bench.Skip, match="needs a missing package"):
        build(registry, "deepinv:BM3D")


@pytest.mark.parametrize("spec, message", [
    ("deepinv:DRUNett", "unknown deepinv denoiser 'DRUNett' (did you mean 'DRUNet'?)"),
    ("deepinv:MPRNet", "not a denoiser built from key=value parameters and called as (x, sigma)"),
    ("deepinv:AnscombeDenoiser", "not a denoiser built from key=value parameters"),
    ("deepinv:DRUNet[channels=1,pretrained=none]", "bad parameters (got an unexpected keyword argument 'channels')"),
    ("deepinv:DnCNN[depth=three,pretrained=none]", "failed:"),
    ("deepinv:DnCNN[weights=/no/such/file.pth]", "weights file not found: /no/such/file.pth"),
    ("deepinv:DnCNN[sigma_scale=0,pretrained=none]", "sigma_scale must be a number > 0"),
])
def test_bad_input_exits_2_with_one_line_before_any_cell(cli, store, spec, message):
    result = cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:25/255", "-m", "noisy",
                 "-m", spec, "--store", store, "--quiet")
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not store.exists(), "nothing may be written before a usage error"


def test_weights_that_do_not_match_name_the_difference(cli, store, dncnn_weights):
    path, _ = dncnn_weights
    result = cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:25/255",
                 "-m", f"deepinv:DnCNN[in_channels=3,out_channels=3,depth=3,nf=8,weights={path}]",
                 "--store", store, "--quiet")
    assert result.code == 2 and not store.exists()
    assert f"weights file {path} does not match deepinv.models.DnCNN" in result.err
    assert "in_conv.weight: file (8, 1, 3, 3) vs model (8, 3, 3, 3)" in result.err
    assert len(result.err.strip().splitlines()) == 1


class NotATensor:
    """Something a checkpoint may pickle that weights_only loading refuses."""


@pytest.mark.parametrize("content", ["text", "pickled object"])
def test_unreadable_checkpoints_are_usage_errors(registry, tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "text":
        path.write_text("not a checkpoint")
    else:
        torch.save({"state_dict": {}, "meta": NotATensor()}, path)
    with pytest.raises(bench.UsageError, match=r"cannot read weights file .*weights_only=True"):
        build(registry, f"deepinv:DnCNN[weights={path}]")


def test_ram_takes_poisson_natively_and_gaussian_through_sigma(registry):
    """deepinv's RAM has its own entry: on Poisson data it gets the peak (no VST), else sigma."""
    entry = registry.get("denoisers", "deepinv:RAM")
    assert entry.metadata["native_poisson"] and entry.name == "deepinv:RAM"
    config = RunConfig(datasets=["skimage-gray[crop=32]"], noise=["gaussian:0.1", "poisson:8"],
                       denoisers=["deepinv:RAM[pretrained=none]", "nlm"], limit_images=1)
    grid = build_grid(config, registry)
    modes = {(c.degradation, c.denoiser): c.mode for c in grid.cells}
    assert modes == {("gaussian", "deepinv:RAM[pretrained=none]"): "sigma",
                     ("poisson", "deepinv:RAM[pretrained=none]"): "peak",
                     ("gaussian", "nlm"): "sigma",
                     ("poisson", "nlm[vst=anscombe]"): "anscombe"}
    assert hasattr(grid.denoisers["deepinv:RAM[pretrained=none]"].model, "denoise_poisson")


POISSON_AND_GAUSSIAN_PLUGIN = '''
import torch
import bench


class Both:
    """Returns its noise argument as an image, so the stored PSNR says what it received."""

    def __call__(self, y, sigma):
        return torch.zeros_like(y) + sigma.view(-1, 1, 1, 1)

    def denoise_poisson(self, y, peak):
        return torch.zeros_like(y) + 1.0 / peak.view(-1, 1, 1, 1)


@bench.hookimpl
def register_denoisers(register):
    register("both", Both, sigma_aware=True, native_poisson=True)
'''


def test_native_poisson_denoisers_get_the_peak_by_name(cli, store, write_plugin):
    """The runner calls ``denoise_poisson(y, peak)`` when a native-Poisson denoiser has one."""
    plugin = write_plugin(POISSON_AND_GAUSSIAN_PLUGIN)
    result = cli("run", "--plugin", plugin, "-d", "skimage-gray[crop=32]", "-n", "poisson:4",
                 "-n", "gaussian:0.5", "-m", "both", "--metric", "mse", "--limit-images", "1",
                 "--store", store, "--quiet")
    assert result.code == 0, result.err
    from bench.data.datasets import skimage_gray

    clean = skimage_gray(crop=32).images[0]
    got = dict(rows(store, "SELECT c.degradation, s.value FROM scores s JOIN cells c ON c.key = s.cell_key"))
    for degradation, value in (("poisson", 0.25), ("gaussian", 0.5)):
        expected = (clean.double() - value).pow(2).mean().item()
        assert got[degradation] == pytest.approx(expected, rel=1e-6), degradation


def test_replacing_the_weights_file_changes_the_cell_key(tmp_path):
    """A new checkpoint under the same path must not reuse the old results."""
    from bench.config import RunConfig
    from bench.grid.planning import build_grid
    from bench.plugins import get_plugin_set
    from bench.registry import Registry

    weights = tmp_path / "dncnn.pth"
    registry = Registry(get_plugin_set())

    def keys(seed: int) -> list[str]:
        model = deepinv.models.DnCNN(in_channels=1, out_channels=1, depth=2, pretrained=None)
        torch.manual_seed(seed)
        for p in model.parameters():
            torch.nn.init.normal_(p)
        torch.save(model.state_dict(), weights)
        config = RunConfig(datasets=["skimage-gray[crop=32]"], noise=["gaussian:0.1"], limit_images=1,
                           denoisers=[f"deepinv:DnCNN[in_channels=1,out_channels=1,depth=2,weights={weights}]"])
        return [cell.key for cell in build_grid(config, registry).cells]

    assert keys(0) != keys(1)
