"""Nothing read from disk or the network runs code or writes outside its folder.

Each attack is real: a pickle that creates a file when it is unpickled (so a test that
loaded it with ``weights_only=False`` would see the file appear), tar archives with
``..``, absolute paths, links and devices, served from a local mirror.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import io as skio

from bench.data import fetching
from bench.errors import UsageError


class Planted:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the pickle runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def plant_pickle(path: Path, marker: Path, under: str | None = None) -> str:
    """A torch file whose unpickling would create ``marker``; returns its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = Planted(marker)
    torch.save({under: payload} if under else payload, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_planted_pickle_does_run_code_when_loaded_unsafely(tmp_path):
    """The attack is real: the guard below is what stops it."""
    marker = tmp_path / "pwned"
    plant_pickle(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


# --- report: samples.pt ----------------------------------------------------------------------------

def test_report_refuses_a_crafted_samples_file_without_running_it(tmp_path):
    from bench.grid.sampler_runner import samples_dir
    from bench.reports.sample_sections import load_samples

    store = types.SimpleNamespace(path=tmp_path / "bench.sqlite")
    marker = tmp_path / "pwned"
    plant_pickle(samples_dir(store.path, "abc") / "samples.pt", marker, under="samples")
    with pytest.raises(UsageError, match=r"samples file .*samples.pt refused by torch.load\(weights_only=True\)"):
        load_samples(store, "abc")
    assert not marker.exists(), "the pickle ran"


def test_report_still_reads_real_samples(tmp_path):
    from bench.grid.sampler_runner import samples_dir
    from bench.reports.sample_sections import load_samples

    store = types.SimpleNamespace(path=tmp_path / "bench.sqlite")
    folder = samples_dir(store.path, "k")
    folder.mkdir(parents=True)
    samples = torch.rand(4, 1, 8, 8)
    torch.save({"samples": samples, "sampler": "langevin", "metrics": {"fid": 1.5, "kid": None}},
               folder / "samples.pt")
    assert torch.equal(load_samples(store, "k"), samples)


# --- deepinv pretrained=download -------------------------------------------------------------------

DEEPINV_ROW = "deepinv:DnCNN[in_channels=1,out_channels=1,pretrained=download]"
CHECKPOINT = "dncnn_sigma2_gray.pth"


@pytest.fixture
def hub_url(mirror, monkeypatch):
    """deepinv's weights URL for DnCNN pointed at the local mirror's ``hub/`` folder."""
    import deepinv

    (mirror.root / "hub").mkdir()
    monkeypatch.setattr(deepinv.models.dncnn, "get_weights_url",
                        lambda model_name, file_name: f"{mirror.url}/hub/{file_name}")
    return mirror.root / "hub"


def cached_checkpoint() -> Path:
    return fetching.settings().root / "torch-hub" / "checkpoints" / CHECKPOINT


def run_deepinv(cli, store, *extra):
    return cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "1", "-n", "gaussian:0.1",
               "-m", DEEPINV_ROW, "--metric", "psnr", "--store", store, "--quiet", *extra)


def test_torch_hub_is_not_the_loader(hub_url, monkeypatch):
    """deepinv's call lands in the project's fetcher: torch hub's own loader is never reached."""
    import deepinv
    import torch.hub

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("torch hub's loader was used"))
    torch.manual_seed(0)
    torch.save(deepinv.models.DnCNN(in_channels=1, out_channels=1, pretrained=None).state_dict(),
               hub_url / CHECKPOINT)
    with fetching.torch_hub_files("x") as loaded:
        deepinv.models.DnCNN(in_channels=1, out_channels=1, pretrained="download")
    assert loaded == [cached_checkpoint()]
    recorded = fetching.recorded_hash(cached_checkpoint()).read_text().strip()
    assert recorded == hashlib.sha256((hub_url / CHECKPOINT).read_bytes()).hexdigest()


