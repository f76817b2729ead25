"""Parsing of ``name[k=v]`` and noise specs."""

import pytest

from bench.errors import UsageError
from bench.specs import Spec, parse_count, parse_noise, parse_spec


def test_spec_parses_typed_parameters_and_has_a_canonical_label():
    spec = parse_spec("nlm[patch_size=7, h=0.05,fast=true,mode=soft,s=25/255]")
    assert spec.name == "nlm"
    assert spec.params == {"patch_size": 7, "h": 0.05, "fast": True, "mode": "soft",
                           "s": pytest.approx(25 / 255)}
    assert parse_spec("nlm[h=0.05,patch_size=7]").label == "nlm[h=0.05,patch_size=7]"
    assert parse_spec("nlm[patch_size=7,h=0.05]") == Spec("nlm", {"h": 0.05, "patch_size": 7})


def test_family_names_keep_their_suffix():
    assert parse_spec("folder:/data/Set12").name == "folder:/data/Set12"
    assert parse_spec("deepinv:DRUNet[weights=/w.pth]").params == {"weights": "/w.pth"}


@pytest.mark.parametrize("text", ["nlm[h]", "nlm[=1]", "nlm[h=1", "nlm[h=1]x", "nlm[h=1,h=2]", "[h=1]"])
def test_malformed_specs_are_usage_errors(text):
    with pytest.raises(UsageError, match="malformed"):
        parse_spec(text)


def test_noise_spec():
    noise = parse_noise("gaussian:0.1, 25/255")
    assert noise.degradation == "gaussian" and noise.levels == ("0.1", "25/255")


@pytest.mark.parametrize("text", ["gaussian", "gaussian:", ":0.1"])
def test_malformed_noise_specs(text):
    with pytest.raises(UsageError, match="malformed noise spec"):
        parse_noise(text)


@pytest.mark.parametrize("text, count", [("180000", 180_000), ("180_000", 180_000), ("180k", 180_000),
                                         ("180K", 180_000), ("1.5M", 1_500_000), ("0.5k", 500), ("1e3", 1000)])
def test_counts_take_k_and_m_suffixes(text, count):
    assert parse_count(text) == count and isinstance(parse_count(text), int)


@pytest.mark.parametrize("text", ["", "k", "18x", "1.5", "1.2345k", "inf", "nan", "1k5"])
def test_malformed_counts_are_value_errors(text):
    with pytest.raises(ValueError, match="count"):
        parse_count(text)
