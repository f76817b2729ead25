"""Release-asset rows (drunet-dpir, swinir, restormer): stand-in checkpoints from a local server,
their SHA-256 recorded, pinned with ``fetch --pin``, a changed upstream file refused.

The stand-ins have the right format (a state dict; SwinIR's ``{"params": ...}``) for small
versions of the same deepinv architectures, swapped in through ``Family.arguments``.
"""

from __future__ import annotations

import json

import pytest
import torch

from bench.data import fetching, weights
from bench.data.content_hash import sha256_file
from bench_plugins import sota
from conftest import MirrorServer, rows

SMALL = {"drunet-dpir": {"nc": (8, 16, 32, 64), "nb": 1},
         "swinir": {"img_size": 32, "embed_dim": 12, "depths": (1,), "num_heads": (2,)},
         "restormer": {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 1, 1)},
         "scunet": {"config": (1,) * 7}}


@pytest.fixture
def releases(tmp_path, monkeypatch):
    """A local server of stand-in release files; ``publish(row, color, level, seed)`` writes one."""
    root = tmp_path / "releases"
    root.mkdir()
    server = MirrorServer(root)
    monkeypatch.setenv(fetching.MIRROR_ENV, server.url)
    monkeypatch.setenv(weights.PINS_ENV, str(tmp_path / "team" / "pins.json"))
    for name, arguments in SMALL.items():
        monkeypatch.setattr(sota.FAMILIES[name], "arguments", arguments)

    def publish(row: str, color: bool = False, level: int | None = None, seed: int = 0, payload=None) -> str:
        family = sota.FAMILIES[row]
        torch.manual_seed(seed)
        state = family.architecture(3 if color else 1, **family.arguments).state_dict()
        file = family.files(color, level)
        torch.save(payload if payload is not None else {"params": state} if row == "swinir" else state,
                   root / file.name)
        return sha256_file(root / file.name)

    server.publish = publish
    yield server
    server.stop()


def run(cli, store, row, *extra, level="25/255", data="skimage-gray[crop=32]"):
    return cli("run", "-d", data, "--limit-images", "1", "-n", f"gaussian:{level}", "-m", row, "--metric", "psnr",
               "--store", store, "--quiet", *extra)


@pytest.mark.parametrize("row,level", [("drunet-dpir", None), ("swinir", 25), ("restormer", None)])
def test_the_files_load_and_their_hash_is_in_the_key_and_provenance(cli, releases, store, row, level):
    digest = releases.publish(row, level=level)
    result = run(cli, store, row)
    assert result.code == 0, result.err
    (status,), = rows(store, "SELECT status FROM cells")
    assert status == "done"
    board = json.loads(cli("leaderboard", "--store", store, "--format", "json").out)
    assert f"{digest} (unpinned)" in board["provenance"]["runs"][0]["versions"]["weights"].values()
    recorded = json.loads((weights.folder() / "recorded.json").read_text())
    assert recorded[sota.FAMILIES[row].files(False, level).name] == digest
    # Another upstream file is another cell: the hash is in the key.
    releases.publish(row, level=level, seed=1)
    (weights.folder() / sota.FAMILIES[row].files(False, level).name).unlink()
    (weights.folder() / "recorded.json").unlink()
    assert run(cli, store, row).code == 0
    assert len(rows(store, "SELECT key FROM cells")) == 2


def test_scunet_loads_its_gaussian_model_for_the_level(cli, releases, store):
    digest = releases.publish("scunet", level=15)
    assert run(cli, store, "scunet", level="15/255").code == 0
    (status,), = rows(store, "SELECT status FROM cells")
    assert status == "done" and releases.requests == ["scunet_gray_15.pth"]
    assert json.loads((weights.folder() / "recorded.json").read_text()) == {"scunet_gray_15.pth": digest}


def test_swinir_has_one_model_per_level_and_colour_from_the_data(cli, releases, store):
    releases.publish("swinir", color=True, level=50)
    result = run(cli, store, "swinir", level="50/255,30/255", data="skimage-color[crop=32]")
    assert result.code == 0, result.err
    found = dict(rows(store, "SELECT round(level * 255), status FROM cells"))
    assert found == {50.0: "done", 30.0: "skipped"}
    assert [r for r in releases.requests] == ["005_colorDN_DFWB_s128w8_SwinIR-M_noise50.pth"]


