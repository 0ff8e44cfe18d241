"""File helpers shared by the readers: gzip detection, decoding, line-numbered tables and CSVs,
the catalogue files found beside a log, and `_finish`, where every reader ends.

Structural problems raise `MalformedFileError` with the file and 1-based line.
"""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.data.clean import CleanPolicy, clean
from shoprec.data.readers._loaded import LoadedData
from shoprec.data.schema import Catalogue, Interactions, QualityReport
from shoprec.errors import DataError, EmptyDataError, MalformedFileError, require_extra


def _existing(path: str | Path, what: str, allow_dir: bool = False) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such {what} file.")
    if p.is_dir() and not allow_dir:
        raise DataError(f"{p}: is a folder; expected a {what} file.")
    return p


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _compression(path: Path) -> str | None:
    return "gzip" if _is_gzip(path) else None


def _read_bytes(path: Path) -> bytes:
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise MalformedFileError(path, None, f"cannot be read as gzip: {exc}") from None


def _decode(path: Path, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MalformedFileError(path, line, f"not valid {encoding} text ({exc.reason})") from None


def _read_lines(path: Path, encoding: str = "utf-8") -> pd.Series:
    """Non-blank lines as a str Series indexed by 1-based line number."""
    lines = _decode(path, _read_bytes(path), encoding).split("\n")
    series = pd.Series(lines, index=np.arange(1, len(lines) + 1), dtype="str").str.rstrip("\r")
    return series[series.str.strip() != ""]


def _first_line(path: Path) -> str | None:
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:  # type: ignore[operator]
        for line in fh:
            if line.strip():
                return line.rstrip("\r\n")
    return None


def _line_text(path: Path, number: int | None, encoding: str = "utf-8") -> str:
    """The text of one line, for error messages (only read on the error path)."""
    if number is None:
        return ""
    lines = _read_bytes(path).split(b"\n", number)
    text = lines[number - 1].decode(encoding, errors="replace") if len(lines) >= number else ""
    return text.rstrip("\r")[:200]


def _parser_error_line(exc: Exception) -> tuple[int | None, int | None]:
    match = re.search(r"line (\d+), saw (\d+)", str(exc))
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


def _read_table(
    path: Path,
    sep: str,
    names: list[str],
    layout: str,
    *,
    int_columns: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    skip: int = 0,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """A delimited file whose every line has exactly len(names) fields, indexed by line number.

    Raises MalformedFileError at the first line with another number of fields, or with a
    non-integer in one of `int_columns`. Blank lines are skipped. Fields in `optional` may be
    empty (NaN). Names starting with "_" are fields that must be empty (the gaps of a '::'
    separator split on ':'). `layout` describes a correct line in error messages.
    """
    columns = [*names, "_extra"]  # a sentinel column catches lines with one field too many
    dtype = {c: str for c in columns if c not in int_columns}
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=columns,
            skiprows=skip,
            dtype=dtype,  # type: ignore[arg-type]
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,  # keeps row i on line i + 1 + skip
            quoting=csv.QUOTE_NONE,
            engine="c",
            compression=_compression(path),
            encoding=encoding,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in names})
    except pd.errors.ParserError as exc:
        line, _ = _parser_error_line(exc)
        raise MalformedFileError(
            path, line, f"expected {layout}, got {_line_text(path, line, encoding)!r}"
        ) from None
    except UnicodeDecodeError:
        _decode(path, _read_bytes(path), encoding)  # raises with the line number
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise MalformedFileError(path, None, f"cannot be read: {exc}") from None
    frame.index = np.arange(1 + skip, len(frame) + 1 + skip)
    frame = frame[frame.notna().any(axis=1)]  # blank lines
    fields = [n for n in names if not n.startswith("_") and n not in optional]
    spacers = [n for n in columns if n.startswith("_")]  # must stay empty
    bad = (
        frame[fields].isna().any(axis=1).to_numpy() | frame[spacers].notna().any(axis=1).to_numpy()
    )
    if bad.any():
        line = int(frame.index[np.argmax(bad)])
        raise MalformedFileError(
            path, line, f"expected {layout}, got {_line_text(path, line, encoding)!r}"
        )
    frame = frame.drop(columns=spacers)
    for name in int_columns:
        frame[name] = _integers(path, frame[name], name)
    return frame


