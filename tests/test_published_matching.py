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


#: By hand from the papers' tables (not from the shipped CSV): SwinIR (arXiv 2108.10257) Tables 5 and 6,
#: SCUNet (arXiv 2203.13278) Tables 1 and 2, DPIR (arXiv 2008.13751) Tables 2 and 3, as the authors'
#: repositories show them (SwinIR figs/*_image_denoising.png, SCUNet figs/*_scunet.png, DPIR figs/*_psnr.png).
SOTA = {("bsd68", 68, 25): {"drunet-dpir": 29.48, "swinir": 29.50, "scunet": 29.55},
        ("set12", 12, 15): {"drunet-dpir": 33.25, "swinir": 33.36, "scunet": 33.43},
        ("urban100[gray=1]", 100, 50): {"drunet-dpir": 27.96, "swinir": 27.98, "scunet": 28.56},
        ("cbsd68", 68, 25): {"drunet-dpir": 31.69, "swinir": 31.78, "scunet": 31.79},
        ("kodak24", 24, 50): {"drunet-dpir": 29.86, "swinir": 29.79, "scunet": 29.87},
        ("mcmaster", 18, 15): {"drunet-dpir": 35.40, "swinir": 35.61, "scunet": 35.60},
        ("urban100", 100, 25): {"drunet-dpir": 32.60, "swinir": 32.90, "scunet": 33.03}}


@pytest.mark.parametrize("dataset,n,sigma", sorted(SOTA))
def test_todays_rows_with_the_authors_weights_get_their_papers_numbers(registry, dataset, n, sigma):
    rows = ["drunet-dpir", "swinir", "scunet", "deepinv:DRUNet", "deepinv:DRUNet[pretrained=download]"]
    out = published.add_published(board(rows, dataset=dataset, n=n, sigma=sigma), published.references(),
                                  registry).set_index("denoiser")
    assert out["published"].dropna().to_dict() == SOTA[(dataset, n, sigma)]
    assert "arXiv 2108.10257" in out.loc["swinir", "source"] and "arXiv 2203.13278" in out.loc["scunet", "source"]
    # deepinv's DRUNet weights are deepinv's own (fine-tuned), never DPIR's: no delta, and the reason.
    assert any(note.startswith("deepinv:DRUNet: a deepinv: row carries the library's own weights")
               for note in out.attrs["published_notes"])


def test_todays_rows_match_only_like_with_like(registry):
    refs = published.references()
    colour = published.add_published(board(["swinir[color=true]", "scunet"], dataset="cbsd68", sigma=50), refs,
                                     registry)
    assert colour["published"].tolist() == [28.56, 28.61]  # color= only picks among the paper's own models
    other = published.add_published(board(["swinir", "scunet", "drunet-dpir"], sigma=35), refs, registry)
    assert other["published"].isna().all()  # no model and no table at 35/255
    default = published.add_published(board(["swinir", "scunet", "drunet-dpir"], protocol="default"), refs, registry)
    assert default["published"].isna().all()
    assert default.attrs["published_notes"] == [
        f"{row}: {method} is published under --protocol paper, this row ran under default"
        for row, method in (("swinir", "SwinIR"), ("scunet", "SCUNet"), ("drunet-dpir", "DRUNet"))]
    part = published.add_published(board(["swinir"], dataset="urban100", n=10), refs, registry)
    assert part["published"].isna().all() and "10 of 100 images scored" in part.attrs["published_notes"][0]


def test_a_row_whose_paper_number_is_missing_says_so(registry):
    # Restormer's tables could not be checked against a source here, so the table has no row for it
    out = published.add_published(board(["restormer", "swinir"]), published.references(), registry)
    assert out["published"].tolist()[1] == 29.50 and pd.isna(out["published"].tolist()[0])
    assert out.attrs["published_notes"] == ["restormer: the published table has no Restormer number for bsd68 "
                                            "at sigma=25/255"]
