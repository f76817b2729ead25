"""How the classical defaults were chosen: PSNR sweeps on held-out images.

The evaluation set is ``skimage-gray``; the sweeps use the five ``skimage-color``
images converted to gray (centre 256x256 crops), which it does not contain.
For each parameter and Gaussian sigma in 15, 25, 50 (/255) the table gives the
mean PSNR of each candidate value; the default is the value best on average.

    /work/venv/bin/python benchmarks/classical_defaults.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from skimage.color import rgb2gray

sys.path.insert(0, str(Path(__file__).parent))
from results_file import update_section  # noqa: E402

from bench.data.datasets import skimage_color  # noqa: E402
from bench.grid.metrics import psnr  # noqa: E402
from bench_plugins.classical import TV, Bilateral, GaussianBlur, NLMeans, Wavelet  # noqa: E402

SIGMAS_255 = (15, 25, 50)


class WidthRule(GaussianBlur):
    """Gaussian blur with width = 0.3 + k sigma, for the width sweep."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def kwargs(self, image, sigma):
        return {**super().kwargs(image, sigma), "width": 0.3 + self.slope * sigma}


#: (method, parameter, candidates, factory of one candidate)
SWEEPS = [
    ("tv", "weight_factor", (0.5, 0.7, 0.9, 1.1, 1.4, 1.8), lambda v: TV(weight_factor=v)),
    ("bilateral", "sigma_color_factor", (1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
     lambda v: Bilateral(sigma_color_factor=v)),
    ("bilateral", "sigma_spatial", (1.0, 1.4, 1.8, 2.5, 3.0), lambda v: Bilateral(sigma_spatial=v)),
    ("nlm", "h_factor", (0.6, 0.7, 0.8, 0.9, 1.0), lambda v: NLMeans(h_factor=v)),
    ("wavelet", "wavelet", ("db1", "db2", "db4", "sym8", "coif1"), lambda v: Wavelet(wavelet=v)),
    ("gaussian-filter", "width slope k (0.3 + k sigma)", (4.0, 6.0, 8.0), WidthRule),
]


def held_out_images() -> torch.Tensor:
    images = skimage_color(crop=256).images
    gray = [torch.from_numpy(rgb2gray(im.permute(1, 2, 0).numpy()).astype(np.float32)) for im in images]
    return torch.stack(gray)[:, None]


def sweep() -> pd.DataFrame:
    clean = held_out_images()
    rng = torch.Generator().manual_seed(0)
    rows = []
    for s255 in SIGMAS_255:
        sigma = s255 / 255
        noisy = clean + sigma * torch.randn(clean.shape, generator=rng)
        sigmas = torch.full((len(clean),), sigma)
        for method, parameter, candidates, factory in SWEEPS:
            for value in candidates:
                out = factory(value)(noisy, sigmas).clamp(0, 1)
                rows.append({"method": method, "parameter": parameter, "value": str(value),
                             "sigma_255": s255, "psnr": psnr(out, clean).mean().item()})
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    table = sweep()
    wide = table.pivot_table(index=["method", "parameter", "value"], columns="sigma_255",
                             values="psnr", sort=False)
    wide.columns = [f"PSNR @ {c}/255" for c in wide.columns]
    wide["mean"] = wide.mean(axis=1)
    wide = wide.sort_index()
    body = ("## Classical defaults: held-out sweeps (`benchmarks/classical_defaults.py`)\n\n"
            "Mean PSNR (dB) over the five skimage colour images in gray, centre 256x256, "
            "Gaussian noise, one parameter varied at a time (the others at their defaults); "
            "the best value in the `mean` column chose the default.\n\n"
            + wide.reset_index().to_markdown(index=False, floatfmt=".2f"))
    print(body)
    update_section("classical-defaults", body)


if __name__ == "__main__":
    main()
