"""Cleaning a behaviour log, with a quality report that counts every finding and its action.

Every reader in `shoprec.data.readers` turns its source into a frame with the columns
``user, item, event, timestamp[, value]`` and passes it through `clean`, so the same rules apply
to every source and every dropped row is accounted for: ``report.rows_read`` equals
``report.rows_kept`` plus the rows of every finding whose action is "dropped".

Two kinds of problem, handled differently:

* **Structural problems are errors.** When a file does not have the shape its format promises
  (a sequence line with three fields, a non-integer where the format needs an integer id, a JSON
  line that does not parse, a CSV without a required column or with a row of too many fields, a
  research file that is not valid text in its encoding; CSV exports fall back to latin-1), the
  reader raises `MalformedFileError` naming the file, the 1-based line and the problem. It
  never returns half a file: such a file was probably given with the wrong format, and guessing
  would silently change results.
* **Row-level data-quality issues are counted and handled by the policy.** In logs exported from
  a shop (Online Retail, Taobao, Amazon reviews, generic CSV/Parquet) some rows are expected to
  be unusable: a missing customer id, an unparseable date in one row, an unknown event type, a
  negative quantity, a timestamp outside the plausible window, an exact duplicate line. `clean`
  drops (or keeps, or repairs) them as `CleanPolicy` says and records each finding in the
  `QualityReport` with the action taken.

Findings `clean` can report (readers add format-specific ones such as "cancellations"):

=========================  ===========================================================  ========
finding                    rows it counts                                               action
=========================  ===========================================================  ========
missing_user               empty user id                                                dropped
missing_item               empty item id                                                dropped
missing_timestamp          empty timestamp                                              dropped
unparseable_timestamp      a timestamp that is neither epoch seconds nor an ISO date    dropped
events_renamed             event names mapped through `CleanPolicy.event_map`           repaired
unknown_event              event names not in EVENT_TYPES after mapping                 dropped
unparseable_value          a value (quantity, rating) present but not a number          dropped
nonpositive_quantity       purchase or cart events with value <= 0                      dropped*
timestamp_out_of_range     timestamps outside [min_timestamp, max_timestamp]            dropped*
exact_duplicates           rows identical in every column to an earlier row             dropped*
=========================  ===========================================================  ========

(*) or "kept" when the policy says so. A dropped row is counted once, under the first finding in
this order that applies to it; a repaired row may still be dropped by a later finding.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np
import pandas as pd

from shoprec.data.schema import EVENT_TYPES, QualityReport
from shoprec.errors import ConfigError, DataError, check_choice

DEFAULT_MIN_TIMESTAMP = 631_152_000
"""1990-01-01 00:00 UTC: no e-commerce log in the wild predates it, so earlier times are bugs."""

EVENT_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        # Taobao UserBehavior
        "pv": "view",
        "fav": "favourite",
        "buy": "purchase",
        # RetailRocket and common exports
        "click": "view",
        "addtocart": "cart",
        "add_to_cart": "cart",
        "transaction": "purchase",
        "order": "purchase",
        "favorite": "favourite",
        "like": "favourite",
    }
)
"""Event names that several public logs use for our event types (matched case-insensitively)."""


@dataclass(frozen=True)
class CleanPolicy:
    """What `clean` does with each kind of finding. The defaults are safe for training.

    Attributes:
        drop_duplicates: drop rows identical in every column to an earlier row (a double
            export). Sources whose timestamps are file positions cannot have such rows.
        drop_nonpositive_quantity: drop purchase and cart events whose value (the quantity) is
            zero or negative: returns and corrections, not interest.
        event_map: event names (case-insensitive) to map onto EVENT_TYPES before checking them;
            the default knows the Taobao and RetailRocket names (pv, fav, buy, addtocart, ...).
        unknown_events: "drop" counts and drops events that are still unknown after mapping;
            "error" raises DataError instead.
        min_timestamp, max_timestamp: the plausible time window, as epoch seconds, an ISO date
            string or a datetime (naive means UTC). None means the format's documented window
            where it has one (Taobao), otherwise 1990-01-01 and now + `future_slack_s`.
        future_slack_s: seconds into the future still accepted when max_timestamp is None
            (clock skew between shop servers). Default one day.
        drop_out_of_range: drop rows outside the window (else keep them and only count them).
        cancellations: Online Retail only. "drop" drops cancellation lines (invoice starting
            with "C"); "net" also subtracts the cancelled quantity from the same customer's
            latest purchases of that item, dropping purchases cancelled entirely.
        drop_non_products: Online Retail only. Drop lines whose stock code is a service, not a
            product (postage, carriage, discounts, fees, manual adjustments, gift vouchers).
    """

    drop_duplicates: bool = True
    drop_nonpositive_quantity: bool = True
    event_map: Mapping[str, str] = field(default_factory=lambda: dict(EVENT_ALIASES))
    unknown_events: str = "drop"
    min_timestamp: int | str | datetime | None = None
    max_timestamp: int | str | datetime | None = None
    future_slack_s: int = 86_400
    drop_out_of_range: bool = True
    cancellations: str = "drop"
    drop_non_products: bool = True

    def __post_init__(self) -> None:
        check_choice("unknown_events", self.unknown_events, ("drop", "error"), "CleanPolicy")
        check_choice("cancellations", self.cancellations, ("drop", "net"), "CleanPolicy")
        bad = {k: v for k, v in self.event_map.items() if v not in EVENT_TYPES}
        if bad:
            raise ConfigError(
                f"The 'event_map' parameter of CleanPolicy must map onto {list(EVENT_TYPES)}. "
                f"Got {bad} instead."
            )
        for name in ("min_timestamp", "max_timestamp"):
            to_epoch(getattr(self, name), name)  # validate early, with the parameter's name
        # A lower-cased copy, so that matching event names is case-insensitive.
        object.__setattr__(
            self, "event_map", {str(k).lower(): v for k, v in self.event_map.items()}
        )

    def with_window(
        self, min_timestamp: object = None, max_timestamp: object = None
    ) -> CleanPolicy:
        """A copy with the window bounds that are not None replaced."""
        changes = {}
        if min_timestamp is not None:
            changes["min_timestamp"] = min_timestamp
        if max_timestamp is not None:
            changes["max_timestamp"] = max_timestamp
        return replace(self, **changes) if changes else self

    def window(self) -> tuple[int, int]:
        """The resolved (min, max) window in epoch seconds, both inclusive."""
        low = to_epoch(self.min_timestamp, "min_timestamp")
        high = to_epoch(self.max_timestamp, "max_timestamp")
        return (
            DEFAULT_MIN_TIMESTAMP if low is None else low,
            int(time.time()) + int(self.future_slack_s) if high is None else high,
        )


def to_epoch(value: object, name: str = "timestamp") -> int | None:
    """One point in time (epoch seconds, ISO string, datetime; naive = UTC) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)) and np.isfinite(value):
        return int(value)
    if isinstance(value, (str, datetime)):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            stamp = pd.NaT
        if not pd.isna(stamp):
            stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp
            return int(stamp.timestamp())
    raise ConfigError(
        f"The {name!r} parameter must be epoch seconds, an ISO date string or a datetime. "
        f"Got {value!r} instead."
    )


