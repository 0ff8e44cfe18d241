"""`--param KEY=VALUE`: the one parser every command uses for hyperparameters.

Values read as JSON where they can (`3`, `0.1`, `true`, `null`, `[64, 32]`, `{"view": 1}`), with
Python's spellings accepted too (`True`, `False`, `None`, `none`); anything else stays a string
(`block=sasrec`, `device=cpu`). Keys may use dashes for underscores. Commands that configure
several models take `MODEL:KEY=VALUE` (`dp-mf:factors=64`).
"""

from __future__ import annotations

import json
from typing import Any

from shoprec.errors import ConfigError

__all__ = ["parse_params", "parse_scoped_params", "parse_value"]

_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.1' -> 0.1, 'inf' -> inf, 'true'/'True' -> True, 'none'/'null' -> None,
    '[64,32]' -> [64, 32], anything else -> the string itself."""
    lowered = text.strip().lower()
    if lowered in _WORDS:
        return _WORDS[lowered]
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return float(text)  # what JSON lacks: 'inf', '-inf', 'nan'
    except ValueError:
        return text


def _split(pair: str, form: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--param expects {form}. Got {pair!r} instead.")
    return key.replace("-", "_"), value


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE strings -> a parameter dict (a repeated key keeps its last value)."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, value = _split(pair, "KEY=VALUE, e.g. factors=64")
        params[key] = parse_value(value)
    return params


def parse_scoped_params(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """MODEL:KEY=VALUE strings -> {model: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs or []:
        model, sep, rest = pair.partition(":")
        if not sep or not model.strip() or "=" in model:
            raise ConfigError(f"--param expects MODEL:KEY=VALUE, e.g. dp-mf:factors=64. Got {pair!r} instead.")
        key, value = _split(rest, "MODEL:KEY=VALUE, e.g. dp-mf:factors=64")
        out.setdefault(model.strip(), {})[key] = parse_value(value)
    return out
