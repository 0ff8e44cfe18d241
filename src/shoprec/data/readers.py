"""Readers: public recommendation datasets and shop exports -> Interactions, Catalogue, report.

Every reader reads gzip transparently (detected by the file's magic bytes, whatever its name),
passes the rows through `shoprec.data.clean.clean`, and returns a `LoadedData` whose report counts
every row that was dropped or repaired. Structural problems raise `MalformedFileError` with the
file and 1-based line; row-level problems in shop logs are counted (see `shoprec.data.clean`).

=================  ==========================================================================
format             source, and how it becomes events
=================  ==========================================================================
sequence           SASRec/BERT4Rec ``user item`` lines, grouped by user, chronological. No
                   times: the line number is the timestamp, so order is kept. Event "purchase".
s3rec              S3-Rec ``user item item ...`` lines; the position in the file is the time.
movielens          ML-1M ``UserID::MovieID::Rating::Timestamp`` (event "rating", value = the
                   rating), or the two-field ``UserID::MovieID`` pairs (file order as time).
                   Catalogue: ``movies.dat[.gz]`` beside it (latin-1); category = first genre.
movielens-100k     ML-100K ``u.data`` (tab: user item rating timestamp, also u1.base ...), with
                   ``u.item[.gz]`` beside it; category = the first genre flagged.
online-retail      UCI Online Retail CSV: invoice lines -> purchases (value = quantity). See
                   `read_online_retail` for cancellations, adjustments and the catalogue.
taobao             Tianchi UserBehavior CSV without header; pv/cart/fav/buy -> view/cart/
                   favourite/purchase; category_id into the catalogue. Default time window
                   2017-11-25 .. 2017-12-03 (UTC+8), the dataset's documented span.
amazon-json        Amazon review JSON lines (2014/2018: reviewerID, asin, overall,
                   unixReviewTime; 2023: user_id, parent_asin, rating, timestamp in ms). Event
                   "rating". Names and review texts are never kept.
llmrank            RecBole atomic ``.inter`` files: LLMRank's ``user_id item_id_list item_id``
                   (history + target, position as time) or plain ``user_id item_id
                   [rating] [timestamp]``; titles from the ``.item`` file beside it.
shoprec            Our own layout (the bundled demo shop): ``*events.csv[.gz]`` with the header
                   ``user,item[,event],timestamp[,value]`` (epoch seconds or ISO times) and
                   ``*catalogue.csv[.gz]`` (``item,title,category,price``) beside it.
csv, parquet       Any log, with `mapping` from our column names to the file's.
=================  ==========================================================================

`catalogue=` replaces the catalogue a format finds beside its file. It is read in the format's
own catalogue layout (movies.dat, u.item, .item) where it has one, else as a shoprec catalogue
(CSV, or Parquet by suffix, with the columns item[, title, category, price]).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.data.clean import CleanPolicy, _missing, clean, to_float
from shoprec.data.dataset import Dataset
from shoprec.data.schema import Catalogue, Interactions, QualityReport
from shoprec.errors import (
    ConfigError,
    DataError,
    EmptyDataError,
    MalformedFileError,
    check_choice,
    require_extra,
)

FORMATS: tuple[str, ...] = (
    "sequence",
    "s3rec",
    "movielens",
    "movielens-100k",
    "online-retail",
    "taobao",
    "amazon-json",
    "llmrank",
    "shoprec",
    "csv",
    "parquet",
)

MAPPING_KEYS = ("user", "item", "event", "timestamp", "value", "title", "category", "price")
"""Our column names that `mapping` may map (the last three build a catalogue from the log)."""

TAOBAO_WINDOW = ("2017-11-25T00:00:00+08:00", "2017-12-03T23:59:59+08:00")
"""The span the Tianchi UserBehavior dataset documents; the raw file has a few rows outside it."""

TAOBAO_EVENTS = {"pv": "view", "cart": "cart", "fav": "favourite", "buy": "purchase"}

DEMO_EVENTS = "online_retail_events.csv.gz"
DEMO_CATALOGUE = "online_retail_catalogue.csv.gz"


@dataclass
class LoadedData:
    """What a reader returns: the cleaned log, the catalogue (if any) and the quality report."""

    interactions: Interactions
    catalogue: Catalogue | None
    report: QualityReport

    def dataset(self) -> Dataset:
        """The log indexed against vocabularies of its users and items (and catalogue items)."""
        return Dataset.from_interactions(self.interactions, self.catalogue)


def load(
    path: str | Path,
    format: str,
    *,
    mapping: dict[str, str] | None = None,
    catalogue: str | Path | None = None,
    clean_policy: CleanPolicy | None = None,
    min_timestamp: object = None,
    max_timestamp: object = None,
) -> LoadedData:
    """Read a behaviour log in one of FORMATS, clean it, and report what cleaning did.

    path: the log file (plain or gzip). For "shoprec" also a folder holding one *events.csv.
    mapping: csv/parquet only. Our column names -> the file's, e.g. {"user": "customer_id",
        "item": "sku", "timestamp": "ts"}; unmapped names are looked up as they are. user and
        item are required; without timestamp the row order is the time; without event every
        row is a "purchase". title/category/price build a catalogue from the same rows.
    catalogue: a catalogue file that replaces the one the format finds beside `path`.
    clean_policy: what to do with duplicates, bad rows and out-of-range times (CleanPolicy()).
    min_timestamp, max_timestamp: the time window (epoch seconds, ISO string or datetime);
        override the policy's window and the format's default one.

    Raises DataError for a missing file, MalformedFileError for a file that does not have the
    format's structure, EmptyDataError when no usable row is left.
    """
    check_choice("format", format, FORMATS, "load")
    if mapping and format not in ("csv", "parquet"):
        raise ConfigError(
            f"The 'mapping' parameter of load only applies to the formats ['csv', 'parquet']. "
            f"Got a mapping with format {format!r}."
        )
    policy = (clean_policy or CleanPolicy()).with_window(min_timestamp, max_timestamp)
    path = _existing(path, "log", allow_dir=format == "shoprec")
    cat_path = _existing(catalogue, "catalogue") if catalogue is not None else None
    reader = _READERS[format]
    if format in ("csv", "parquet"):
        return reader(path, policy, cat_path, mapping or {})
    return reader(path, policy, cat_path)


def load_demo() -> LoadedData:
    """The bundled demo shop: Online Retail purchases (UCI, CC BY 4.0), compacted.

    386,282 purchases of 4,335 customers over 3,660 products with titles, categories and prices;
    src/shoprec/demo/README.md says where it comes from and how it was built.
    """
    from importlib import resources

    root = resources.files("shoprec.demo")
    with (
        resources.as_file(root / DEMO_EVENTS) as events,
        resources.as_file(root / DEMO_CATALOGUE) as cat,
    ):
        if not Path(events).is_file():
            raise DataError(
                f"The bundled demo shop is missing ({events}); rebuild it with "
                f"`python scripts/build_demo_shop.py`."
            )
        return load(events, "shoprec", catalogue=cat if Path(cat).is_file() else None)


def sniff_format(path: str | Path) -> str | None:
    """A best-effort guess of a file's format from its name and first line; None if unsure."""
    path = Path(path)
    if path.is_dir():
        return "shoprec" if _events_in_dir(path, required=False) else None
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".inter"):
        return "llmrank"
    if re.fullmatch(r"u(\d|[ab])?\.(data|base|test)", name):
        return "movielens-100k"
    try:
        first = _first_line(path)
    except (OSError, EOFError, DataError, UnicodeDecodeError):
        return None
    if first is None:
        return None
    if first.lstrip().startswith("{"):
        return "amazon-json"
    if "::" in first:
        return "movielens"
    header = [c.strip().lower() for c in re.split(r"[,\t;]", first)]
    if "stockcode" in header:
        return "online-retail"
    if header[:2] == ["user", "item"] and "events" in name:
        return "shoprec"
    if len(header) == 5 and header[3] in ("pv", "cart", "fav", "buy") and header[0].isdigit():
        return "taobao"
    tokens = first.split()
    if all(t.isdigit() for t in tokens):
        if "\t" in first and len(tokens) == 4:
            return "movielens-100k"
        if len(tokens) == 2:
            return "sequence"
        if len(tokens) > 2 and " " in first:
            return "s3rec"
        return None
    if "," in first or "\t" in first:
        return "csv"
    return None


