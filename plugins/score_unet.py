"""A noise-conditional U-Net built for sampling, with EDM's preconditioning (Karras et al. 2022).

D(x, s) = m + c_skip(s) (x - m) + c_out(s) F(c_in(s) (x - m), c_noise(s)), with
m = 0.5 (the centre of [0, 1]), c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2),
c_in = 1 / sqrt(s^2 + sd^2), c_noise = log(s) / 4 and sd = SIGMA_DATA. The network F
sees unit-variance inputs and has a unit-variance target at every level, from
s = 0.01 to the largest distance between two training images (about 20 on
MNIST): without this scaling one MSE cannot train levels three decades apart.
Training weights each image's squared error by ``loss_weight(s) = 1 / c_out^2``,
EDM's lambda(s), so every level counts alike.

F: residual blocks (GroupNorm, SiLU, 3x3 convs) at 28, 14 and 7 pixels, the
noise level entering every block as a per-channel scale and shift (FiLM) from
Fourier features of c_noise; skip connections join the two halves.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: RMS of [0, 1] images about their centre 0.5 (MNIST-like digits, mostly black, sit near it).
SIGMA_DATA = 0.5
CENTRE = 0.5
#: Fourier frequencies of the noise embedding.
EMBED_FREQUENCIES = 16


def groups(channels: int) -> int:
    return min(8, channels)


class NoiseEmbedding(nn.Module):
    """c_noise -> sin/cos at fixed log-spaced frequencies -> a two-layer MLP."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("frequencies", torch.exp(torch.linspace(0, math.log(64), EMBED_FREQUENCIES)),
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * EMBED_FREQUENCIES, width), nn.SiLU(), nn.Linear(width, width),
                                 nn.SiLU())

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        angles = c_noise[:, None] * self.frequencies[None]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class ResBlock(nn.Module):
    """x + conv(act(FiLM(norm(conv(act(norm(x))))))), with a 1x1 shortcut when widths differ."""

    def __init__(self, cin: int, cout: int, embed: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(embed, 2 * cout)
        self.norm2 = nn.GroupNorm(groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class UNet(nn.Module):
    """F(x, c_noise): three resolutions (full, 1/2, 1/4), ``width`` x (1, 2, 2) channels."""

    def __init__(self, channels: int = 1, width: int = 32, mult: tuple[int, ...] = (1, 2, 2)):
        super().__init__()
        embed = 4 * width
        self.embed = NoiseEmbedding(embed)
        widths = [width * m for m in mult]
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = widths[0]
        for i, w in enumerate(widths):
            self.down.append(ResBlock(cin, w, embed))
            cin = w
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.middle = ResBlock(cin, cin, embed)
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(ResBlock(cin + w, w, embed))
            cin = w
        self.norm_out = nn.GroupNorm(groups(cin), cin)
        self.conv_out = nn.Conv2d(cin, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, emb)
        for block in self.up:
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class EDMDenoiser(nn.Module):
    """D(x, sigma) of a network F under EDM's preconditioning (module docstring).

    ``sigma_min`` and ``sigma_max`` (buffers, so they travel with the weights) hold
    the range it was trained on; samplers with ``sigma_max=model`` start there.
    """

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net, self.sigma_data = net, sigma_data
        self.register_buffer("sigma_min", torch.tensor(float("nan")))
        self.register_buffer("sigma_max", torch.tensor(float("nan")))

    def record_noise_range(self, low: float, high: float) -> None:
        """Called by the training loop with the range of levels it trains on."""
        self.sigma_min.fill_(low)
        self.sigma_max.fill_(high)

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """EDM's lambda(sigma) = 1 / c_out^2 = (sigma^2 + sd^2) / (sigma sd)^2."""
        return (sigma ** 2 + self.sigma_data ** 2) / (sigma * self.sigma_data) ** 2

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        s = sigma.view(-1, 1, 1, 1)
        total = s ** 2 + self.sigma_data ** 2
        c_skip = self.sigma_data ** 2 / total
        c_out = s * self.sigma_data / total.sqrt()
        c_in = 1 / total.sqrt()
        centred = x - CENTRE
        out = self.net(c_in * centred, sigma.log() / 4)
        return CENTRE + c_skip * centred + c_out * out


def score_unet(channels: int, width: int = 24) -> EDMDenoiser:
    return EDMDenoiser(UNet(channels, width))
