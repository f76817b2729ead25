"""Every authors' MatConvNet row runs the same way: batch norm folded into the conv, channels-last on the CPU.

References: PyTorch's own conv + BatchNorm2d (eval) for the folding, the plain
network (default layout) for the channels-last call; both must agree to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench_plugins import dncnn, ffdnet, matconvnet
from conftest import TEST_DATA

MODELS = TEST_DATA / "models"


def test_batch_norm_folded_into_the_conv_is_conv_then_batch_norm():
    rng = np.random.default_rng(0)
    c_in, c_out = 3, 5
    # As h5py reads MatConvNet: conv (C_out, C_in, W, H); bnorm mult, shift, moments (2, C): mean then std.
    weight, bias = rng.normal(size=(c_out, c_in, 3, 3)), rng.normal(size=c_out)
    mult, shift = rng.uniform(0.5, 2, size=c_out), rng.normal(size=c_out)
    mean, std = rng.normal(size=c_out), rng.uniform(0.2, 3, size=c_out)
    last = rng.normal(size=(c_out, 3, 3))  # a last layer with one output channel reads (C_in, W, H)
    layers = [("conv", [weight, bias], {"pad": [1] * 4, "stride": [1, 1]}),
              ("bnorm", [mult, shift, np.stack([mean, std])], {}), ("relu", [], {}),
              ("conv", [last, np.zeros(1)], {})]
    (w1, b1), (w2, b2) = matconvnet.conv_stack(layers)

    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1).double()
    norm = torch.nn.BatchNorm2d(c_out, eps=0.0).double().eval()  # MatConvNet's moments hold the std itself
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight.transpose(0, 1, 3, 2)))
        conv.bias.copy_(torch.from_numpy(bias))
        norm.weight.copy_(torch.from_numpy(mult))
        norm.bias.copy_(torch.from_numpy(shift))
        norm.running_mean.copy_(torch.from_numpy(mean))
        norm.running_var.copy_(torch.from_numpy(std ** 2))
        x = torch.rand(2, c_in, 11, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        reference = torch.nn.functional.conv2d(torch.relu(norm(conv(x))), conv_weight_of(last), padding=1)
        folded = torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(x.float(), w1, b1, padding=1)),
                                            w2, b2, padding=1)
    torch.testing.assert_close(folded.double(), reference, atol=1e-5, rtol=1e-5)


def conv_weight_of(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.transpose(0, 2, 1)[None]).double()


def authors_network(copy: str, convert, build) -> matconvnet.AuthorsNetwork:
    return matconvnet.AuthorsNetwork(build(convert(matconvnet.read_layers(MODELS / copy))).eval(), "sha")


@pytest.mark.parametrize("copy,convert,build,channels", [
    ("FFDNet_color.mat", ffdnet.convert, ffdnet.build, 3),
    ("FDnCNN_gray.mat", dncnn.convert_flexible, dncnn.build_flexible, 1),
    ("GD_Color_Blind.mat", dncnn.convert_residual, dncnn.build_residual, 3)])
def test_channels_last_on_the_cpu_gives_the_plain_networks_output(copy, convert, build, channels):
    row = authors_network(copy, convert, build)
    y = torch.rand(2, channels, 17, 14, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.05, 0.2])
    with torch.no_grad():
        plain = row.network(y, sigma)  # weights still as loaded
        got = row(y, sigma)
    conv = next(m for m in row.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    assert got.is_contiguous()
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=0)


def test_other_devices_get_the_weights_back_in_the_default_layout():
    row = authors_network("FDnCNN_gray.mat", dncnn.convert_flexible, dncnn.build_flexible)
    y = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        row(y, torch.tensor([0.1]))
        row.to("meta")
        out = row(y.to("meta"), torch.tensor([0.1], device="meta"))
    assert out.shape == y.shape
    assert all(m.weight.is_contiguous() for m in row.modules() if isinstance(m, torch.nn.Conv2d))