def to_float(values: pd.Series) -> np.ndarray:
    """A column as float64, NaN where missing, unparseable or infinite."""
    if pd.api.types.is_bool_dtype(values):
        out = np.full(len(values), np.nan)
    elif pd.api.types.is_numeric_dtype(values):
        out = values.to_numpy(dtype="float64", na_value=np.nan, copy=True)
    else:
        try:  # the fast cast handles the usual all-numeric column; bad values need to_numeric
            out = values.astype("float64").to_numpy(copy=True)
        except (ValueError, TypeError):
            out = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def to_epoch_seconds(values: pd.Series) -> np.ndarray:
    """Epoch seconds (float64, NaN where missing or unparseable) of a column of times.

    Accepts numbers (already epoch seconds), datetimes (naive means UTC) and strings holding
    either epoch seconds or ISO 8601 dates such as "2010-12-01 08:26:00". When most strings are
    not ISO, other common layouts ("12/1/2010 8:26", month first) are tried as a fallback.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return _seconds(pd.to_datetime(values, utc=True))
    numbers = to_float(values)
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return numbers
    todo = np.isnan(numbers) & values.notna().to_numpy()
    if not todo.any():
        return numbers
    text = values[todo].astype(str).str.strip()
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
    failed = parsed.isna().to_numpy()
    if failed.mean() > 0.5:
        # Not ISO: try per-value parsing, which is slow but only runs on odd exports.
        parsed[failed] = pd.to_datetime(text[failed], format="mixed", errors="coerce", utc=True)
    numbers[todo] = _seconds(parsed)
    return numbers


def _seconds(stamps: pd.Series) -> np.ndarray:
    # Subtract the epoch rather than casting: the datetime unit (s, us, ns) varies in pandas 3.
    delta = stamps - pd.Timestamp(0, tz="UTC")
    return (delta / pd.Timedelta(seconds=1)).astype("float64").to_numpy()


def _missing(values: pd.Series) -> np.ndarray:
    """NaN, None or an empty/blank string."""
    missing = values.isna().to_numpy()
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        missing = missing | (values.astype(str).str.strip() == "").to_numpy()
    return missing


def clean(
    frame: pd.DataFrame,
    source: str,
    policy: CleanPolicy | None = None,
    *,
    report: QualityReport | None = None,
    ordinal_time: bool = False,
) -> tuple[pd.DataFrame, QualityReport]:
    """Apply `policy` to an interaction frame and report what was found.

    frame: columns user, item, timestamp and optionally event (default "purchase") and value.
        Timestamps may be epoch seconds, datetimes or strings (see `to_epoch_seconds`).
    source: names the source in the report and in error messages (usually the file path).
    report: a report to add the findings to (a reader's, with its own findings and rows_read);
        a new one is made when None.
    ordinal_time: the timestamps are positions in a file, not times: skip the time window, and
        the duplicate check (rows at different positions are never duplicates).

    Returns the kept rows with the columns user, item (str), event (categorical over
    EVENT_TYPES), timestamp (int64) and value (float64). The index of `frame` is kept, so
    readers can join source columns back.
    """
    policy = policy or CleanPolicy()
    for column in ("user", "item", "timestamp"):
        if column not in frame.columns:
            raise DataError(f"{source}: the interaction frame lacks the column {column!r}.")
    if report is None:
        report = QualityReport(source=source, rows_read=len(frame))
    keep = np.ones(len(frame), bool)

    def finding(name: str, mask: np.ndarray, drop: bool = True, kept_action: str = "kept") -> None:
        hit = mask & keep
        count = int(hit.sum())
        if count:
            report.add(name, count, "dropped" if drop else kept_action)
            if drop:
                keep[hit] = False

    finding("missing_user", _missing(frame["user"]))
    finding("missing_item", _missing(frame["item"]))

    raw_time = frame["timestamp"]
    seconds = to_epoch_seconds(raw_time)
    absent = _missing(raw_time)
    finding("missing_timestamp", absent)
    finding("unparseable_timestamp", np.isnan(seconds) & ~absent)

    codes = _event_codes(frame, policy, finding, source, keep)

    if "value" in frame.columns:
        value = to_float(frame["value"])
        finding("unparseable_value", np.isnan(value) & ~_missing(frame["value"]))
    else:
        value = np.full(len(frame), np.nan)
    quantity_codes = [EVENT_TYPES.index("purchase"), EVENT_TYPES.index("cart")]
    finding(
        "nonpositive_quantity",
        np.isin(codes, quantity_codes) & (value <= 0),  # NaN compares False: absent is not <= 0
        policy.drop_nonpositive_quantity,
    )

    if not ordinal_time:
        low, high = policy.window()
        with np.errstate(invalid="ignore"):
            outside = (seconds < low) | (seconds > high)
        finding("timestamp_out_of_range", outside, policy.drop_out_of_range)

    out = pd.DataFrame(
        {
            "user": _id_strings(frame["user"][keep]),
            "item": _id_strings(frame["item"][keep]),
            "event": pd.Categorical.from_codes(codes[keep], categories=EVENT_TYPES),
            "timestamp": seconds[keep].astype(np.int64),
            "value": value[keep],
        },
        index=frame.index[keep],
    )
    if not ordinal_time:
        dup = out.duplicated().to_numpy()
        if dup.any():
            report.add(
                "exact_duplicates", int(dup.sum()), "dropped" if policy.drop_duplicates else "kept"
            )
            if policy.drop_duplicates:
                out = out[~dup]
    report.rows_kept = len(out)
    return out, report


def _id_strings(values: pd.Series) -> pd.Series:
    """Ids as strings; integral floats (an id column with gaps read as float) lose their '.0'."""
    if pd.api.types.is_float_dtype(values) and bool((values % 1 == 0).all()):
        values = values.astype(np.int64)
    if pd.api.types.is_string_dtype(values):
        return values.str.strip()
    return values.astype(str)


def _event_codes(
    frame: pd.DataFrame, policy: CleanPolicy, finding, source: str, keep: np.ndarray
) -> np.ndarray:
    """Event codes (positions in EVENT_TYPES, int8), -1 where unknown."""
    if "event" not in frame.columns:
        return np.full(len(frame), EVENT_TYPES.index("purchase"), dtype=np.int8)
    # Work on the distinct names only: logs have millions of rows but a handful of event names.
    cat = pd.Categorical(frame["event"])
    names = [str(n) for n in cat.categories]
    lowered = [n.strip().lower() for n in names]
    targets = [n if n in EVENT_TYPES else policy.event_map.get(n) for n in lowered]
    lookup = np.array([EVENT_TYPES.index(t) if t else -1 for t in targets] + [-1], dtype=np.int8)
    renamed = np.array([t is not None and t != n for t, n in zip(targets, names)] + [False])
    raw_codes = np.asarray(cat.codes)  # -1 (missing) indexes the appended last entry
    codes = lookup[raw_codes]
    finding("events_renamed", renamed[raw_codes], drop=False, kept_action="repaired")
    unknown = codes < 0
    if policy.unknown_events == "error" and (unknown & keep).any():
        bad = sorted(set(frame["event"][unknown & keep].astype(str)))[:5]
        raise DataError(f"{source}: unknown event types {bad}; allowed are {list(EVENT_TYPES)}.")
    finding("unknown_event", unknown)
    return codes
