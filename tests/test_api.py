"""The Python API: bench.evaluate on objects from the session, Results, suites, validator.

References: the same weights run as a registered plugin row (bit for bit), the DnCNN
paper's Set12 number (Zhang et al. 2017, Table 3), and the grid's own noise draw.
"""

from __future__ import annotations

import threading

import pytest
import torch

import bench
from bench.api.inprocess import fingerprint
from bench_plugins import dncnn
from conftest import rows

DATA = "skimage-gray[crop=48]"
NOISE = "gaussian:25/255"


class Blur(torch.nn.Module):
    """A 3x3 box blur as a learnable convolution: blind (forward takes y only)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode="reflect")
        torch.nn.init.constant_(self.conv.weight, 1 / 9)

    def forward(self, y):
        return self.conv(y)


def small(model, store, **kwargs):
    return bench.evaluate(model, datasets=DATA, noise=NOISE, limit_images=3, store=str(store), progress=False,
                          **kwargs)


def authors_dncnn_s(mirror):
    """The authors' DnCNN-S (sigma = 25/255) built in this session: a torch module, not a row."""
    from bench.data import fetching

    with fetching.using(fetching.FetchSettings.resolve(None, None, True)):
        model = dncnn.dncnn_s(level=25 / 255, channels=1)
    assert isinstance(model, torch.nn.Module)
    return model


def test_a_session_module_is_its_plugin_row_bit_for_bit_and_shows_the_papers_delta(mirror, tmp_path, one_thread):
    store = tmp_path / "bench.sqlite"
    model = authors_dncnn_s(mirror)
    mine = bench.denoiser(model, name="my-dncnn", published_as="DnCNN")
    results = bench.evaluate([mine, "dncnn-s"], datasets="set12", noise=NOISE, protocol="paper",
                             metrics="psnr", store=str(store), progress=False)
    per_image = results.per_image("psnr").pivot_table(index="image_id", columns="denoiser", values="value")
    assert len(per_image) == 12
    assert (per_image["my-dncnn"] - per_image["dncnn-s"]).abs().max() < 1e-6
    table = results.table()
    row = table[table["denoiser"] == "my-dncnn"].iloc[0]
    assert row["published"] == 30.44  # DnCNN-S, Set12, sigma 25 (Table 3)
    assert row["delta"] == pytest.approx(row["mean"] - 30.44)


def test_the_same_object_reuses_its_cells_and_one_changed_weight_recomputes(tmp_path):
    model, store = Blur(), tmp_path / "bench.sqlite"
    first = small(model, store)
    assert first.summary.cached == 0 and first.summary.counts["done"] == 1
    again = small(model, store)
    assert again.summary.cached == 1
    with torch.no_grad():
        model.conv.weight[0, 0, 0, 0] += 0.05
    changed = small(model, store)
    assert changed.summary.cached == 0
    assert changed.table()["mean"].iloc[0] != first.table()["mean"].iloc[0]
    assert next(model.parameters()).device.type == "cpu"


def test_the_model_comes_back_in_its_own_mode(tmp_path):
    model = Blur().train()
    small(model, tmp_path / "bench.sqlite")
    assert model.training, "evaluate left a training model in eval mode"


def test_a_callable_is_keyed_by_its_source_closure_and_globals():
    def make(width):
        def smooth(y, sigma):
            return y * width
        return smooth

    assert fingerprint(make(2))[0] == fingerprint(make(2))[0]
    assert fingerprint(make(2))[0] != fingerprint(make(3))[0]
    assert fingerprint(Blur())[0] == fingerprint(Blur())[0]
    other = Blur()
    other.conv.stride = (2, 2)  # a setting outside the state dict
    assert fingerprint(other)[0] != fingerprint(Blur())[0]


def test_a_lambda_over_a_live_object_is_computed_and_shown_but_not_cached(tmp_path):
    lock = threading.Lock()
    store = tmp_path / "bench.sqlite"

    def with_lock(y):
        with lock:
            return y

    first = small({"locked": with_lock}, store)
    again = small({"locked": with_lock}, store)
    assert again.summary.cached == 0 and again.summary.counts["done"] == 1
    notes = again.table().attrs["notes"]
    assert any("locked: not cached" in note and "lock" in note for note in notes), notes
    assert "not cached" in again._repr_html_()
    assert first.table()["mean"].iloc[0] == again.table()["mean"].iloc[0]


@pytest.mark.parametrize("make, message", [
    (lambda: 42, "a denoiser must be a torch.nn.Module or a callable"),
    (lambda: (lambda y: y[..., :-1]), "returned shape"),
    (lambda: (lambda y: 1 / 0), "failed on one image"),
    (lambda: bench.denoiser(Blur(), sigma_aware=True), "declared sigma_aware=True, but forward takes only (y)"),
    (lambda: {"noisy": Blur()}, "'noisy' is a registered row's name"),
    (lambda: {"a[b=1]": Blur()}, "use a plain name"),
])
def test_bad_objects_are_one_usage_error_and_nothing_is_written(tmp_path, make, message):
    store = tmp_path / "store" / "bench.sqlite"
    with pytest.raises(bench.UsageError, match=None) as caught:
        small(make(), store)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not store.exists()


