"""Every exception shoprec raises on purpose, in one place.

The tree::

    ShoprecError                      base of everything below; catch this to catch all
    ├── DataError                     input data is malformed, inconsistent or unusable
    │   ├── MalformedFileError        a file cannot be parsed; names the file, line and problem
    │   └── EmptyDataError            nothing left to work with (empty log, empty history, ...)
    ├── ConfigError                   a parameter is outside its allowed values (also a ValueError)
    ├── UnknownIdError                a user or item id is not in the vocabulary (also a KeyError)
    ├── NotFittedError                a model was used before `fit`
    ├── ModelFormatError              a saved model file is not one shoprec can load
    └── MissingExtraError             an optional dependency is not installed; names the pip command

The HTTP layer maps these to status codes; the library itself never exits or prints.
"""

from __future__ import annotations


class ShoprecError(Exception):
    """Base class of all errors raised deliberately by shoprec."""


class DataError(ShoprecError, ValueError):
    """Input data is malformed, inconsistent or unusable."""


class MalformedFileError(DataError):
    """A file could not be parsed. The message names the file, the line and the problem."""

    def __init__(self, path: object, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class EmptyDataError(DataError):
    """There is nothing to work with: an empty log, an empty history, no test users."""


class ConfigError(ShoprecError, ValueError):
    """A parameter is outside its allowed values."""


class ConflictError(ShoprecError, ValueError):
    """Data that contradicts what is stored under the same id (an event id re-used with another
    payload). `details` names what differs."""

    def __init__(self, message: str, details: list | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class UnknownIdError(ShoprecError, KeyError):
    """A user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class NotFittedError(ShoprecError, RuntimeError):
    """A model was asked to recommend or save before it was fitted."""


class ModelFormatError(ShoprecError, ValueError):
    """A saved model file is missing, corrupt, from another model, or from an unknown version."""


class MissingExtraError(ShoprecError, ImportError):
    """An optional dependency is missing. The message names the pip command that installs it."""


def require_extra(module: str, extra: str):
    """Import an optional dependency, or raise MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{module!r} is not installed; it comes with shoprec's {extra!r} extra: "
            f"pip install 'shoprec[{extra}]'"
        ) from exc


def check_int(name: str, value: object, low: int, high: int, where: str = "") -> int:
    """Validate an integer parameter with a message that names it, its range and what came."""
    place = f" of {where}" if where else ""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_np_int(value):
        raise ConfigError(
            f"The {name!r} parameter{place} must be an int in [{low}, {high}]. "
            f"Got {value!r} ({type(value).__name__}) instead."
        )
    value = int(value)  # type: ignore[arg-type]
    if not low <= value <= high:
        raise ConfigError(
            f"The {name!r} parameter{place} must be an int in [{low}, {high}]. Got {value} instead."
        )
    return value


def check_float(name: str, value: object, low: float, high: float, where: str = "") -> float:
    """Validate a float parameter (ints accepted) with a message naming range and value."""
    place = f" of {where}" if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_np_number(value):
        raise ConfigError(
            f"The {name!r} parameter{place} must be a number in [{low}, {high}]. "
            f"Got {value!r} ({type(value).__name__}) instead."
        )
    value = float(value)  # type: ignore[arg-type]
    if not low <= value <= high:
        raise ConfigError(
            f"The {name!r} parameter{place} must be a number in [{low}, {high}]. Got {value} instead."
        )
    return value


def check_choice(name: str, value: object, allowed: tuple[str, ...] | list[str], where: str = "") -> str:
    """Validate a string option against its allowed values."""
    place = f" of {where}" if where else ""
    if value not in allowed:
        raise ConfigError(
            f"The {name!r} parameter{place} must be one of {list(allowed)}. Got {value!r} instead."
        )
    return str(value)


def check_bool(name: str, value: object, where: str = "") -> bool:
    """Validate a flag: True or False, nothing else (not 1, not "yes")."""
    if not isinstance(value, bool):
        place = f" of {where}" if where else ""
        raise ConfigError(f"The {name!r} parameter{place} must be a bool. Got {value!r} instead.")
    return value


def check_optional_str(name: str, value: object, where: str = "") -> str | None:
    """Validate an optional string (a path, say): a str or None."""
    if value is not None and not isinstance(value, str):
        place = f" of {where}" if where else ""
        raise ConfigError(f"The {name!r} parameter{place} must be a str path or None. Got {value!r} instead.")
    return value


def check_param_names(where: str, params: dict, known: dict | list) -> None:
    """Refuse parameter names that `where` does not have, in one line that names the first,
    suggests the closest known name and lists the known ones."""
    import difflib

    unknown = [key for key in params if key not in known]
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none"
    raise ConfigError(f"{where} has no parameter {key!r}.{hint} Its parameters: {listing}.")


def _is_np_int(value: object) -> bool:
    import numpy as np

    return isinstance(value, np.integer)


def _is_np_number(value: object) -> bool:
    import numpy as np

    return isinstance(value, (np.integer, np.floating))
