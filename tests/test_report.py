"""Exports that parse, figures and galleries from a real run, and the HTML report in a real browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from skimage import io as skio
from skimage.metrics import peak_signal_noise_ratio

from bench.cli import main as cli
from bench.data.datasets import skimage_gray
from bench.plugins import get_plugin_set
from bench.registry import Registry
from bench.reports import figures, rendering, tables
from bench.store.database import open_existing

CHROMIUM = Path("/usr/bin/chromium")
DATASET = "skimage-gray[crop=64]"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    """A real run: two denoisers, two Gaussian levels and a Poisson peak, outputs of 2 images kept."""
    path = tmp_path_factory.mktemp("run") / "bench.sqlite"
    code = cli(["run", "-d", DATASET, "-n", "gaussian:15/255,50/255", "-n", "poisson:16",
                "-m", "noisy", "-m", "gaussian-filter", "--limit-images", "3", "--save-images", "2",
                "--store", str(path), "--quiet"])
    assert code == 0
    return path


@pytest.fixture
def store(store_path):
    with open_existing(store_path) as store:
        yield store


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(get_plugin_set())


# exports that parse ----------------------------------------------------------------------------

def markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Parse a GitHub-flavoured Markdown table strictly: header, delimiter row, equal-width rows."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, "no Markdown table found"

    def cells(line: str) -> list[str]:
        assert line.endswith("|"), f"row not closed by a pipe: {line!r}"
        return [cell.strip() for cell in line[1:-1].split("|")]

    header, delimiter, *body = (cells(line) for line in lines)
    assert all(re.fullmatch(r":?-{3,}:?", cell) for cell in delimiter), f"bad delimiter row {delimiter}"
    assert len(delimiter) == len(header)
    for row in body:
        assert len(row) == len(header), f"row of {len(row)} cells under {len(header)} headers"
    return header, body


def latex_tabular(text: str) -> tuple[int, list[list[str]], list[list[str]]]:
    """Parse a booktabs tabular: (columns, header rows, body rows); every row must fill the columns."""
    depth = 0
    for match in re.finditer(r"(?<!\\)[{}]", text):
        depth += 1 if match.group() == "{" else -1
        assert depth >= 0, "unbalanced braces"
    assert depth == 0, "unbalanced braces"
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", text)
    assert spec, "no tabular"
    columns = len(spec.group(1))
    lines = text[spec.end():text.index(r"\end{tabular}")].strip().splitlines()
    assert lines[0] == r"\toprule" and lines[-1] == r"\bottomrule" and lines.count(r"\midrule") == 1
    middle = lines.index(r"\midrule")

    def rows(part: list[str]) -> list[list[str]]:
        parsed = []
        for line in part:
            if line.startswith(r"\cmidrule"):
                continue
            assert line.endswith(r" \\"), f"row does not end with \\\\: {line!r}"
            cells = [c.strip() for c in re.split(r"(?<!\\)&", line[:-3])]
            width = sum(int(m.group(1)) if (m := re.match(r"\\multicolumn\{(\d+)\}", c)) else 1 for c in cells)
            assert width == columns, f"row spans {width} of {columns} columns: {line!r}"
            for cell in cells:
                assert not re.search(r"(?<!\\)[_%#&]", re.sub(r"\$[^$]*\$", "", cell)), f"unescaped in {cell!r}"
            parsed.append(cells)
        return parsed

    return columns, rows(lines[1:middle]), rows(lines[middle + 1:-1])


def unbold(cell: str) -> tuple[str, bool]:
    for pattern in (r"\*\*(.*)\*\*", r"\\textbf\{(.*)\}"):
        if match := re.fullmatch(pattern, cell):
            return match.group(1), True
    return cell, False


def test_csv_reads_back_identical_in_both_layouts(store):
    prov = tables.provenance(store)
    long = tables.leaderboard(store, "psnr")
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(rendering.render(long, "csv", prov))), long)
    wide = tables.wide(store, ["psnr", "ssim"])
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(rendering.render(wide, "csv", prov))),
                                  rendering.flatten(wide))


def test_markdown_parses_with_the_values_and_the_best_in_bold(store):
    long = tables.leaderboard(store, "psnr")
    header, body = markdown_table(rendering.render(long, "markdown", tables.provenance(store)))
    assert header[:3] == ["metric", "dataset", "noise"] and "rank_tied" in header
    means = [unbold(row[header.index("mean")]) for row in body]
    assert [text for text, _ in means] == [f"{v:.2f}" for v in long["mean"]]
    assert [bold for _, bold in means] == (long["rank"] == 1).tolist()

    wide = tables.wide(store, ["psnr", "ssim"])
    header, body = markdown_table(rendering.render(wide, "markdown"))
    assert header == ["dataset", "denoiser"] + rendering.header_names(wide, "unicode")
    assert len(body) == len(wide) == 2
    for j, column in enumerate(wide.columns):
        places = rendering.DECIMALS[column[2]]
        cells = [unbold(row[2 + j]) for row in body]
        assert [text for text, _ in cells] == [f"{v:.{places}f}" for v in wide[column]]
        assert [bold for _, bold in cells] == (wide[column] == wide[column].max()).tolist()


def test_latex_parses_as_booktabs_with_the_best_in_bold(store):
    wide = tables.wide(store, ["psnr", "ssim"])
    text = rendering.render(wide, "latex", tables.provenance(store))
    assert all(line.startswith("%") for line in text.split(r"\begin{tabular}")[0].splitlines())
    columns, header, body = latex_tabular(text)
    assert columns == 2 + len(wide.columns) and len(header) == 3 and len(body) == len(wide)
    assert header[2][2:] == [c[2].upper() for c in wide.columns]
    for j, column in enumerate(wide.columns):
        cells = [unbold(row[2 + j]) for row in body]
        assert [float(t) for t, _ in cells] == pytest.approx(wide[column].tolist(), abs=1e-2)
        assert [bold for _, bold in cells] == (wide[column] == wide[column].max()).tolist()

    long = tables.leaderboard(store, "ssim")
    columns, header, body = latex_tabular(rendering.render(long, "latex"))
    assert header[0][header[0].index("ci95\\_low")] == "ci95\\_low" and len(body) == len(long)


# figures and galleries --------------------------------------------------------------------------

def test_metric_against_level_draws_each_mean_with_its_band(store, tmp_path):
    table = tables.leaderboard(store, "psnr")
    fig = figures.metric_vs_level(table)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(axes) == 2  # gaussian and poisson panels
    gaussian = axes[0]
    for line in gaussian.lines:
        rows = table[(table["noise"] == "gaussian") & (table["denoiser"] == line.get_label())].sort_values("level")
        assert line.get_xdata().tolist() == pytest.approx((rows["level"] * 255).tolist())
        assert line.get_ydata().tolist() == pytest.approx(rows["mean"].tolist())
    assert len([c for c in gaussian.collections if isinstance(c, PolyCollection)]) == len(gaussian.lines)
    png, svg = figures.save_figure(fig, tmp_path, "psnr_vs_level")
    assert matplotlib.image.imread(png).shape[2] == 4
    assert ElementTree.parse(svg).getroot().tag.endswith("svg")
    figures.save_figure(figures.runtime_vs_quality(figures.runtime_table(store, "psnr"), "psnr"), tmp_path, "runtime")
    assert (tmp_path / "runtime.png").stat().st_size > 0


def test_gallery_regenerates_exactly_what_the_denoisers_saw(store, registry, tmp_path):
    level = 50 / 255
    tiles = figures.gallery_tiles(store, registry, DATASET, "gaussian", level, "camera")
    assert [t.title for t in tiles] == ["clean", "noisy input", "gaussian-filter", "noisy"]
    clean = skimage_gray(crop=64).images[0][0].numpy()
    assert np.array_equal(tiles[0].image, clean)
    # the identity denoiser's saved output is the noisy input as it was scored (clamped, 8-bit PNG)
    assert np.array_equal(np.round(tiles[1].image * 255), tiles[3].image * 255)
    reference = peak_signal_noise_ratio(clean.astype(np.float64), tiles[1].image.astype(np.float64), data_range=1)
    assert tiles[1].caption == f"PSNR {reference:.2f} dB"
    scores = store.query("SELECT c.denoiser, s.value FROM scores s JOIN cells c ON c.key = s.cell_key "
                         "WHERE s.metric = 'psnr' AND s.image_id = 'camera' AND c.degradation = 'gaussian' "
                         "AND abs(c.level - ?) < 1e-9", (level,))
    for tile in tiles[2:]:
        value = scores.loc[scores["denoiser"] == tile.title, "value"].iloc[0]
        assert tile.caption == f"PSNR {value:.2f} dB"
        saved = skio.imread(figures.output_dir(store.path, store.query(
            "SELECT key FROM cells WHERE denoiser = ? AND degradation = 'gaussian' AND abs(level - ?) < 1e-9",
            (tile.title, level))["key"].iloc[0]) / "camera.png")
        assert np.array_equal(saved, np.round(tile.image * 255).astype(np.uint8))
    fig = figures.draw_gallery(tiles, box=(8, 16, 20))
    assert len(fig.axes) == 2 * len(tiles)
    assert fig.axes[len(tiles)].images[0].get_array().shape == (20, 20)  # the zoomed crop
    top, left, size = figures.detail_box(tiles[0].image)
    assert size == 16 and 0 <= top <= 48 and 0 <= left <= 48
    with pytest.raises(Exception, match="--save-images"):
        figures.gallery_tiles(store, registry, DATASET, "gaussian", level, "coins")  # third image: not kept


# the HTML report --------------------------------------------------------------------------------

class Inventory(HTMLParser):
    """Counts tables and images, and collects every external reference."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.external = 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tables += tag == "table"
        if tag == "img":
            self.images.append(attrs["src"])
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