def test_pretrained_naming_a_file_as_deepinv_would_open_it_is_refused(cli, store, tmp_path, monkeypatch):
    """``pretrained=~/x.pt`` where ``~`` is a folder in the working directory: deepinv opens the
    literal path, so that is the one checked (the expanded one, under $HOME, does not exist)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    marker = tmp_path / "pwned"
    plant_pickle(tmp_path / "~" / "x.pt", marker)
    result = cli("run", "-d", "skimage-gray[crop=32]", "--limit-images", "1", "-n", "gaussian:0.1", "-m",
                 "deepinv:DnCNN[in_channels=1,out_channels=1,pretrained=~/x.pt]", "--store", store, "--quiet")
    assert result.code == 2 and "give a local checkpoint as weights=~/x.pt" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not store.exists()
    assert not marker.exists(), "the planted pickle ran"


@pytest.mark.parametrize("with_recorded_hash", [True, False])
def test_a_planted_checkpoint_in_the_cache_runs_nothing_offline(cli, store, tmp_path, with_recorded_hash):
    marker = tmp_path / "pwned"
    digest = plant_pickle(cached_checkpoint(), marker)
    if with_recorded_hash:  # the attacker also wrote the sidecar: the hash matches, weights_only still refuses
        fetching.recorded_hash(cached_checkpoint()).write_text(digest + "\n")
    result = run_deepinv(cli, store, "--offline")
    assert result.code == 2, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    expected = "refused by torch.load(weights_only=True)" if with_recorded_hash else "has no recorded SHA-256"
    assert expected in result.err, result.err
    assert not marker.exists(), "the planted pickle ran"
    assert not store.exists()


def test_a_served_pickle_is_refused_and_a_changed_cache_file_is_fetched_again(cli, store, tmp_path, hub_url):
    import deepinv

    marker = tmp_path / "pwned"
    plant_pickle(hub_url / CHECKPOINT, marker)
    result = run_deepinv(cli, store)
    assert result.code == 2 and "refused by torch.load(weights_only=True)" in result.err, result.err
    assert not marker.exists(), "the served pickle ran"

    # The server now has the real weights: a cached file whose bytes differ from the recorded hash
    # is downloaded again before it is loaded.
    torch.manual_seed(0)
    torch.save(deepinv.models.DnCNN(in_channels=1, out_channels=1, pretrained=None).state_dict(),
               hub_url / CHECKPOINT)
    fetching.recorded_hash(cached_checkpoint()).unlink()
    assert run_deepinv(cli, store).code == 0
    good = cached_checkpoint().read_bytes()
    plant_pickle(cached_checkpoint(), marker)  # swapped after the download: hash no longer matches
    assert run_deepinv(cli, store, "--offline").code == 2
    assert run_deepinv(cli, store).code == 0
    assert cached_checkpoint().read_bytes() == good and not marker.exists()


# --- archives --------------------------------------------------------------------------------------

def add_bytes(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, target: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


ATTACKS = {
    "dot-dot": (lambda tar, outside: add_bytes(tar, f"Urban100_HR/../../{outside.name}"), "'..' in its path"),
    "absolute": (lambda tar, outside: add_bytes(tar, str(outside)), "an absolute path"),
    "symlink": (lambda tar, outside: add_special(tar, "Urban100_HR/link", tarfile.SYMTYPE, str(outside)),
                "a link"),
    "hardlink": (lambda tar, outside: add_special(tar, "Urban100_HR/hard", tarfile.LNKTYPE, "/etc/passwd"),
                 "a link"),
    "device": (lambda tar, outside: add_special(tar, "Urban100_HR/dev", tarfile.CHRTYPE), "a device"),
    "fifo": (lambda tar, outside: add_special(tar, "Urban100_HR/fifo", tarfile.FIFOTYPE), "a device"),
}


def crafted_archive(path: Path, attack: str, outside: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, "Urban100_HR/img_001.png", b"not really a png")
        ATTACKS[attack][0](tar, outside)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_extraction_refuses_entries_that_escape_or_are_not_plain(tmp_path, attack):
    into = tmp_path / "data" / "Urban100"
    into.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    crafted_archive(tmp_path / "a.tar.gz", attack, outside)
    with pytest.raises(fetching.FetchError, match=ATTACKS[attack][1]):
        fetching.extract_archive(tmp_path / "a.tar.gz", into)
    assert not outside.exists() and list(into.iterdir()) == [], "nothing extracted, no staging folder left"


@pytest.mark.parametrize("attack", ["dot-dot", "absolute", "symlink"])
def test_fetching_urban100_with_a_hostile_archive_writes_nothing(cli, mirror, store, tmp_path, attack):
    outside = tmp_path / "escaped.txt"
    crafted_archive(mirror.root / "Urban100_HR.tar.gz", attack, outside)
    result = cli("fetch", "urban100", "--quiet")
    assert result.code == 2 and ATTACKS[attack][1] in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert not outside.exists()
    assert not (fetching.settings().root / "Urban100").exists(), "no archive, staging or empty folder left"


def test_an_archive_expanding_past_the_free_space_is_refused_before_extracting(tmp_path, monkeypatch):
    """A gzip bomb: 100 kB of zeros compress to a few hundred bytes; the entries' declared sizes
    are held against the disk's free space (made small here) before anything is written."""
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_bytes(tar, "zeros.bin", bytes(100_000))
    assert archive.stat().st_size < 1000
    into = tmp_path / "into"
    into.mkdir()
    monkeypatch.setattr(fetching, "free_bytes", lambda folder: 50_000)
    with pytest.raises(fetching.FetchError, match="expands to 100000 bytes, more than the 50000 free"):
        fetching.extract_archive(archive, into)
    assert list(into.iterdir()) == []


def test_a_plain_archive_is_extracted_and_moved_in_place(cli, mirror, store, tmp_path, monkeypatch):
    """The same path with an honest archive: the images arrive, nothing else stays."""
    from deepinv.datasets import Urban100HR
    from deepinv.datasets.utils import calculate_md5_for_folder

    folder = tmp_path / "src" / "Urban100_HR"
    folder.mkdir(parents=True)
    for i in range(2):
        skio.imsave(folder / f"img_{i + 1:03d}.png", np.full((8, 8, 3), 40 * i, np.uint8), check_contrast=False)
    with tarfile.open(mirror.root / "Urban100_HR.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="Urban100_HR")
    monkeypatch.setattr(Urban100HR, "_checksums", {"Urban100_HR": calculate_md5_for_folder(str(folder))})
    assert cli("fetch", "urban100", "--quiet").code == 0
    root = fetching.settings().root / "Urban100"
    assert sorted(p.name for p in root.iterdir()) == ["Urban100_HR"]
    assert sorted(p.name for p in (root / "Urban100_HR").iterdir()) == ["img_001.png", "img_002.png"]
    line = next(line for line in cli("list", "datasets").out.splitlines() if line.startswith("urban100 "))
    assert " cached, " in line and "not cached" not in line, line


def test_a_swapped_checkpoint_with_the_same_size_and_mtime_is_caught(cli, store, hub_url):
    """The hash checked before loading is computed afresh, not read from the (size, mtime) cache."""
    import os

    import deepinv

    torch.manual_seed(0)
    torch.save(deepinv.models.DnCNN(in_channels=1, out_channels=1, pretrained=None).state_dict(),
               hub_url / CHECKPOINT)
    assert run_deepinv(cli, store).code == 0
    path = cached_checkpoint()
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the tensor data: still loads, different weights
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = run_deepinv(cli, store, "--offline")
    assert result.code == 2 and "does not match the SHA-256 recorded" in result.err, result.err
