"""Real camera noise: paired sets fetched by name from a local mirror, the ``real`` degradation,
the residual level, rows scored from published outputs, and the refusals.

The test builds small PNG pairs (a reference, and a capture with noise correlated across pixels
and channels, rounded to 8 bits, as a camera's is) and a manifest of them in the real one's
format, and serves them from a local HTTP server; every expected number is computed here from
the files with numpy and scikit-image.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage import io as skio
from skimage.metrics import peak_signal_noise_ratio
from skimage.restoration import estimate_sigma

from bench.data import fetching, realnoise, standard
from conftest import MirrorServer, rows

PAIRS = ("cam1_iso3200_1", "cam1_iso3200_2", "cam2_iso1600_1")
UNREFERENCED = ("Night", "Street")
SHAPE = (40, 48, 3)

# a sigma-aware row that outputs a flat image at the level it received, and a metric reading it back
ECHO = '''
import bench
import torch

@bench.hookimpl
def register_denoisers(register):
    register("echo", lambda: (lambda y, sigma: torch.ones_like(y) * sigma.view(-1, 1, 1, 1)),
             sigma_aware=True, description="returns the sigma it was given")
    register("zeros", lambda: (lambda y, sigma: torch.zeros_like(y)), description="a black image")

@bench.hookimpl
def register_metrics(register):
    register("mean-out", lambda: (lambda x_hat, x: x_hat.double().flatten(1).mean(1)), higher_is_better=True,
             description="mean of the output")
'''


def reference_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth colour scene with an edge, in [0.15, 0.85] (no clipping of the noise)."""
    h, w, _ = SHAPE
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    scene = np.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * np.sin(6 * yy), 0.4 + 0.3 * (xx > 0.5)], axis=-1)
    return np.clip(scene + 0.02 * rng.standard_normal(SHAPE), 0.15, 0.85)