def test_a_changed_upstream_file_is_refused_once_recorded_or_pinned(cli, releases, store, tmp_path):
    releases.publish("drunet-dpir")
    assert cli("fetch", "drunet-dpir[color=false]", "--quiet").code == 0
    result = cli("fetch", "drunet-dpir[color=false]", "--pin", "--quiet")
    assert result.code == 0 and "drunet-dpir: pinned drunet_gray.pth in" in result.out, result.err
    pins = json.loads((tmp_path / "team" / "pins.json").read_text())
    assert list(pins) == ["drunet_gray.pth"]
    assert "drunet-dpir" in cli("list", "denoisers").out and sota.FAMILIES["drunet-dpir"].unpinned() == []
    pinned_store = tmp_path / "pinned.sqlite"
    assert run(cli, pinned_store, "drunet-dpir").code == 0
    board = json.loads(cli("leaderboard", "--store", pinned_store, "--format", "json").out)
    assert list(board["provenance"]["runs"][0]["versions"]["weights"].values()) == [pins["drunet_gray.pth"]]
    releases.publish("drunet-dpir", seed=3)  # upstream changes the file
    # A fresh data folder downloads it again: the team's pin refuses it, nothing kept.
    result = run(cli, store, "drunet-dpir", "--data-root", tmp_path / "fresh")
    assert result.code == 2 and "changed upstream" in result.err and "pin file" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not store.exists()
    assert not (tmp_path / "fresh" / weights.FOLDER / "drunet_gray.pth").exists()


def test_unpinned_recorded_hash_also_refuses_a_changed_file(cli, releases, store):
    releases.publish("restormer")
    assert run(cli, store, "restormer").code == 0
    listed = [line for line in cli("list", "denoisers").out.splitlines() if line.startswith("restormer ")]
    assert "cached" in listed[0] and "1 unpinned" in listed[0], listed
    (weights.folder() / "gaussian_gray_denoising_blind.pth").unlink()
    releases.publish("restormer", seed=5)
    result = run(cli, store, "restormer")
    assert result.code == 2 and "first download" in result.err, result.err


def test_offline_without_the_weights_is_one_line(cli, store, no_network):
    result = run(cli, store, "swinir", "--offline")
    assert result.code == 2 and "denoise-bench fetch swinir" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not store.exists()


class Payload:
    """Anything but tensors in a checkpoint: weights_only=True refuses to unpickle it."""


def test_a_checkpoint_that_is_not_only_tensors_is_refused(cli, releases, store):
    releases.publish("drunet-dpir", payload={"state": Payload()})
    result = run(cli, store, "drunet-dpir")
    assert result.code == 2 and "does not load into drunet-dpir" in result.err, result.err


def test_pinning_is_for_release_weights_only(cli, mirror):
    result = cli("fetch", "set12", "--pin", "--quiet")
    assert result.code == 2 and "set12: nothing to pin" in result.err, result.err


def test_swinir_pads_as_its_test_script_and_the_others_by_the_last_rows():
    # main_test_swinir.py: h_pad = (h // 8 + 1) * 8 - h; img = cat([img, flip(img)])[:h + h_pad] (both axes).
    y = torch.arange(6 * 8.0).reshape(1, 1, 6, 8)  # value = 8 * row + column
    unused = weights.Verified(None, "0" * 64, False)
    padded = sota.ReleaseNetwork(torch.nn.Identity(), unused, sota.FAMILIES["swinir"]).pad(y)
    assert padded.shape == (1, 1, 8, 16)  # a multiple of 8 already still gets a full step
    assert padded[0, 0, :, 0].tolist() == [8.0 * r for r in (0, 1, 2, 3, 4, 5, 5, 4)]
    assert padded[0, 0, 0, :].tolist() == [*range(8), *range(7, -1, -1)]
    replicated = sota.ReleaseNetwork(torch.nn.Identity(), unused, sota.FAMILIES["drunet-dpir"]).pad(y)
    assert replicated.shape == (1, 1, 8, 8) and replicated[0, 0, 6:, 0].tolist() == [40.0, 40.0]
    reflected = sota.ReleaseNetwork(torch.nn.Identity(), unused, sota.FAMILIES["restormer"]).pad(y)
    assert reflected[0, 0, 6:, 0].tolist() == [32.0, 24.0]  # test_gaussian_*_denoising.py: F.pad 'reflect'


