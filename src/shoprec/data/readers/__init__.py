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

import re
from pathlib import Path

from shoprec.data.clean import CleanPolicy
from shoprec.data.readers._files import _existing, _first_line
from shoprec.data.readers._loaded import LoadedData
from shoprec.data.readers.generic import MAPPING_KEYS as MAPPING_KEYS
from shoprec.data.readers.generic import _events_in_dir, _read_csv, _read_parquet, _read_shoprec
from shoprec.data.readers.research import ML100K_GENRES as ML100K_GENRES
from shoprec.data.readers.research import TAOBAO_EVENTS as TAOBAO_EVENTS
from shoprec.data.readers.research import TAOBAO_WINDOW as TAOBAO_WINDOW
from shoprec.data.readers.research import (
    _read_amazon_json,
    _read_llmrank,
    _read_movielens,
    _read_movielens_100k,
    _read_s3rec,
    _read_sequence,
    _read_taobao,
)
from shoprec.data.readers.retail import RETAIL_ALIASES as RETAIL_ALIASES
from shoprec.data.readers.retail import RETAIL_COLUMNS as RETAIL_COLUMNS
from shoprec.data.readers.retail import RETAIL_SERVICE_CODES as RETAIL_SERVICE_CODES
from shoprec.data.readers.retail import read_online_retail, retail_category
from shoprec.errors import ConfigError, DataError, check_choice

# The constants imported `as` themselves are re-exported: they were importable from here when
# the readers were one module.

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

DEMO_EVENTS = "online_retail_events.csv.gz"
DEMO_CATALOGUE = "online_retail_catalogue.csv.gz"


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
