"""DnCNN from its authors' trained models: ``dncnn-s`` (one per level), ``dncnn-b`` (blind), ``fdncnn``.

The MatConvNet files of the DnCNN repository (``bench/data/dncnn-models.json``:
URL and SHA-256 per file) are read by ``bench_plugins.matconvnet``. DnCNN-S and
DnCNN-B predict the noise (x = y - net(y)); deepinv's DnCNN adds its last layer to
the input, so that layer is negated. FDnCNN takes the noise-level map as a second
input channel at full size (image first) and outputs the denoised image itself.
Gray or colour models are chosen from the data's channels (``color=`` still picks
one outside a run). A level with no model of its own is a skip with the reason,
never the nearest model.
"""

from __future__ import annotations

import torch

import bench
from bench_plugins.matconvnet import AuthorsModels, color_choice, conv_stack

MANIFEST = "dncnn-models"
#: DnCNN-S models exist for these gray noise levels (sigma on the 0-255 scale) ...
SPECIFIC_LEVELS = tuple(range(10, 80, 5))
#: ... and CDnCNN-S models for these colour levels.
COLOR_LEVELS = (5, 10, 15, 25, 35, 50)
BLIND = {False: "model/GD_Gray_Blind.mat", True: "model/GD_Color_Blind.mat"}
#: How close sigma * 255 must be to a model's level to use it.
LEVEL_TOLERANCE = 1e-6


def specific_file(level_255: int, color: bool = False) -> str:
    return f"model/specifics_color/color_sigma={level_255:02d}.mat" if color else \
        f"model/specifics/sigma={level_255}.mat"


def flexible_file(color: bool, clip: bool) -> str:
    return f"model/FDnCNN_{'Clip_' if clip else ''}{'color' if color else 'gray'}.mat"


def convert_residual(layers) -> dict:
    """State dict for deepinv's DnCNN (last layer negated: deepinv adds it to y), depth, channels."""
    (w_in, b_in), *middle, (w_out, b_out) = conv_stack(layers)
    state = {"in_conv.weight": w_in, "in_conv.bias": b_in,
             "out_conv.weight": -w_out, "out_conv.bias": -b_out}
    for i, (w, b) in enumerate(middle):
        state[f"conv_list.{i}.weight"], state[f"conv_list.{i}.bias"] = w, b
    return {"state": state, "depth": len(middle) + 2, "channels": w_in.shape[1]}


def build_residual(saved: dict) -> torch.nn.Module:
    from deepinv.models import DnCNN

    channels = int(saved["channels"])
    model = DnCNN(in_channels=channels, out_channels=channels, depth=int(saved["depth"]), pretrained=None)
    model.load_state_dict(saved["state"])
    return model


def convert_flexible(layers) -> dict:
    """State dict of ``MapDnCNN``: the conv stack as the file has it."""
    convs = conv_stack(layers, structural=("concat",))
    state = {}
    for i, (w, b) in enumerate(convs):
        state[f"convs.{i}.weight"], state[f"convs.{i}.bias"] = w, b
    return {"state": state, "depth": len(convs), "channels": convs[-1][0].shape[0]}


class MapDnCNN(torch.nn.Module):
    """FDnCNN: DnCNN on [image, noise-level map] (3x3 convs + ReLU), the output is the estimate itself."""

    def __init__(self, channels: int, depth: int, width: int = 64):
        super().__init__()
        sizes = [channels + 1] + [width] * (depth - 1) + [channels]
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(a, b, 3, padding=1) for a, b in zip(sizes, sizes[1:]))

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``sigma``: one level per image (B,) or a scalar, or a noise-level map (B, 1, H, W)."""
        level = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
        level = level if level.dim() == 4 else level.reshape(-1, 1, 1, 1)
        x = torch.cat([y, level.expand(y.shape[0], 1, *y.shape[2:])], dim=1)
        for conv in self.convs[:-1]:
            x = torch.relu_(conv(x))  # in place, as deepinv's DnCNN: a copy per layer cost FDnCNN ~10%
        return self.convs[-1](x)


def build_flexible(saved: dict) -> torch.nn.Module:
    model = MapDnCNN(int(saved["channels"]), int(saved["depth"]))
    model.load_state_dict(saved["state"])
    return model


def residual_models(name: str, files: list[str]) -> AuthorsModels:
    return AuthorsModels(name, MANIFEST, files, convert_residual, build_residual)


SPECIFIC = residual_models("dncnn-s", [specific_file(level) for level in SPECIFIC_LEVELS]
                           + [specific_file(level, color=True) for level in COLOR_LEVELS])
BLIND_MODELS = residual_models("dncnn-b", list(BLIND.values()))
FLEXIBLE = AuthorsModels("fdncnn", MANIFEST, [flexible_file(color, clip) for clip in (False, True)
                                              for color in (False, True)], convert_flexible, build_flexible)


def dncnn_s(degradation: str = "gaussian", level: float | None = None, channels: int | None = None,
            color: bool | None = None):
    """DnCNN-S (gray) or CDnCNN-S (colour): the authors' model trained for exactly this noise level."""
    if level is None:
        raise bench.UsageError("dncnn-s picks its model by the run's noise level; "
                               "outside a run give it, e.g. dncnn-s[level=25/255]")
    use_color = color_choice("dncnn-s", channels, color)
    if degradation != "gaussian":
        raise bench.Skip(f"dncnn-s has models for Gaussian noise only, not {degradation}")
    levels = COLOR_LEVELS if use_color else SPECIFIC_LEVELS
    level_255 = level * 255
    match = [n for n in levels if abs(level_255 - n) < LEVEL_TOLERANCE]
    if not match:
        raise bench.Skip(f"dncnn-s has no model for sigma = {level_255:.4g}/255 on {'colour' if use_color else 'gray'} "
                         f"data (the authors trained sigma = {', '.join(map(str, levels))})")
    return SPECIFIC.load(specific_file(match[0], use_color))


def dncnn_b(color: bool | None = None, channels: int | None = None):
    """DnCNN-B: the authors' blind model (gray; CDnCNN-B on colour data, or color=true)."""
    return BLIND_MODELS.load(BLIND[color_choice("dncnn-b", channels, color)])


def fdncnn(color: bool | None = None, clip: bool = False, channels: int | None = None):
    """FDnCNN: told the noise level by a map; clip=true for the models trained on inputs clipped to [0, 1]."""
    return FLEXIBLE.load(flexible_file(color_choice("fdncnn", channels, color), bool(clip)))


@bench.hookimpl
def register_denoisers(register):
    register("dncnn-s", dncnn_s, per_level=True, per_channels=True, published_as="DnCNN", fetch=SPECIFIC,
             description="DnCNN-S, the authors' model for the run's sigma (gray 10, 15, ..., 75; "
                         "colour CDnCNN-S 5, 10, 15, 25, 35, 50 /255)")
    register("dncnn-b", dncnn_b, per_channels=True, published_as="DnCNN-B", fetch=BLIND_MODELS,
             description="DnCNN-B, the authors' blind model (gray, or CDnCNN-B on colour data)")
    register("fdncnn", fdncnn, sigma_aware=True, per_channels=True, noise_map=True, published_as="FDnCNN",
             fetch=FLEXIBLE,
             description="FDnCNN, the authors' model told sigma by a noise-level map (clip=true: "
                         "trained on clipped inputs)")