def capture_of(reference: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Noise blurred across pixels and shared across channels (as demosaicking leaves it)."""
    shared = gaussian_filter(rng.standard_normal(SHAPE[:2]), 1.0)[..., None]
    own = gaussian_filter(rng.standard_normal(SHAPE), (1.0, 1.0, 0))
    noise = 0.7 * shared / shared.std() + 0.3 * own / own.std()
    return reference + std * noise / noise.std()


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def pinned(folder, names) -> list[dict]:
    return [{"file": name, "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
             "bytes": (folder / name).stat().st_size} for name in sorted(names)]


class RealNoiseFiles:
    """The mirror's root, the manifest's sets and what the test computes from the files."""

    def __init__(self, root):
        self.root = root
        self.server: MirrorServer | None = None

    def read(self, folder: str, name: str) -> np.ndarray:
        return skio.imread(self.root / folder / name).astype(np.float64) / 255.0

    def pair(self, image_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(capture, reference) as float arrays in [0, 1]."""
        return self.read("CC15", f"{image_id}_real.png"), self.read("CC15", f"{image_id}_mean.png")


@pytest.fixture
def real_files(tmp_path, monkeypatch) -> RealNoiseFiles:
    """CC15-like pairs with MCWNNM-like outputs (``_ours``), an RNI15-like set, served as a mirror
    and pinned by a manifest in the real one's format (``fetching.load_manifest`` answers with it)."""
    rng = np.random.default_rng(7)
    files = RealNoiseFiles(tmp_path / "mirror")
    cc15, rni15 = files.root / "CC15", files.root / "RNI15"
    cc15.mkdir(parents=True)
    rni15.mkdir()
    for i, image_id in enumerate(PAIRS):
        reference = reference_image(rng)
        capture = capture_of(reference, rng, std=(4 + 2 * i) / 255)
        skio.imsave(cc15 / f"{image_id}_mean.png", to_uint8(reference), check_contrast=False)
        skio.imsave(cc15 / f"{image_id}_real.png", to_uint8(capture), check_contrast=False)
        skio.imsave(cc15 / f"{image_id}_ours.png", to_uint8(gaussian_filter(capture, (1, 1, 0))),
                    check_contrast=False)
    for name in UNREFERENCED:
        skio.imsave(rni15 / f"{name}.png", to_uint8(capture_of(reference_image(rng), rng, 6 / 255)),
                    check_contrast=False)
    shutil.copytree(cc15, files.root / "PolyU", ignore=shutil.ignore_patterns("*_ours.png"))
    sets = {name: {"url": f"https://example.invalid/{name}/{{file}}",
                   "files": pinned(files.root / name, [p.name for p in (files.root / name).iterdir()])}
            for name in ("CC15", "PolyU")}
    unreferenced = {"RNI15": {"url": "https://example.invalid/rni15/{file}",
                              "files": pinned(rni15, [p.name for p in rni15.iterdir()])}}
    original = fetching.load_manifest

    def load_manifest(name, group=None):
        if name == realnoise.REALNOISE_MANIFEST:
            return fetching.sets_manifest(name, sets, group)
        if name == standard.FFDNET_MANIFEST and group == "RNI15":
            return fetching.sets_manifest(name, unreferenced, group)
        return original(name, group)

    monkeypatch.setattr(fetching, "load_manifest", load_manifest)
    files.server = MirrorServer(files.root)
    monkeypatch.setenv(fetching.MIRROR_ENV, files.server.url)
    yield files
    files.server.stop()


def run(cli, store, *args):
    return cli("run", "--store", store, "--quiet", *args)


def scores(store, metric: str = "psnr", denoiser: str | None = None) -> dict[str, float]:
    where = f" AND c.denoiser = '{denoiser}'" if denoiser else ""
    return dict(rows(store, "SELECT s.image_id, s.value FROM scores s JOIN cells c ON c.key = s.cell_key "
                            f"WHERE s.metric = '{metric}'{where}"))


def one_line_exit_2(result, message: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_the_manifest_copy_is_the_shared_one():
    shared = fetching.Path(__file__).parents[2] / "shared" / "datasets" / "realnoise-testsets.json"
    if not shared.exists():
        pytest.skip(f"{shared} is not on this machine (a clean clone)")
    assert json.loads(shared.read_text()) == json.loads(
        (fetching.resources.files("bench") / "data" / "realnoise-testsets.json").read_text())


def test_the_shipped_manifest_pins_polyu_and_cc15_pairs_from_their_own_repositories():
    polyu, cc15 = realnoise.POLYU.pairs(), realnoise.CC15.pairs()
    assert (len(polyu), len(cc15)) == (100, 15)
    assert cc15[0] == ("5dmark3_iso3200_1", "CC15/5dmark3_iso3200_1_real.png", "CC15/5dmark3_iso3200_1_mean.png")
    manifest = realnoise.CC15.manifest()
    assert manifest.source("CC15/5dmark3_iso3200_1_ours.png", None) == (
        "https://raw.githubusercontent.com/csjunxu/MCWNNM-ICCV2017/e6db69b01ff21e89461cc49893c89afb1a9a941c/"
        "Real_ccnoise_denoised_part/5dmark3_iso3200_1_ours.png")
    assert manifest.source("CC15/5dmark3_iso3200_1_ours.png", "http://m/") == "http://m/CC15/5dmark3_iso3200_1_ours.png"
    assert realnoise.POLYU.manifest().source(f"PolyU/{polyu[0][0]}_real.JPG", None).startswith(
        "https://raw.githubusercontent.com/csjunxu/PolyU-Real-World-Noisy-Images-Dataset/")


def test_noisy_under_real_reads_the_captures_against_their_references(cli, real_files, store):
    result = run(cli, store, "-d", "cc15", "-n", "real", "-m", "noisy", "--metric", "psnr", "--metric", "ssim")
    assert result.code == 0, result.err
    assert sorted(real_files.server.requests) == sorted(
        f"CC15/{i}_{role}.png" for i in PAIRS for role in ("real", "mean", "ours"))
    expected = {i: peak_signal_noise_ratio(*real_files.pair(i)[::-1], data_range=1) for i in PAIRS}
    assert scores(store) == pytest.approx(expected, abs=1e-5)
    assert rows(store, "SELECT degradation, level, sigma_in FROM cells") == [("real", 0.0, "blind")]
    board = cli("leaderboard", "--store", store, "--format", "csv").out
    assert {r["level_label"] for r in csv.DictReader(io.StringIO(board))} == {"captured"}


def test_a_sigma_aware_row_is_handed_the_residual_std_by_default(cli, real_files, store, write_plugin):
    plugin = write_plugin(ECHO, "echo.py")
    result = run(cli, store, "--plugin", plugin, "-d", "cc15", "-n", "real", "-m", "echo", "--metric", "mean-out")
    assert result.code == 0, result.err
    expected = {i: float(np.std(np.subtract(*real_files.pair(i)))) for i in PAIRS}
    assert scores(store, "mean-out") == pytest.approx(expected, rel=1e-5)
    assert rows(store, "SELECT sigma_in FROM cells") == [("residual",)]
    halved = run(cli, store, "--plugin", plugin, "-d", "cc15", "-n", "real", "-m", "echo", "--metric", "mean-out",
                 "--sigma-in", "x0.5")
    assert halved.code == 0, halved.err
    got = dict(rows(store, "SELECT s.image_id, s.value FROM scores s JOIN cells c ON c.key = s.cell_key "
                           "WHERE c.sigma_in = 'x0.5'"))
    assert got == pytest.approx({i: v / 2 for i, v in expected.items()}, rel=1e-5)


def test_drawn_noise_on_a_paired_set_is_drawn_on_its_reference(cli, real_files, store, write_plugin):
    plugin = write_plugin(ECHO, "echo.py")
    result = run(cli, store, "--plugin", plugin, "-d", "cc15", "-n", "gaussian:25/255", "-m", "zeros",
                 "--metric", "psnr")
    assert result.code == 0, result.err
    # a black output scores 10 log10(1 / mean(x^2)): x must be the reference, not the capture
    expected = {i: 10 * np.log10(1 / np.mean(real_files.pair(i)[1] ** 2)) for i in PAIRS}
    assert scores(store) == pytest.approx(expected, abs=1e-6)


def test_the_estimator_table_on_real_noise_holds_estimates_against_the_residual(cli, real_files, store):
    result = run(cli, store, "-d", "cc15", "-n", "real", "-m", "gaussian-filter", "--metric", "psnr",
                 "--sigma-in", "residual,estimate:skimage")
    assert result.code == 0, result.err
    [row] = csv.DictReader(io.StringIO(cli("leaderboard", "--estimators", "--store", store, "--format", "csv").out))
    estimates = [np.mean(estimate_sigma(real_files.pair(i)[0], channel_axis=-1)) * 255 for i in PAIRS]
    residuals = [np.std(np.subtract(*real_files.pair(i))) * 255 for i in PAIRS]
    assert (row["estimator"], row["dataset"], row["level_label"], row["n"]) == ("skimage", "cc15", "captured", "3")
    assert float(row["mean_estimate"]) == pytest.approx(np.mean(estimates), rel=1e-4)
    assert float(row["mean_truth"]) == pytest.approx(np.mean(residuals), rel=1e-4)
    assert float(row["bias"]) == pytest.approx(np.mean(np.subtract(estimates, residuals)), rel=1e-4)
    assert float(row["bias"]) < 0  # correlated noise hides from a finest-scale wavelet estimate
    # the robustness figure's x: what each row was told over the residual (its truth on real noise)
    from bench.reports import figures, tables
    from bench.store.database import open_existing

    store_ = open_existing(store)
    board = tables.leaderboard(store_, "psnr")
    ratios = dict(zip(board["sigma_in"], figures.received_ratio(store_, board)))
    assert ratios["residual"] == 1.0
    assert ratios["estimate:skimage"] == pytest.approx(np.mean(estimates) / np.mean(residuals), rel=1e-4)


def test_published_outputs_are_scored_and_keyed_by_their_content(cli, real_files, store, tmp_path):
    first = tmp_path / "first"
    shutil.copytree(real_files.root / "CC15", first)
    result = run(cli, store, "-d", "cc15", "-n", "real", "-m", f"outputs:{first}", "--metric", "psnr")
    assert result.code == 0, result.err
    expected = {i: peak_signal_noise_ratio(real_files.pair(i)[1], real_files.read("CC15", f"{i}_ours.png"),
                                           data_range=1) for i in PAIRS}
    assert scores(store) == pytest.approx(expected, abs=1e-5)
    moved = tmp_path / "moved"
    first.rename(moved)
    again = run(cli, store, "-d", "cc15", "-n", "real", "-m", f"outputs:{moved}", "--metric", "psnr")
    assert again.code == 0 and "0 from earlier runs" not in again.out, again.out
    assert len(rows(store, "SELECT key FROM cells")) == 1  # the same files elsewhere: the same cell
    changed = skio.imread(moved / f"{PAIRS[0]}_ours.png")
    changed[0, 0] ^= 1
    skio.imsave(moved / f"{PAIRS[0]}_ours.png", changed, check_contrast=False)
    assert run(cli, store, "-d", "cc15", "-n", "real", "-m", f"outputs:{moved}", "--metric", "psnr").code == 0
    assert len(rows(store, "SELECT key FROM cells")) == 2


def test_rni15_runs_without_reference_metrics_and_keeps_outputs_for_its_gallery(cli, real_files, store, tmp_path):
    result = run(cli, store, "-d", "rni15", "-n", "real", "-m", "noisy", "-m", "gaussian-filter",
                 "--sigma-in", "estimate:skimage", "--save-images", "2")
    assert result.code == 0, result.err
    assert rows(store, "SELECT DISTINCT status FROM cells") == [("done",)]
    assert rows(store, "SELECT COUNT(*) FROM scores") == [(0,)]
    assert sorted(r[0] for r in rows(store, "SELECT image_id FROM estimates")) == sorted(UNREFERENCED)
    report = tmp_path / "report.html"
    made = cli("report", "--store", store, "--output", report)
    assert made.code == 0, made.err
    html = report.read_text()
    assert f"rni15 · {UNREFERENCED[0]} · real captured" in html and "<img" in html, html[:2000]
    assert "gallery unavailable" not in html and "psnr" not in html.lower()  # no reference: no PSNR anywhere


def test_colour_rows_run_on_real_noise_and_a_gray_only_row_is_refused(cli, real_files, store):
    gray_only = "deepinv:DnCNN[depth=2,in_channels=1,out_channels=1,pretrained=none]"
    one_line_exit_2(run(cli, store, "-d", "cc15", "-n", "real", "-m", "wavelet", "-m", gray_only),
                    f"{gray_only} is built for gray (1-channel) images and cc15 is colour (3 channels)")
    assert not store.exists()
    result = run(cli, store, "-d", "cc15", "-n", "real", "-m", "wavelet", "--metric", "psnr",
                 "-m", gray_only.replace("=1", "=3"))
    assert result.code == 0, result.err
    assert rows(store, "SELECT DISTINCT status FROM cells") == [("done",)]
    assert min(scores(store, denoiser="wavelet").values()) > 20  # a colour row denoises colour images


@pytest.mark.parametrize("args, message", [
    (["-d", "skimage-gray[crop=32]", "-n", "real", "-m", "noisy"], "skimage-gray[crop=32] has no noisy captures"),
    (["-d", "cc15", "-n", "real", "-m", "gaussian-filter", "--sigma-in", "oracle"], "real camera noise has no true level"),
    (["-d", "rni15", "-n", "real", "-m", "noisy", "--metric", "psnr"], "psnr needs a clean reference and rni15 has none"),
    (["-d", "rni15", "-n", "gaussian:25/255", "-m", "noisy"], "without a clean reference"),
    (["-d", "rni15", "-n", "real", "-m", "gaussian-filter"], "add --sigma-in estimate:NAME"),
    (["-d", "cc15", "-n", "real:0.1", "-m", "noisy"], "real noise has one level, captured"),
])
def test_bad_real_noise_input_is_one_line_exit_2_and_nothing_written(cli, real_files, store, args, message):
    one_line_exit_2(run(cli, store, *args), message)
    assert not store.exists()


def test_an_outputs_folder_missing_an_image_or_of_another_size_is_refused(cli, real_files, store, tmp_path):
    folder = tmp_path / "outputs"
    shutil.copytree(real_files.root / "CC15", folder)
    (folder / f"{PAIRS[1]}_ours.png").unlink()
    one_line_exit_2(run(cli, store, "-d", "cc15", "-n", "real", "-m", f"outputs:{folder}"),
                    f"no {PAIRS[1]}_ours.png for image {PAIRS[1]} of cc15")
    skio.imsave(folder / f"{PAIRS[1]}_ours.png", np.zeros((SHAPE[0], SHAPE[1] + 2, 3), np.uint8), check_contrast=False)
    one_line_exit_2(run(cli, store, "-d", "cc15", "-n", "real", "-m", f"outputs:{folder}"),
                    f"{PAIRS[1]}_ours.png is 3x40x50")
    assert not store.exists()


def test_the_real_noise_suite_runs_each_set_with_the_levels_it_has(cli, real_files, store):
    suite = fetching.resources.files("bench") / "configs" / "real-noise.toml"
    result = cli("run", str(suite), "-m", "noisy", "-m", "gaussian-filter", "--store", store, "--quiet")
    assert result.code == 0, result.err
    cells = rows(store, "SELECT dataset, denoiser, sigma_in FROM cells ORDER BY dataset, denoiser, sigma_in")
    assert cells == [(dataset, denoiser, sigma_in) for dataset in ("cc15", "polyu", "rni15")
                     for denoiser, sigma_in in [("gaussian-filter", "estimate:skimage"), ("gaussian-filter", "residual"),
                                                ("noisy", "blind")] if not (dataset == "rni15" and sigma_in == "residual")]
    scored = rows(store, "SELECT DISTINCT c.dataset FROM scores s JOIN cells c ON c.key = s.cell_key ORDER BY 1")
    assert scored == [("cc15",), ("polyu",)]  # no PSNR for the set without a reference


def test_fetch_ahead_then_run_offline_and_a_missing_set_offline_is_one_line(cli, real_files, store):
    one_line_exit_2(run(cli, store, "-d", "cc15", "-n", "real", "-m", "noisy", "--offline"), "denoise-bench fetch cc15")
    assert not store.exists() and real_files.server.requests == []
    fetched = cli("fetch", "cc15", "--quiet")
    assert fetched.code == 0, fetched.err
    real_files.server.stop()
    result = run(cli, store, "-d", "cc15", "-n", "real", "-m", "noisy", "--metric", "psnr", "--offline")
    assert result.code == 0, result.err
    assert len(scores(store)) == len(PAIRS)
