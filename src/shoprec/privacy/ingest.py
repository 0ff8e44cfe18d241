"""Privacy at ingestion: pseudonymise shopper ids, drop direct identifiers, coarsen timestamps.

Everything a shop sends passes through `ingest` (a raw table) or `ingest_loaded` (a log already
read by `shoprec.data.readers`) before it is stored or modelled:

1. Direct identifiers are dropped: names, e-mail addresses, phone numbers, addresses, IP
   addresses and free-text review fields (`DIRECT_IDENTIFIERS`, matched case- and
   punctuation-insensitively; `drop=` adds more). The readers already keep only the columns a
   model needs (the Amazon reader never keeps `reviewerName` or review texts); this step covers
   raw tables and custom exports.
2. Shopper ids are replaced by keyed pseudonyms, `HMAC-SHA256(key, id)` under the current key of
   a `shoprec.privacy.pseudonym.Pseudonymizer` (the key from SHOPREC_PSEUDONYM_KEY or a key file,
   never stored with the data). Nothing downstream sees a raw id.
3. Optionally, timestamps are floored to a granularity ("hour", "day", "week" or seconds).
   Events are first put in time order per shopper, so the order survives the coarsening.

The `IngestReport` says what was done (columns dropped, number of shoppers, key id, time
granularity); it never holds an id.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.data.readers import LoadedData, load
from shoprec.data.schema import INTERACTION_COLUMNS, Interactions
from shoprec.errors import ConfigError, DataError
from shoprec.privacy.pseudonym import Pseudonymizer

DIRECT_IDENTIFIERS: frozenset[str] = frozenset(
    {
        # names
        "name", "fullname", "firstname", "lastname", "surname", "username", "reviewername",
        "customername", "displayname", "nickname",
        # contact details
        "email", "emailaddress", "mail", "phone", "phonenumber", "mobile", "telephone",
        "address", "streetaddress", "street", "postaddress", "shippingaddress", "billingaddress",
        "ip", "ipaddress", "deviceid", "cookie",
        # free text written by the shopper (may name them)
        "reviewtext", "review", "reviewbody", "text", "summary", "comment", "comments",
    }
)
"""Column names (lower case, letters and digits only) treated as direct identifiers."""

GRANULARITIES = {"minute": 60, "hour": 3600, "day": 86_400, "week": 7 * 86_400}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def direct_identifier_columns(columns, extra: tuple[str, ...] = (), keep: tuple[str, ...] = ()) -> list[str]:
    """Columns among `columns` that are direct identifiers (plus `extra`, minus `keep`)."""
    names = DIRECT_IDENTIFIERS | {_norm(c) for c in extra}
    kept = {_norm(c) for c in keep}
    return [c for c in columns if _norm(c) in names and _norm(c) not in kept]


def drop_direct_identifiers(
    frame: pd.DataFrame, extra: tuple[str, ...] = (), keep: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """The frame without its direct-identifier columns, and the names of those dropped."""
    dropped = direct_identifier_columns(frame.columns, extra, keep)
    return frame.drop(columns=dropped), dropped


def coarsen_timestamps(timestamps: np.ndarray, granularity: str | int) -> np.ndarray:
    """Epoch seconds floored to a granularity: "minute", "hour", "day", "week" or seconds > 0."""
    step = _granularity_seconds(granularity)
    ts = np.asarray(timestamps, np.int64)
    return ts - np.mod(ts, step)


def _granularity_seconds(granularity: str | int) -> int:
    if isinstance(granularity, str):
        if granularity not in GRANULARITIES:
            raise ConfigError(
                f"The 'coarsen' parameter must be one of {list(GRANULARITIES)} or a number of "
                f"seconds > 0. Got {granularity!r} instead."
            )
        return GRANULARITIES[granularity]
    if isinstance(granularity, bool) or not isinstance(granularity, (int, np.integer)) or granularity <= 0:
        raise ConfigError(
            f"The 'coarsen' parameter must be one of {list(GRANULARITIES)} or a number of "
            f"seconds > 0. Got {granularity!r} instead."
        )
    return int(granularity)


def pseudonymise_ids(ids: pd.Series | np.ndarray, pseudonymizer: Pseudonymizer) -> np.ndarray:
    """Pseudonyms of raw ids under the current key (each distinct id hashed once)."""
    if not isinstance(pseudonymizer, Pseudonymizer):
        raise ConfigError(
            "Pseudonymisation needs a shoprec.privacy.pseudonym.Pseudonymizer (for example "
            f"Pseudonymizer.from_env()). Got {type(pseudonymizer).__name__} instead."
        )
    codes, uniques = pd.factorize(pd.Series(np.asarray(ids, dtype=object)).astype(str))
    mapped = np.array([pseudonymizer.pseudonymize(u) for u in uniques], dtype=object)
    return mapped[codes] if len(codes) else np.empty(0, dtype=object)


@dataclass
class IngestReport:
    """What ingestion changed. Holds counts and names, never an id or a key."""

    rows: int
    shoppers: int
    key_id: str
    dropped_columns: list[str] = field(default_factory=list)
    timestamp_granularity_s: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def ingest(
    frame: pd.DataFrame,
    pseudonymizer: Pseudonymizer,
    *,
    user_column: str = "user",
    coarsen: str | int | None = None,
    drop: tuple[str, ...] = (),
    name: str = "ingested",
) -> tuple[Interactions, IngestReport]:
    """A raw event table -> a pseudonymised, identifier-free, validated interaction log.

    frame: the shop's table with at least the user, item and timestamp columns (event and value
        optional, as in `Interactions.from_frame`); `user_column` names the shopper id column.
    coarsen: None, or a granularity for `coarsen_timestamps`.
    drop: more column names to treat as direct identifiers.
    """
    if user_column not in frame.columns:
        raise DataError(f"{name}: the table has no shopper id column {user_column!r}.")
    frame, dropped = drop_direct_identifiers(frame, extra=drop, keep=(user_column,))
    out = frame.rename(columns={user_column: "user"})
    if "event" not in out.columns:
        out = out.assign(event="purchase")
    out = out.assign(user=pseudonymise_ids(out["user"], pseudonymizer))
    log = Interactions.from_frame(out, name)
    return _finish(log, coarsen, dropped, pseudonymizer.key_id)


def ingest_loaded(
    loaded: LoadedData, pseudonymizer: Pseudonymizer, *, coarsen: str | int | None = None
) -> tuple[LoadedData, IngestReport]:
    """A log read by `shoprec.data.readers.load` with its shopper ids pseudonymised (and times
    coarsened). The catalogue and the quality report are kept."""
    frame = loaded.interactions.frame.assign(
        user=pseudonymise_ids(loaded.interactions.frame["user"], pseudonymizer)
    )
    log, report = _finish(
        Interactions(frame, loaded.interactions.name), coarsen, [], pseudonymizer.key_id
    )
    return LoadedData(log, loaded.catalogue, loaded.report), report


def _finish(
    log: Interactions, coarsen: str | int | None, dropped: list[str], key_id: str
) -> tuple[Interactions, IngestReport]:
    step = None
    if coarsen is not None:
        step = _granularity_seconds(coarsen)
        log = log.sorted()  # time order per shopper first: flooring must not reorder events
        log = Interactions(
            log.frame.assign(timestamp=coarsen_timestamps(log.frame["timestamp"].to_numpy(), step)),
            log.name,
        )
    report = IngestReport(len(log), log.n_users, key_id, list(dropped), step)
    return log, report


def write_log(log: Interactions, path: str | Path) -> Path:
    """Store a log in shoprec's layout (`user,item,event,timestamp,value`; gzip if the name ends
    in .gz), atomically: written to a temporary file, then renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame = log.frame[list(INTERACTION_COLUMNS)]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(tmp, "wt", newline="", encoding="utf-8") as fh:  # type: ignore[operator]
        frame.to_csv(fh, index=False, quoting=csv.QUOTE_MINIMAL)
    os.replace(tmp, path)
    return path


def ingest_file(
    path: str | Path,
    format: str,
    pseudonymizer: Pseudonymizer,
    out: str | Path,
    *,
    coarsen: str | int | None = None,
    **load_kwargs,
) -> IngestReport:
    """Read a log in any reader format, pseudonymise it and store it at `out` (shoprec layout).

    The raw file is only read; what is written holds pseudonyms, item ids, event types, (coarsened)
    timestamps and values. The catalogue, if any, is product data and is not written here.
    """
    loaded, report = ingest_loaded(load(path, format, **load_kwargs), pseudonymizer, coarsen=coarsen)
    write_log(loaded.interactions, out)
    return report


__all__ = [
    "DIRECT_IDENTIFIERS",
    "GRANULARITIES",
    "IngestReport",
    "coarsen_timestamps",
    "direct_identifier_columns",
    "drop_direct_identifiers",
    "ingest",
    "ingest_file",
    "ingest_loaded",
    "pseudonymise_ids",
    "write_log",
]