def test_drunet_dpir_takes_a_noise_map_that_varies(cli, releases, store):
    # DPIR feeds DRUNet the noise-level map as a full-size input channel: on gaussian-map it is
    # handed the map itself (padded as the image), and a flat map reads as the scalar level.
    releases.publish("drunet-dpir")
    result = cli("run", "-d", "skimage-gray[crop=30]", "--limit-images", "1", "-n", "gaussian-map:25/255",
                 "-m", "drunet-dpir", "--sigma-in", "oracle,mean", "--metric", "psnr", "--store", store, "--quiet")
    assert result.code == 0, result.err
    assert dict(rows(store, "SELECT sigma_in, status FROM cells")) == {"oracle": "done", "mean": "done"}
    model = sota.load(sota.FAMILIES["drunet-dpir"], False, None)
    y = torch.rand(1, 1, 30, 30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        flat = model(y, torch.full((1, 1, 30, 30), 0.1))
        ramp = model(y, torch.linspace(0.0, 0.2, 30).expand(1, 1, 30, 30))
        torch.testing.assert_close(flat, model(y, torch.tensor([0.1])))
    assert not torch.allclose(flat, ramp, atol=1e-4)


# --- a first download is trusted only once it loads -----------------------------------------------

def recorded() -> dict:
    path = weights.folder() / "recorded.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def test_a_first_download_that_does_not_load_is_deleted_never_recorded_nor_pinned(cli, releases, store, tmp_path):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "pins.json").write_text("{}")  # the team's pin file, nothing pinned yet
    releases.publish("drunet-dpir", payload={"head.weight": torch.zeros(3)})  # tensors, not the network
    result = run(cli, store, "drunet-dpir")
    assert result.code == 2 and "does not load into drunet-dpir" in result.err and "deleted it" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not store.exists()
    assert not (weights.folder() / "drunet_gray.pth").exists() and "drunet_gray.pth" not in recorded()
    pinned = cli("fetch", "drunet-dpir", "--pin", "--quiet")
    assert pinned.code == 2 and "does not load into drunet-dpir" in pinned.err, pinned.err
    assert json.loads((tmp_path / "team" / "pins.json").read_text()) == {}, "the bad hash was pinned"
    digest = releases.publish("drunet-dpir")  # the server now has the real file
    assert run(cli, store, "drunet-dpir").code == 0
    assert recorded()["drunet_gray.pth"] == digest


def test_a_recorded_file_that_does_not_load_is_deleted_with_its_record(cli, releases, store):
    """A data folder poisoned before this check: the bad file's hash recorded beside it."""
    releases.publish("drunet-dpir", payload={"head.weight": torch.zeros(3)})
    bad = weights.folder() / "drunet_gray.pth"
    bad.parent.mkdir(parents=True)
    bad.write_bytes((releases.root / "drunet_gray.pth").read_bytes())
    (weights.folder() / "recorded.json").write_text(json.dumps({"drunet_gray.pth": sha256_file(bad)}))
    assert run(cli, store, "drunet-dpir").code == 2
    assert not bad.exists() and recorded() == {}
    releases.publish("drunet-dpir")
    assert run(cli, store, "drunet-dpir").code == 0


@pytest.mark.parametrize("text", ['["a"]', "3", '{"drunet_gray.pth": 5}', '{"drunet_gray.pth": "abc"}'])
def test_a_pin_file_that_is_not_names_to_hashes_is_one_line(cli, releases, store, tmp_path, text):
    releases.publish("drunet-dpir")
    pins = tmp_path / "team" / "pins.json"
    pins.parent.mkdir()
    pins.write_text(text)
    result = run(cli, store, "drunet-dpir")
    assert result.code == 2 and f"{pins} is not a JSON object of name -> SHA-256" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not store.exists()


def test_a_pin_variable_naming_a_folder_is_refused_and_a_missing_file_is_said(cli, releases, store, tmp_path,
                                                                               monkeypatch):
    releases.publish("drunet-dpir")
    monkeypatch.setenv(weights.PINS_ENV, str(tmp_path))
    result = run(cli, store, "drunet-dpir")
    assert result.code == 2 and "which is not a file" in result.err and not store.exists(), result.err
    missing = tmp_path / "tema" / "pins.json"  # a typo: pinning would be off without a word
    monkeypatch.setenv(weights.PINS_ENV, str(missing))
    result = run(cli, store, "drunet-dpir")
    assert result.code == 0 and f"{missing}, which does not exist: no weights are pinned" in result.err
