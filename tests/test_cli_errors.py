"""Bad input gets one line and exit 2 (not a traceback); help texts and outputs are well formed."""

from __future__ import annotations

import builtins

import pytest

from bench import entry
from bench.cli import build_parser

QUICK = ["-d", "skimage-gray[crop=32]", "-m", "noisy", "--quiet", "--limit-images", "2"]


def one_line(result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{result.err}"
    return lines[0]


def test_a_gaussian_sigma_on_the_255_scale_is_refused_with_a_hint(cli, store):
    result = cli("run", *QUICK, "-n", "gaussian:15/255,25", "--store", store)
    assert result.code == 2
    assert "25/255" in one_line(result)
    assert not store.exists()


def test_a_store_below_a_regular_file_is_one_line(cli, tmp_path):
    (tmp_path / "file").write_text("")
    result = cli("run", *QUICK, "-n", "gaussian:0.1", "--store", tmp_path / "file" / "s.sqlite")
    assert result.code == 2
    assert "cannot create the store" in one_line(result)


def test_a_store_under_proc_is_one_line(cli):
    result = cli("run", *QUICK, "-n", "gaussian:0.1", "--store", "/proc/denoise-bench/s.sqlite")
    assert result.code == 2
    assert "/proc/denoise-bench" in one_line(result)


def test_an_unreadable_image_is_one_line_naming_the_file(cli, store, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_text("not a png")
    result = cli("run", "-d", f"folder:{folder}", "-n", "gaussian:0.1", "-m", "noisy", "--quiet",
                 "--store", store)
    assert result.code == 2
    line = one_line(result)
    assert "broken.png" in line and "pip install" not in line
    assert not store.exists()


def test_ctrl_c_while_importing_exits_130_quietly(monkeypatch, capsys):
    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "bench.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        entry.main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == ""


def subcommands():
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_help_texts_have_no_doubled_percent(name):
    assert "%%" not in subcommands()[name].format_help()
