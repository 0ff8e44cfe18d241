"""`--param KEY=VALUE`: one parser for every command."""

from __future__ import annotations

import math

import pytest

from shoprec.cli.params import parse_params, parse_scoped_params, parse_value
from shoprec.errors import ConfigError


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3), ("0.1", 0.1), ("1e-3", 0.001), ("true", True), ("False", False), ("none", None),
        ("None", None), ("null", None), ("[64,32]", [64, 32]), ('{"view": 1}', {"view": 1}),
        ("sasrec", "sasrec"), ("cpu", "cpu"), ("view=1,purchase=5", "view=1,purchase=5"),
    ],
)
def test_values_read_as_json_with_python_spellings_and_strings_otherwise(text, value):
    assert parse_value(text) == value


def test_infinity_reads_as_a_float():
    assert parse_value("inf") == math.inf


def test_keys_take_dashes_for_underscores_and_the_last_repeat_wins():
    assert parse_params(["max-len=200", "d=64", "d=128"]) == {"max_len": 200, "d": 128}


def test_scoped_params_group_by_model():
    assert parse_scoped_params(["dp-mf:factors=64", "dp-transformer:d=32", "dp-mf:epochs=3"]) == {
        "dp-mf": {"factors": 64, "epochs": 3}, "dp-transformer": {"d": 32}}


@pytest.mark.parametrize("pair", ["factors", "=3", ""])
def test_a_pair_without_key_or_value_is_refused(pair):
    with pytest.raises(ConfigError, match="--param expects KEY=VALUE"):
        parse_params([pair])


@pytest.mark.parametrize("pair", ["factors=64", ":factors=64", "dp-mf:=3"])
def test_a_scoped_pair_without_its_model_is_refused(pair):
    with pytest.raises(ConfigError, match="MODEL:KEY=VALUE"):
        parse_scoped_params([pair])
