"""FFDNet from its authors' trained models (``bench/data/ffdnet-models.json``), as ``deepinv.models.FFDNet``.

The files' layers: ``SubP`` (2x2 pixel unshuffle), ``concat`` (the noise-level map,
one channel at the reduced size), 3x3 convs with ReLU (gray 15 of width 64, colour 12
of width 96), ``SubP`` back; the output is the estimate itself. MATLAB is
column-major, so the four sub-pixel channels of a plane come with the row offset
fastest, (0,0), (1,0), (0,1), (1,1): PyTorch's pixel-unshuffle channels [0, 2, 1, 3].
deepinv unshuffles the map too (four equal channels), so the map's weights are
split over those four: the same sum, borders included. Odd sizes are padded by
repeating the last row or column and cropped back, as the authors' demos do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import bench
from bench_plugins.matconvnet import AuthorsModels, color_choice, conv_stack

MANIFEST = "ffdnet-models"
#: The authors' sub-pixel order -> PyTorch's (and back: the permutation is its own inverse).
SUBPIXEL_ORDER = (0, 2, 1, 3)


def model_file(color: bool, clip: bool) -> str:
    return f"models/FFDNet_{'Clip_' if clip else ''}{'color' if color else 'gray'}.mat"


def reorder(channels: int) -> list[int]:
    """Authors' channel index for each of PyTorch's ``channels * 4`` sub-pixel channels."""
    return [4 * plane + SUBPIXEL_ORDER[k] for plane in range(channels) for k in range(4)]


def convert(layers) -> dict:
    """State dict for deepinv's FFDNet, its depth, width and image channels."""
    kinds = [kind for kind, _, _ in layers]
    if kinds.count("SubP") != 2 or "concat" not in kinds:
        raise ValueError("expected two SubP layers and a concat (FFDNet's layout)")
    (w_in, b_in), *middle, (w_out, b_out) = conv_stack(layers, structural=("SubP", "concat"))
    channels = w_out.shape[0] // 4
    if w_in.shape[1] != 4 * channels + 1:
        raise ValueError(f"first conv takes {w_in.shape[1]} channels; expected {4 * channels + 1}")
    order = reorder(channels)
    level_map = w_in[:, -1:].expand(-1, 4, -1, -1) / 4
    state = {"blocks.0.0.weight": torch.cat([w_in[:, order], level_map], dim=1), "blocks.0.0.bias": b_in,
             f"blocks.{len(middle) + 1}.weight": w_out[order], f"blocks.{len(middle) + 1}.bias": b_out[order]}
    for i, (w, b) in enumerate(middle, start=1):
        state[f"blocks.{i}.0.weight"], state[f"blocks.{i}.0.bias"] = w, b
    return {"state": state, "depth": len(middle) + 2, "width": w_in.shape[0], "channels": channels}


class PaddedFFDNet(torch.nn.Module):
    """deepinv's FFDNet, odd heights and widths padded by the last row / column and cropped back."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``sigma``: one level per image (B,) or a scalar, or a noise-level map (B, 1, H, W)."""
        height, width = y.shape[-2:]
        pad = (0, width % 2, 0, height % 2)
        padded = F.pad(y, pad, mode="replicate")
        sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
        if sigma.dim() == 4:
            return self.with_map(padded, F.pad(sigma, pad, mode="replicate"))[..., :height, :width]
        return self.network(padded, sigma.reshape(-1).expand(y.shape[0]))[..., :height, :width]

    def with_map(self, y: torch.Tensor, level_map: torch.Tensor) -> torch.Tensor:
        """The network told a map that varies in space: reduced to half size by antialiased bicubic
        resampling, as the authors' ``Demo_AWGN_spatially_variant_noise.m`` does with ``imresize``,
        and handed to each of the four sub-pixel map channels (their weights sum to the authors')."""
        network = self.network
        reduced = F.interpolate(level_map, scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False)
        x = torch.cat([network.downsampler(y), reduced.expand(-1, 4, -1, -1)], dim=1)
        return network.upsampler(network.blocks(x))


def build(saved: dict) -> torch.nn.Module:
    from deepinv.models import FFDNet

    network = FFDNet(n_conv_layers=int(saved["depth"]), nf=int(saved["width"]), img_channels=int(saved["channels"]),
                     orthogonal_init=False, pretrained=None)
    network.load_state_dict(saved["state"])
    return PaddedFFDNet(network)


MODELS = AuthorsModels("ffdnet", MANIFEST, [model_file(color, clip) for clip in (False, True)
                                            for color in (False, True)], convert, build)


def ffdnet(color: bool | None = None, clip: bool = False, channels: int | None = None):
    """FFDNet: told the noise level by a map; clip=true for the models trained on inputs clipped to [0, 1]."""
    return MODELS.load(model_file(color_choice("ffdnet", channels, color), bool(clip)))


@bench.hookimpl
def register_denoisers(register):
    register("ffdnet", ffdnet, sigma_aware=True, per_channels=True, noise_map=True, published_as="FFDNet",
             fetch=MODELS,
             description="FFDNet, the authors' model told sigma by a noise-level map (gray or colour "
                         "from the data; clip=true: trained on clipped inputs)")