def _integers(path: Path, values: pd.Series, name: str) -> pd.Series:
    """An int64 column, or MalformedFileError at the first value that is not an integer."""
    if pd.api.types.is_integer_dtype(values):
        return values.astype(np.int64)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() | (numbers % 1 != 0)).to_numpy()
    if bad.any():
        at = int(np.argmax(bad))
        raise MalformedFileError(
            path, int(values.index[at]), f"{name} must be an integer, got {str(values.iloc[at])!r}"
        )
    return numbers.astype(np.int64)


def _require_columns(
    path: Path, frame: pd.DataFrame, required: list[str] | tuple[str, ...], line: int | None = 1
) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MalformedFileError(
            path,
            line,
            f"missing the required columns {missing}; found {list(map(str, frame.columns))}",
        )


def _csv_header(path: Path, sep: str | None = None) -> tuple[list[str], str]:
    """The header's column names and the separator (guessed from the header when None)."""
    first = _first_line(path) or ""
    if sep is None:
        sep = max((",", "\t", ";", "|"), key=first.count)
    return [c.strip().strip('"') for c in first.split(sep)], sep


def _read_csv_text(
    path: Path,
    sep: str | None = None,
    numeric: tuple[str, ...] = (),
    usecols: list[str] | None = None,
) -> pd.DataFrame:
    """A CSV with a header; utf-8, else latin-1.

    Columns are read as str (so ids keep leading zeros), except `numeric` ones, which the fast C
    parser converts itself (they stay str when a row holds a non-number; `to_float` copes).
    """
    header, sep = _csv_header(path, sep)
    dtype = {c: str for c in header if c not in numeric}
    for encoding in ("utf-8", "latin-1"):
        try:
            return pd.read_csv(
                path,
                sep=sep,
                dtype=dtype,  # type: ignore[arg-type]
                usecols=usecols,
                keep_default_na=False,
                na_values=[""],
                engine="c",
                compression=_compression(path),
                encoding=encoding,
            )
        except UnicodeDecodeError:
            continue  # shop exports from spreadsheets are often latin-1; latin-1 always decodes
        except pd.errors.EmptyDataError:
            raise EmptyDataError(f"{path}: the file is empty.") from None
        except pd.errors.ParserError as exc:
            line, saw = _parser_error_line(exc)
            raise MalformedFileError(
                path, line, f"has {saw} fields where the header has fewer"
            ) from None
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedFileError(path, None, f"cannot be read: {exc}") from None
    raise AssertionError("unreachable: latin-1 decodes any byte")  # pragma: no cover


def _beside(path: Path, names: list[str]) -> Path | None:
    for name in names:
        for candidate in (path.parent / name, path.parent / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _finish(
    path: Path,
    frame: pd.DataFrame,
    policy: CleanPolicy,
    catalogue: pd.DataFrame | None = None,
    *,
    report: QualityReport | None = None,
    ordinal_time: bool = False,
) -> LoadedData:
    """Clean the rows and wrap them; every reader ends here."""
    events, report = clean(frame, str(path), policy, report=report, ordinal_time=ordinal_time)
    if len(events) == 0:
        found = ", ".join(f"{k}: {v}" for k, v in report.counts.items()) or "the file has no rows"
        raise EmptyDataError(f"{path}: no usable interactions ({found}).")
    name = path.name.removesuffix(".gz").split(".")[0] or path.name
    return LoadedData(
        Interactions.from_frame(events, name),
        Catalogue.from_frame(catalogue) if catalogue is not None else None,
        report,
    )


def _shoprec_catalogue(path: Path) -> pd.DataFrame:
    """A catalogue in our layout: CSV (Parquet by suffix) with item[, title, category, price]."""
    if path.name.lower().removesuffix(".gz").endswith((".parquet", ".pq")):
        require_extra("pyarrow", "parquet")
        frame = pd.read_parquet(path)
        line = None
    else:
        frame = _read_csv_text(path)
        line = 1
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    _require_columns(path, frame, ["item"], line)
    return frame