def test_an_unknown_suite_lists_the_suites(tmp_path):
    with pytest.raises(bench.UsageError) as caught:
        bench.evaluate("noisy", "awgn-grey", store=str(tmp_path / "s.sqlite"))
    assert "unknown suite 'awgn-grey'" in str(caught.value) and "awgn-gray" in str(caught.value)


def test_memory_store_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = small(Blur(), ":memory:")
    assert results.table()["n"].iloc[0] == 3
    folder = results._folder.name
    del results
    import gc

    gc.collect()
    assert not list(tmp_path.iterdir()) and not __import__("os").path.exists(folder)


def test_results_tables_report_and_csv(tmp_path):
    results = bench.evaluate({"blur": Blur(), "noisy": "noisy"}, datasets=DATA, noise=NOISE, limit_images=3,
                             store=str(tmp_path / "bench.sqlite"), progress=False)
    table = results.table("psnr")
    assert list(table["denoiser"]) == ["blur", "noisy"]
    compared = results.compare("blur", "noisy")
    assert compared["diff"].iloc[0] == pytest.approx(table["mean"].iloc[0] - table["mean"].iloc[1])
    costs = results.costs()
    assert set(costs["denoiser"]) == {"blur", "noisy"} and (costs["seconds_per_image"] > 0).all()
    csv = results.to_csv(tmp_path / "board.csv")
    assert csv.read_text().startswith("metric,dataset") and (tmp_path / "board.provenance.json").exists()
    report = results.report(tmp_path / "report.html")
    assert "blur" in report.read_text()
    assert "<table>" in results._repr_html_()


def test_validator_is_what_evaluate_stores_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = Blur()
    validate = bench.validator(DATA, sigma=25 / 255, limit_images=3)
    assert not list(tmp_path.iterdir())
    mean, per_image = validate(model, per_image=True)
    stored = small(model, tmp_path / "bench.sqlite")
    assert mean == pytest.approx(stored.table("psnr")["mean"].iloc[0], abs=1e-6)
    assert per_image == pytest.approx(dict(rows(tmp_path / "bench.sqlite",
                                                "SELECT image_id, value FROM scores WHERE metric = 'psnr'")), abs=1e-9)


def test_a_suite_shows_its_rows_published_numbers_beside_a_users_row(mirror, tmp_path, cli, write_plugin, one_thread):
    results = bench.evaluate({"blur": Blur()}, "awgn-gray", datasets="set12", noise=NOISE, limit_images=2,
                             metrics="psnr", store=str(tmp_path / "a.sqlite"), progress=False)
    table = results.table()
    published = table[table["denoiser"] != "blur"].set_index("denoiser")["published"]
    assert published["dncnn-s"] == 30.44 and published["bm3d"] == 29.97 and published["ffdnet"] == 30.43
    assert table[table["denoiser"] != "blur"]["mean"].isna().all()  # shown, not recomputed
    plugin = write_plugin(
        "import bench, torch\n"
        "class Blur(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode='reflect')\n"
        "        torch.nn.init.constant_(self.conv.weight, 1 / 9)\n"
        "    def forward(self, y, sigma):\n"
        "        return self.conv(y)\n"
        "@bench.hookimpl\n"
        "def register_denoisers(register):\n"
        "    register('blur', Blur, sigma_aware=False)\n")
    result = cli("run", "awgn-gray", "-m", "blur", "--plugin", plugin, "-d", "set12", "-n", NOISE,
                 "--limit-images", "2", "--metric", "psnr", "--store", tmp_path / "b.sqlite")
    assert result.code == 0, result.err
    assert "30.44" in result.out and "29.97" in result.out and "blur" in result.out
    assert rows(tmp_path / "b.sqlite", "SELECT DISTINCT denoiser FROM cells") == [("blur",)]
    python = sorted(v for _, v in rows(tmp_path / "a.sqlite", "SELECT image_id, value FROM scores"))
    command = sorted(v for _, v in rows(tmp_path / "b.sqlite", "SELECT image_id, value FROM scores"))
    assert python == command  # one program: the same numbers from Python and from a plugin file


def test_list_suites_names_each_with_its_cost(cli):
    result = cli("list", "suites")
    assert result.code == 0
    for name in ("awgn-gray", "awgn-color", "poisson", "default"):
        assert name in result.out
    assert "2160" in result.out  # awgn-gray: (12 + 68) images x 3 levels x 9 rows


def test_an_unknown_suite_on_the_command_line_is_one_line_and_exit_2(cli, tmp_path):
    result = cli("run", "awgn-grey", "--store", tmp_path / "s.sqlite")
    assert result.code == 2 and "unknown suite 'awgn-grey'" in result.err and "awgn-gray" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "s.sqlite").exists()
