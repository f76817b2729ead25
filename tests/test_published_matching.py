"""Deltas only like with like: the paper's weights, the paper's protocol, the whole set; otherwise a reason."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.reports import published


@pytest.fixture(scope="module")
def registry():
    return Registry(get_plugin_set())


def board(denoisers, protocol="paper", dataset="bsd68", n=68, sigma=25):
    rows = len(denoisers)
    return pd.DataFrame({"metric": ["psnr"] * rows, "dataset": [dataset] * rows, "noise": ["gaussian"] * rows,
                         "level": [sigma / 255] * rows, "denoiser": denoisers, "n": [n] * rows,
                         "mean": [29.0] * rows, "protocol": [protocol] * rows})


def test_the_authors_rows_get_their_papers_numbers(registry):
    out = published.add_published(board(["dncnn-b", "fdncnn", "ffdnet", "dncnn-s"]), published.references(),
                                  registry).set_index("denoiser")
    # By hand from the DnCNN repository README (BSD68, sigma 25) and the FFDNet / DnCNN papers.
    assert out["published"].to_dict() == {"dncnn-b": 29.16, "fdncnn": 29.22, "ffdnet": 29.19, "dncnn-s": 29.23}
    assert "README" in out.loc["fdncnn", "source"]
    colour = published.add_published(board(["dncnn-b", "dncnn-b[color=true]"], dataset="cbsd68"),
                                     published.references(), registry)
    assert colour["published"].tolist() == [31.23, 31.23]  # CDnCNN-B, the DnCNN paper's colour table


def test_default_protocol_rows_get_none_and_say_why(registry):
    out = published.add_published(board(["ffdnet"], protocol="default"), published.references(), registry)
    assert out["published"].isna().all()
    assert out.attrs["published_notes"] == [
        "ffdnet: FFDNet is published under --protocol paper, this row ran under default"]


def test_a_table_without_protocol_column_is_the_default_protocol(registry):
    table = board(["ffdnet"]).drop(columns="protocol")  # the leaderboard drops it when all are default
    out = published.add_published(table, published.references(), registry)
    assert out["published"].isna().all() and "ran under default" in out.attrs["published_notes"][0]


def test_library_weights_and_variants_get_none_and_say_why(registry):
    rows = ["deepinv:DRUNet[pretrained=download]", "deepinv:DnCNN", "bm3d[profile=refilter]", "ffdnet[clip=true]",
            "nlm"]
    out = published.add_published(board(rows), published.references(), registry)
    assert out["published"].isna().all()
    notes = out.attrs["published_notes"]
    assert "deepinv:DRUNet[pretrained=download]: a deepinv: row carries the library's own weights" in notes[0]
    assert any(n.startswith("bm3d[profile=refilter]: profile= makes it a variant of BM3D") for n in notes)
    assert any(n.startswith("ffdnet[clip=true]: clip= makes it a variant of FFDNet") for n in notes)
    assert len(notes) == 5  # nlm: declares no published counterpart


def test_part_of_the_set_says_so(registry):
    out = published.add_published(board(["ffdnet"], n=3), published.references(), registry)
    assert out["published"].isna().all()
    assert out.attrs["published_notes"] == ["ffdnet on bsd68: 3 of 68 images scored; a published mean covers "
                                            "the whole set"]


def test_a_users_table_names_its_protocol(registry, tmp_path):
    mine = tmp_path / "clip.csv"
    mine.write_text("dataset,channels,sigma_255,method,psnr,ssim,source,protocol\n"
                    "bsd68,1,25,FFDNet,29.00,,my Clip rerun,clip\n")
    refs = published.references([str(mine)])
    clip = published.add_published(board(["ffdnet"], protocol="clip"), refs, registry)
    paper = published.add_published(board(["ffdnet"]), refs, registry)
    assert clip["published"].tolist() == [29.00] and clip["source"].tolist() == ["my Clip rerun"]
    assert paper["published"].tolist() == [29.19]  # the shipped paper row is still there beside it


def test_the_leaderboard_prints_the_reason_under_the_table(cli, store):
    assert cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "1", "-n", "gaussian:25/255", "-m", "noisy",
               "--store", store, "--quiet").code == 0
    result = cli("leaderboard", "--store", store, "--published", "--format", "csv")
    assert result.code == 0 and pd.read_csv(io.StringIO(result.out))["published"].isna().all()
    assert "--published: no row has a published counterpart" in result.err, result.err