# --- file helpers ------------------------------------------------------------------------------


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


# --- fixed-layout research formats -------------------------------------------------------------


def _read_sequence(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    frame = _read_table(
        path,
        " ",
        ["user", "item"],
        "2 space-separated integers 'user item'",
        int_columns=("user", "item"),
    )
    frame["timestamp"] = frame.index.to_numpy(np.int64)  # the line number keeps the order
    cat = _shoprec_catalogue(catalogue) if catalogue else None
    return _finish(path, frame, policy, cat, ordinal_time=True)


def _explode_tokens(path: Path, users: pd.Series, tokens: pd.Series, integer: bool) -> pd.DataFrame:
    """One row per token of each line, with the global position as the time."""
    lengths = tokens.str.len().to_numpy()
    items = tokens.explode()
    if integer:
        items = _integers(path, items, "item")
    return pd.DataFrame(
        {
            "user": np.repeat(users.to_numpy(), lengths),
            "item": items.to_numpy(),
            "timestamp": np.arange(len(items), dtype=np.int64),
        }
    )


def _read_s3rec(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    tokens = _read_lines(path).str.split()
    short = (tokens.str.len() < 2).to_numpy()
    if short.any():
        line = int(tokens.index[np.argmax(short)])
        raise MalformedFileError(path, line, "expected 'user item item ...' with at least one item")
    users = _integers(path, tokens.str[0], "user")
    frame = _explode_tokens(path, users, tokens.str[1:], integer=True)
    cat = _shoprec_catalogue(catalogue) if catalogue else None
    return _finish(path, frame, policy, cat, ordinal_time=True)


def _movies_dat(path: Path) -> pd.DataFrame:
    lines = _read_lines(path, encoding="latin-1")
    parts = lines.str.split("::", n=2, expand=True)
    if parts.shape[1] < 3 or parts[2].isna().any():
        line = (
            int(lines.index[np.argmax(parts.isna().any(axis=1).to_numpy())]) if len(parts) else None
        )
        raise MalformedFileError(path, line, "expected 'MovieID::Title::Genres'")
    return pd.DataFrame(
        {
            "item": _integers(path, parts[0], "MovieID").astype(str),
            "title": parts[1],
            "category": parts[2].str.split("|").str[0],
        }
    )


def _read_movielens(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    first = _first_line(path) or ""
    n_fields = first.count("::") + 1
    if n_fields == 4:
        names = ["user", "_1", "item", "_2", "value", "_3", "timestamp"]
        layout = "'UserID::MovieID::Rating::Timestamp'"
        ints = ("user", "item", "timestamp")
    elif n_fields == 2:
        names, layout, ints = ["user", "_1", "item"], "'UserID::MovieID'", ("user", "item")
    else:
        raise MalformedFileError(
            path, 1, f"expected 'UserID::MovieID::Rating::Timestamp', got {first[:200]!r}"
        )
    # Split on single colons so pandas' fast C parser does the work; the '::' separators leave
    # empty fields in between, which must stay empty.
    frame = _read_table(path, ":", names, layout, int_columns=ints)
    if n_fields == 2:
        frame["timestamp"] = frame.index.to_numpy(np.int64)
    frame["event"] = "rating"
    movies = catalogue or _beside(path, ["movies.dat"])
    cat = _movies_dat(movies) if movies else None
    return _finish(path, frame, policy, cat, ordinal_time=n_fields == 2)


ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def _u_item(path: Path) -> pd.DataFrame:
    names = [
        "item",
        "title",
        "release",
        "video",
        "url",
        *[f"g{i}" for i in range(len(ML100K_GENRES))],
    ]
    frame = _read_table(
        path,
        "|",
        names,
        "24 '|'-separated fields",
        int_columns=("item",),
        optional=("title", "release", "video", "url"),
        encoding="latin-1",
    )
    flags = frame[names[5:]].to_numpy() == "1"
    first = np.where(flags.any(axis=1), np.argmax(flags, axis=1), -1)
    genres = np.append(np.array(ML100K_GENRES, dtype=object), "")
    return pd.DataFrame(
        {"item": frame["item"].astype(str), "title": frame["title"], "category": genres[first]}
    )


def _read_movielens_100k(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    frame = _read_table(
        path,
        "\t",
        ["user", "item", "value", "timestamp"],
        "4 tab-separated fields 'user item rating timestamp'",
        int_columns=("user", "item", "timestamp"),
    )
    frame["event"] = "rating"
    items = catalogue or _beside(path, ["u.item"])
    return _finish(path, frame, policy, _u_item(items) if items else None)


def _read_taobao(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    names = ["user", "item", "category", "event", "timestamp"]
    frame = _read_table(
        path,
        ",",
        names,
        "'user_id,item_id,category_id,behavior_type,timestamp'",
        int_columns=("user", "item", "category", "timestamp"),
    )
    if policy.min_timestamp is None and policy.max_timestamp is None:
        policy = policy.with_window(*TAOBAO_WINDOW)
    # The format's own event names; anything else is left for the policy to count and drop.
    frame["event"] = frame["event"].replace(TAOBAO_EVENTS)
    if catalogue:
        cat = _shoprec_catalogue(catalogue)
    else:
        cat = pd.DataFrame({"item": frame["item"], "category": frame["category"].astype(str)})
    return _finish(path, frame.drop(columns="category"), policy, cat)


def _read_amazon_json(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    try:
        raw = pd.read_json(path, lines=True, dtype=False, compression=_compression(path))
    except (ValueError, TypeError) as exc:
        raise _json_error(path, exc) from None
    if not isinstance(raw, pd.DataFrame) or raw.empty:
        raise EmptyDataError(f"{path}: the file holds no reviews.")
    if "reviewerID" in raw.columns:  # Amazon 2014 / 2018
        needed = {
            "user": "reviewerID",
            "item": "asin",
            "value": "overall",
            "timestamp": "unixReviewTime",
        }
        scale = 1
    else:  # Amazon 2023: ms timestamps
        item = "parent_asin" if "parent_asin" in raw.columns else "asin"
        needed = {"user": "user_id", "item": item, "value": "rating", "timestamp": "timestamp"}
        scale = 1000
    _require_columns(path, raw, list(needed.values()), None)
    # Keep only what is needed: names and review texts are direct identifiers or personal data.
    frame = pd.DataFrame({ours: raw[theirs] for ours, theirs in needed.items()})
    del raw
    if scale != 1:
        frame["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce") / scale
    frame["event"] = "rating"
    cat = _shoprec_catalogue(catalogue) if catalogue else None
    return _finish(path, frame, policy, cat)


def _json_error(path: Path, exc: Exception) -> MalformedFileError:
    """Find the first line that is not a JSON object (only runs once parsing has failed)."""
    text = _decode(path, _read_bytes(path), "utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            return MalformedFileError(
                path, number, f"not valid JSON ({err.msg} at column {err.colno})"
            )
        if not isinstance(record, dict):
            return MalformedFileError(
                path, number, f"expected a JSON object, got {type(record).__name__}"
            )
    return MalformedFileError(path, None, f"cannot be read as JSON lines: {exc}")


def _atomic_header(path: Path) -> list[str]:
    first = _first_line(path) or ""
    return [field.split(":")[0].strip() for field in first.split("\t")]


def _read_llmrank(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    header = _atomic_header(path)
    if "user_id" not in header or "item_id" not in header:
        raise MalformedFileError(
            path,
            1,
            f"expected a RecBole header with 'user_id:token' and 'item_id:token', got {header}",
        )
    frame = _read_table(
        path,
        "\t",
        header,
        f"{len(header)} tab-separated fields {header}",
        optional=("item_id_list",),
        skip=1,
    )
    if "item_id_list" in header:
        # History then target: the full chronological sequence. Tokens are ids, not integers.
        history = frame["item_id_list"].fillna("")
        tokens = (history + " " + frame["item_id"]).str.split()
        events = _explode_tokens(path, frame["user_id"], tokens, integer=False)
        ordinal = True
    else:
        events = pd.DataFrame({"user": frame["user_id"], "item": frame["item_id"]})
        if "rating" in header:
            events["value"], events["event"] = frame["rating"], "rating"
        ordinal = "timestamp" not in header
        events["timestamp"] = frame.index.to_numpy(np.int64) if ordinal else frame["timestamp"]
    items = catalogue or _recbole_item_file(path)
    return _finish(
        path, events, policy, _recbole_items(items) if items else None, ordinal_time=ordinal
    )


def _recbole_item_file(path: Path) -> Path | None:
    """`<dataset>.item` beside the .inter file: Games-6k.test.inter -> Games-6k.item, Games.item."""
    stem = path.name.split(".")[0]
    names = [f"{stem}.item", f"{stem.rsplit('-', 1)[0]}.item"]
    found = _beside(path, names)
    if found is None:
        others = sorted(path.parent.glob("*.item")) + sorted(path.parent.glob("*.item.gz"))
        found = others[0] if len(others) == 1 else None
    return found


def _recbole_items(path: Path) -> pd.DataFrame:
    header = _atomic_header(path)
    if "item_id" not in header:
        raise MalformedFileError(
            path, 1, f"expected a RecBole header with 'item_id:token', got {header}"
        )
    frame = _read_table(path, "\t", header, f"{len(header)} tab-separated fields {header}", skip=1)
    columns = {"item_id": "item", "title": "title", "categories": "category", "price": "price"}
    return frame[[c for c in columns if c in frame.columns]].rename(columns=columns)


# --- shop exports ------------------------------------------------------------------------------

RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
)
RETAIL_ALIASES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
"""Online Retail II (2009-2011) names the same columns differently."""

RETAIL_SERVICE_CODES = frozenset(
    {"POST", "DOT", "C2", "M", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"}
)
"""Stock codes that are services, not products: postage, carriage, manual, discount, samples,
bad-debt adjustment, bank charges, Amazon fees, charity commission. Gift vouchers (gift_*) too."""

_CATEGORY_MODIFIERS = frozenset(
    [
        "RED",
        "PINK",
        "BLUE",
        "GREEN",
        "WHITE",
        "BLACK",
        "CREAM",
        "IVORY",
        "GOLD",
        "SILVER",
        "YELLOW",
        "ORANGE",
        "PURPLE",
        "BROWN",
        "GREY",
        "GRAY",
        "NATURAL",
        "PASTEL",
        "COLOUR",
        "COLOURS",
        "COLOURED",
        "ASSORTED",
        "MULTI",
        "DESIGN",
        "DESIGNS",
        "RETROSPOT",
        "POLKADOT",
        "SPOT",
        "SPOTS",
        "SPOTTY",
        "PAISLEY",
        "FLORAL",
        "STRIPE",
        "STRIPES",
        "VINTAGE",
        "RETRO",
        "SMALL",
        "LARGE",
        "MEDIUM",
        "MINI",
        "JUMBO",
        "GIANT",
        "BIG",
        "TALL",
        "CM",
        "TIER",
        "SET",
        "OF",
        "AND",
        "WITH",
        "IN",
        "THE",
        "FOR",
        "TO",
        "A",
        "S",
        "X",
    ]
)
"""Trailing words of Online Retail descriptions that name a colour, pattern or size, not a kind."""


def retail_category(titles: pd.Series) -> pd.Series:
    """A product kind read from an Online Retail description, which has no category column.

    The rule: the last word (letters only) that is not a colour, pattern, size or filler word
    (`_CATEGORY_MODIFIERS`), put in the singular (-IES -> -Y; -XES/-CHES/-SHES/-SSES lose -ES;
    another final S is dropped unless doubled). "WHITE HANGING HEART T-LIGHT HOLDER" -> "HOLDER",
    "LUNCH BAG RED RETROSPOT" -> "BAG", "SET OF 3 CAKE TINS" -> "TIN". Empty title -> "".
    """
    words = titles.fillna("").astype(str).str.upper().str.findall(r"[A-Z]+").explode()
    words = words[words.notna()]
    kinds = words[~words.isin(_CATEGORY_MODIFIERS)]
    last = kinds.groupby(level=0).last()
    fallback = words.groupby(level=0).last()  # every word is a modifier: take the last one
    kind = last.reindex(titles.index).fillna(fallback.reindex(titles.index)).fillna("").astype(str)
    kind = kind.str.replace(r"IES$", "Y", regex=True)
    kind = kind.str.replace(r"(X|CH|SH|SS)ES$", r"\1", regex=True)
    kind = kind.str.replace(r"(?<=[^S])S$", "", regex=True)
    return kind


def read_online_retail(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    """UCI Online Retail: invoice lines of identified customers become purchase events.

    Policy, applied in this order (each row counted once, under the first rule it meets):

    * ``cancellations``: InvoiceNo starting with "C". Dropped; with
      ``CleanPolicy(cancellations="net")`` the cancelled units are also taken off the same
      customer's latest purchases of the item (``purchases_cancelled`` dropped,
      ``purchases_reduced`` repaired).
    * ``stock_adjustments``: a negative quantity on a non-"C" invoice (price 0, no customer).
      Dropped.
    * ``non_product_lines``: service stock codes (RETAIL_SERVICE_CODES, gift_*). Dropped unless
      ``CleanPolicy(drop_non_products=False)``.
    * ``missing_customer``: no CustomerID, so no shopper to learn from. Dropped.
    * then `clean`'s findings (bad dates, exact duplicates, ...).

    Events: user = CustomerID, item = StockCode, timestamp = InvoiceDate (shop-local time read
    as UTC), value = Quantity. Catalogue, from the kept lines: title = the latest non-empty
    Description, price = median UnitPrice above 0, category = `retail_category(title)`.
    """
    raw = _read_csv_text(path, ",", numeric=("Quantity", "UnitPrice", "Price"))
    raw.columns = [RETAIL_ALIASES.get(str(c).strip(), str(c).strip()) for c in raw.columns]
    _require_columns(path, raw, RETAIL_COLUMNS)
    report = QualityReport(source=str(path), rows_read=len(raw))
    invoice = raw["InvoiceNo"].fillna("").str.strip().str.upper()
    quantity = pd.Series(to_float(raw["Quantity"]), index=raw.index)
    code = raw["StockCode"].fillna("").str.strip()
    # Exports through float columns write 17850.0 for customer 17850.
    customer = raw["CustomerID"].str.strip().str.removesuffix(".0")
    no_customer = _missing(customer)

    keep = np.ones(len(raw), bool)

    def rule(finding: str, mask: np.ndarray, action: str = "dropped") -> np.ndarray:
        hit = mask & keep
        if hit.any():
            report.add(finding, int(hit.sum()), action)
        keep[hit] = False
        return hit

    cancelled = rule(
        "cancellations",
        invoice.str.startswith("C").to_numpy(),
        "netted" if policy.cancellations == "net" else "dropped",
    )
    rule("stock_adjustments", (quantity < 0).to_numpy())
    if policy.drop_non_products:
        upper = code.str.upper()
        rule(
            "non_product_lines",
            (upper.isin(RETAIL_SERVICE_CODES) | upper.str.startswith("GIFT_")).to_numpy(),
        )
    rule("missing_customer", no_customer)

    frame = pd.DataFrame(
        {"user": customer, "item": code, "timestamp": raw["InvoiceDate"], "value": raw["Quantity"]}
    )[keep]
    events, report = clean(frame, str(path), policy, report=report)
    if policy.cancellations == "net":
        returns = cancelled & ~no_customer
        events = _net_cancellations(
            events,
            pd.DataFrame(
                {"user": customer[returns], "item": code[returns], "units": -quantity[returns]}
            ),
            report,
        )
    if len(events) == 0:
        raise EmptyDataError(f"{path}: no usable purchases ({report.counts}).")
    if catalogue:
        cat = _shoprec_catalogue(catalogue)
    else:
        lines = raw.loc[events.index, ["Description", "UnitPrice"]].assign(
            item=events["item"].to_numpy(), timestamp=events["timestamp"].to_numpy()
        )
        lines["Description"] = lines["Description"].str.strip().replace("", np.nan)
        lines["UnitPrice"] = pd.Series(to_float(lines["UnitPrice"]), index=lines.index).where(
            lambda p: p > 0
        )
        lines = lines.sort_values("timestamp", kind="stable")
        grouped = lines.groupby("item", sort=False)
        cat = pd.DataFrame(
            {"title": grouped["Description"].last(), "price": grouped["UnitPrice"].median()}
        )
        cat["category"] = retail_category(cat["title"])
        cat = cat.rename_axis("item").reset_index()
    return LoadedData(
        Interactions.from_frame(events, "online_retail"), Catalogue.from_frame(cat), report
    )


def _net_cancellations(
    events: pd.DataFrame, returns: pd.DataFrame, report: QualityReport
) -> pd.DataFrame:
    """Take cancelled units off each customer's latest purchases of the same item."""
    cancelled = returns.groupby(["user", "item"])["units"].sum()
    key = pd.MultiIndex.from_arrays([events["user"], events["item"]])
    to_cancel = cancelled.reindex(key).fillna(0).to_numpy()
    units = events["value"].fillna(0).to_numpy()
    # Newest first within each (user, item): a return most likely undoes the latest order.
    order = np.lexsort(
        (-events["timestamp"].to_numpy(), events["item"].to_numpy(), events["user"].to_numpy())
    )
    ordered = pd.Series(units[order])
    users, items = events["user"].to_numpy()[order], events["item"].to_numpy()[order]
    starts = np.concatenate([[False], (users[1:] != users[:-1]) | (items[1:] != items[:-1])])
    groups = np.cumsum(starts)  # rows are sorted by (user, item): each run is one group
    before = ordered.groupby(groups).cumsum().to_numpy() - units[order]  # units newer than this row
    taken = np.clip(to_cancel[order] - before, 0, units[order])
    net = np.empty_like(units)
    net[order] = units[order] - taken
    gone = (net <= 0) & (units > 0)
    reduced = (net < units) & ~gone
    if gone.any():
        report.add("purchases_cancelled", int(gone.sum()), "dropped")
    if reduced.any():
        report.add("purchases_reduced", int(reduced.sum()), "repaired")
    events = events.assign(value=np.where(reduced, net, events["value"].to_numpy()))[~gone]
    report.rows_kept = len(events)
    return events


def _read_shoprec(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    if path.is_dir():
        path = _events_in_dir(path)
    if catalogue is None:
        catalogue = (
            _beside(path, [path.name.removesuffix(".gz").replace("events", "catalogue")])
            if "events" in path.name
            else None
        )
    return _read_generic(path, policy, catalogue, {}, parquet=False)


def _events_in_dir(folder: Path, required: bool = True) -> Path | None:
    found = sorted(folder.glob("*events.csv")) + sorted(folder.glob("*events.csv.gz"))
    if len(found) != 1:
        if not required:
            return None
        raise DataError(
            f"{folder}: expected one *events.csv[.gz] file, found {[p.name for p in found]}."
        )
    return found[0]


def _read_csv(
    path: Path, policy: CleanPolicy, catalogue: Path | None, mapping: dict[str, str]
) -> LoadedData:
    return _read_generic(path, policy, catalogue, mapping, parquet=False)


def _read_parquet(
    path: Path, policy: CleanPolicy, catalogue: Path | None, mapping: dict[str, str]
) -> LoadedData:
    return _read_generic(path, policy, catalogue, mapping, parquet=True)


def _read_generic(
    path: Path, policy: CleanPolicy, catalogue: Path | None, mapping: dict[str, str], parquet: bool
) -> LoadedData:
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise ConfigError(
            f"The 'mapping' parameter of load maps our column names {list(MAPPING_KEYS)} to the "
            f"file's. Got unknown keys {unknown} instead."
        )
    if parquet:
        require_extra("pyarrow", "parquet")
        import pyarrow.parquet as pq

        try:
            header = list(pq.ParquetFile(path).schema_arrow.names)
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise MalformedFileError(path, None, f"cannot be read as Parquet: {exc}") from None
    else:
        header, sep = _csv_header(path)
    columns = {ours: mapping.get(ours, ours) for ours in MAPPING_KEYS}
    required = [
        columns["user"],
        columns["item"],
        *(mapping[k] for k in mapping if k not in ("user", "item")),
    ]
    missing = [c for c in dict.fromkeys(required) if c not in header]
    if missing:
        raise MalformedFileError(
            path,
            None if parquet else 1,
            f"missing the required columns {missing} (mapping {mapping or 'none'}); found {header}",
        )
    present = {ours: theirs for ours, theirs in columns.items() if theirs in header}
    # Only the mapped columns are read: other columns may hold personal data we do not need.
    wanted = list(dict.fromkeys(present.values()))
    if parquet:
        raw = pd.read_parquet(path, columns=wanted)
    else:
        numbers = tuple(present[k] for k in ("timestamp", "value", "price") if k in present)
        raw = _read_csv_text(path, sep, numeric=numbers, usecols=wanted)
    frame = pd.DataFrame(
        {ours: raw[theirs] for ours, theirs in present.items() if ours in MAPPING_KEYS[:5]}
    )
    ordinal = "timestamp" not in frame.columns
    if ordinal:
        frame["timestamp"] = np.arange(len(frame), dtype=np.int64)
    if catalogue:
        cat = _shoprec_catalogue(catalogue)
    elif {"title", "category", "price"} & set(present):
        cat = pd.DataFrame(
            {
                ours: raw[present[ours]]
                for ours in ("item", "title", "category", "price")
                if ours in present
            }
        )
    else:
        cat = None
    del raw
    return _finish(path, frame, policy, cat, ordinal_time=ordinal)


_READERS = {
    "sequence": _read_sequence,
    "s3rec": _read_s3rec,
    "movielens": _read_movielens,
    "movielens-100k": _read_movielens_100k,
    "online-retail": read_online_retail,
    "taobao": _read_taobao,
    "amazon-json": _read_amazon_json,
    "llmrank": _read_llmrank,
    "shoprec": _read_shoprec,
    "csv": _read_csv,
    "parquet": _read_parquet,
}

__all__ = ["FORMATS", "LoadedData", "load", "load_demo", "retail_category", "sniff_format"]
