"""``leaderboard --published``: the papers' numbers beside matching rows, and the difference."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.reports import published
from conftest import rows

#: DnCNN paper, Table 3: BM3D on Set12 (also in bench/data/published-awgn.csv).
BM3D_SET12 = {15: 32.37, 25: 29.97, 50: 26.72}

PLUGIN = '''
import bench
from bench_plugins.basic_denoisers import GaussianFilter

@bench.hookimpl
def register_denoisers(register):
    register("my-bm3d", GaussianFilter, sigma_aware=True, published_as="BM3D",
             description="stands in for BM3D in this test (a third party declaring its counterpart)")
'''


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_set())


def test_built_in_rows_declare_their_counterparts(registry):
    assert published.counterpart(registry, "bm3d") == "BM3D"
    assert published.counterpart(registry, "dncnn-s") == "DnCNN"
    assert published.counterpart(registry, "dncnn-b[color=true]") == "DnCNN-B"
    assert published.counterpart(registry, "ffdnet") == "FFDNet"
    assert published.counterpart(registry, "fdncnn") == "FDnCNN"
    # Release weights of the papers (plugins/sota.py): the table's method names.
    assert [published.counterpart(registry, r) for r in ("drunet-dpir", "swinir", "scunet", "restormer")] == \
        ["DRUNet", "SwinIR", "SCUNet", "Restormer"]
    # deepinv's downloads are deepinv's training; tuned or Clip rows are variants.
    assert published.counterpart(registry, "deepinv:DRUNet[pretrained=download]") is None
    assert published.counterpart(registry, "deepinv:DRUNet") is None
    assert published.counterpart(registry, "bm3d[profile=refilter]") is None
    assert published.counterpart(registry, "ffdnet[clip=true]") is None
    assert published.counterpart(registry, "deepinv:DRUNet[pretrained=none]") is None
    assert published.counterpart(registry, "nlm") is None
    assert published.counterpart(registry, "gone-plugin[x=1]") is None


def long_table(store, cli, *extra) -> pd.DataFrame:
    result = cli("leaderboard", "--store", store, "--format", "csv", "--metric", "psnr", *extra)
    assert result.code == 0, result.err
    return pd.read_csv(io.StringIO(result.out))


def test_published_values_and_deltas_on_set12(cli, mirror, store, write_plugin):
    plugin = write_plugin(PLUGIN)
    result = cli("run", "-d", "set12", "-n", "gaussian:15/255,25/255,50/255", "-m", "my-bm3d", "-m", "noisy",
                 "--plugin", plugin, "--metric", "psnr", "--protocol", "paper", "--store", store, "--quiet")
    assert result.code == 0, result.err
    table = long_table(store, cli, "--published", "--plugin", plugin)
    means = dict(rows(store, "SELECT round(c.level * 255), avg(s.value) FROM scores s JOIN cells c "
                             "ON c.key = s.cell_key WHERE c.denoiser = 'my-bm3d' GROUP BY c.level"))
    mine = table[table["denoiser"] == "my-bm3d"].assign(sigma=lambda t: (t["level"] * 255).round())
    mine = mine.set_index("sigma")
    for sigma, value in BM3D_SET12.items():
        assert mine.loc[sigma, "published"] == value
        assert mine.loc[sigma, "delta"] == pytest.approx(means[sigma] - value, abs=1e-9)
        assert "DnCNN" in mine.loc[sigma, "source"]
    assert table[table["denoiser"] == "noisy"]["published"].isna().all()
    # The terminal table shows the columns too (without the long source text).
    shown = cli("leaderboard", "--store", store, "--published", "--plugin", plugin)
    header = shown.out.splitlines()[0].split()
    assert "published" in header and "delta" in header and "source" not in header
    assert "32.37" in shown.out


def test_a_users_table_adds_and_wins(cli, mirror, store, write_plugin, tmp_path):
    plugin = write_plugin(PLUGIN)
    assert cli("run", "-d", "set12", "-n", "gaussian:25/255", "-m", "my-bm3d", "-m", "noisy", "--plugin", plugin,
               "--metric", "psnr", "--protocol", "paper", "--store", store, "--quiet").code == 0
    mine = tmp_path / "mine.csv"
    mine.write_text("dataset,channels,sigma_255,method,psnr,ssim,source\n"
                    "set12,1,25,BM3D,30.00,,my rerun\n")
    table = long_table(store, cli, "--published", mine, "--plugin", plugin).set_index("denoiser")
    assert table.loc["my-bm3d", "published"] == 30.00 and table.loc["my-bm3d", "source"] == "my rerun"


def test_part_of_a_set_is_not_compared(cli, mirror, store, write_plugin):
    plugin = write_plugin(PLUGIN)
    assert cli("run", "-d", "set12", "--limit-images", "3", "-n", "gaussian:25/255", "-m", "my-bm3d",
               "--plugin", plugin, "--metric", "psnr", "--store", store, "--quiet").code == 0
    table = long_table(store, cli, "--published", "--plugin", plugin)
    assert table["published"].isna().all()


def test_aliases_colour_bm3d_and_gray_urban100(registry):
    table = pd.DataFrame({
        "metric": ["psnr", "psnr", "ssim", "psnr"],
        "dataset": ["cbsd68", "urban100[gray=1]", "bsd68", "bsd68"],
        "noise": ["gaussian", "gaussian", "gaussian", "poisson"],
        "level": [25 / 255, 50 / 255, 15 / 255, 25 / 255],
        "denoiser": ["bm3d", "bm3d", "bm3d", "bm3d"],
        "n": [68, 100, 68, 68],
        "mean": [30.5, 26.0, 0.87, 20.0],
        "protocol": "paper"})
    out = published.add_published(table, published.references(), registry)
    # By hand from bench/data/published-awgn.csv: CBM3D 30.71 (DPIR Table 3), BM3D urban100-gray
    # 25.95 (DPIR Table 2), BM3D BSD68 SSIM 0.8722 (DnCNN README); Poisson rows have no reference.
    assert out["published"].tolist()[:3] == [30.71, 25.95, 0.8722]
    assert out["delta"].round(6).tolist()[:3] == [-0.21, 0.05, -0.0022]
    assert pd.isna(out["published"].iloc[3])


@pytest.mark.parametrize("content,message", [
    ("dataset,sigma_255,method,psnr\nset12,25,BM3D,30\n", "lacks column(s) channels, ssim, source"),
    ("dataset,channels,sigma_255,method,psnr,ssim,source\nset12,1,25,BM3D,high,,x\n", "'high' (line 2)"),
])
def test_bad_user_tables_are_one_line(cli, store, tmp_path, content, message):
    assert cli("run", "-d", "skimage-gray[crop=32]", "-n", "gaussian:0.1", "-m", "noisy", "--store", store,
               "--quiet").code == 0
    table = tmp_path / "refs.csv"
    table.write_text(content)
    result = cli("leaderboard", "--store", store, "--published", table)
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_published_needs_the_long_layout(cli, store):
    from bench.store.database import Store

    Store(store).close()
    result = cli("leaderboard", "--store", store, "--published", "--wide")
    assert result.code == 2 and "long layout" in result.err