@pytest.fixture(scope="module")
def report_path(store_path, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("report") / "report.html"
    assert cli(["report", "--store", str(store_path), "--output", str(output)]) == 0
    return output


def test_report_is_one_self_contained_file(report_path):
    inventory = Inventory()
    inventory.feed(report_path.read_text(encoding="utf-8"))
    assert inventory.external == [], "the report must open offline"
    assert inventory.tables >= 4  # ranking, leaderboard, full tables, provenance
    # psnr and ssim curves, runtime, one gallery per (noise, level), one denoising strip: 2 + 1 + 3 + 1
    assert len(inventory.images) == 7
    for src in inventory.images:
        assert src.startswith("data:image/png;base64,")
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert image.shape[0] > 100 and image.shape[1] > 100
    text = report_path.read_text(encoding="utf-8")
    for needed in ("Provenance", "gaussian-filter", "<strong>", "torch"):
        assert needed in text


def test_report_refuses_bad_input_and_writes_nothing(tmp_path, capsys):
    output = tmp_path / "out" / "report.html"
    assert cli(["report", "--store", str(tmp_path / "missing.sqlite"), "--output", str(output)]) == 2
    assert "no store" in capsys.readouterr().err
    assert not output.exists() and not output.parent.exists()


def test_an_unknown_metric_stops_the_report_before_any_figure_is_written(store_path, tmp_path, capsys):
    output, folder = tmp_path / "report.html", tmp_path / "figures"
    assert cli(["report", "--store", str(store_path), "--metric", "nope", "--output", str(output),
                "--figures", str(folder)]) == 2
    assert "no scores for metric 'nope'" in capsys.readouterr().err
    assert not output.exists() and not folder.exists()


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                                                   "(.ci/run installs it: apt-get install -y chromium)")
def test_report_loads_in_a_real_browser_with_tables_and_images(report_path, tmp_path):
    # A probe appended to a copy (the report itself has no JavaScript) writes what the browser
    # rendered into the title once the page has loaded.
    probe = ("<script>window.addEventListener('load', () => { const ok = [...document.images]"
             ".filter(i => i.complete && i.naturalWidth > 0).length; document.title = "
             "`probe images ${ok}/${document.images.length} tables ${document.querySelectorAll('table').length}`"
             "; });</script>")
    page = tmp_path / "probe.html"
    page.write_text(report_path.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8")
    result = chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    title = re.search(r"<title>probe images (\d+)/(\d+) tables (\d+)</title>", result.stdout)
    assert title, f"the page did not finish loading; DOM starts {result.stdout[:300]!r}"
    loaded, total, n_tables = map(int, title.groups())
    assert loaded == total == 7 and n_tables >= 4
    assert "gaussian-filter" in result.stdout

    shot = tmp_path / "shot.png"
    result = chromium("--window-size=1200,1600", f"--screenshot={shot}", report_path.as_uri(),
                      profile=tmp_path / "profile-shot")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.std() > 0.05, "the screenshot is blank"
    shutil.rmtree(tmp_path / "profile-dom", ignore_errors=True)
