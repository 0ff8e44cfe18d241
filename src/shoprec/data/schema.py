"""The two tables a shop has: a behaviour log and a catalogue.

Both are thin, validated wrappers around pandas DataFrames with fixed column names and dtypes, so
that every reader produces the same thing and everything downstream can rely on it.

Interaction log columns:
    user       str      the shop's shopper id (pseudonymised before it gets here, if asked)
    item       str      the shop's product id
    event      category one of EVENT_TYPES
    timestamp  int64    seconds since the Unix epoch, UTC; sequence files without time use the
                        position in the file so that order is kept
    value      float64  optional: the rating for "rating" events, the quantity for purchases; NaN
                        where the source has none

Catalogue columns: item (str), title (str), category (str), price (float64, NaN if unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shoprec.errors import ConfigError, DataError

EVENT_TYPES: tuple[str, ...] = ("view", "cart", "favourite", "purchase", "rating")
"""Event types in a fixed order; an event's code is its position here."""

INTERACTION_COLUMNS = ("user", "item", "event", "timestamp", "value")
CATALOGUE_COLUMNS = ("item", "title", "category", "price")


@dataclass(frozen=True)
class EventWeights:
    """How much each event type counts when a log becomes a user x item matrix.

    The defaults follow the usual e-commerce funnel: a purchase says more than a cart, a cart
    more than a view. A rating event counts `rating` (its value is not used as a weight, because
    implicit-feedback models treat any rating as a positive signal).
    """

    view: float = 1.0
    cart: float = 3.0
    favourite: float = 2.0
    purchase: float = 5.0
    rating: float = 1.0

    def __post_init__(self) -> None:
        for name in EVENT_TYPES:
            w = getattr(self, name)
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
                raise ConfigError(
                    f"The event weight {name!r} must be a finite number >= 0. Got {w!r} instead."
                )

    def as_array(self) -> np.ndarray:
        """Weights indexed by event code."""
        return np.array([getattr(self, name) for name in EVENT_TYPES], dtype=np.float32)

    @classmethod
    def parse(cls, text: str) -> EventWeights:
        """Parse 'view=1,cart=3,purchase=5' (unnamed types keep their defaults)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, number = part.partition("=")
            if not sep or name.strip() not in EVENT_TYPES:
                raise ConfigError(
                    f"Event weights must look like 'view=1,purchase=5' with types from "
                    f"{list(EVENT_TYPES)}. Got {part!r} instead."
                )
            try:
                values[name.strip()] = float(number)
            except ValueError:
                raise ConfigError(f"Event weight {name.strip()!r} is not a number: {number!r}.") from None
        return cls(**values)


def event_codes(events: pd.Series | np.ndarray) -> np.ndarray:
    """Codes (positions in EVENT_TYPES) of an array of event names; raises on unknown names."""
    # Check before building the Categorical: pandas deprecates (and 4.0 rejects) unknown values.
    unknown = ~pd.Series(events).isin(EVENT_TYPES).to_numpy()
    if unknown.any():
        bad = sorted(set(pd.Series(events)[unknown].astype(str)))[:5]
        raise DataError(f"Unknown event types {bad}; allowed are {list(EVENT_TYPES)}.")
    return np.asarray(pd.Categorical(events, categories=EVENT_TYPES).codes, dtype=np.int8)


@dataclass(frozen=True)
class Interactions:
    """A validated behaviour log. Build one with `Interactions.from_frame` or a reader."""

    frame: pd.DataFrame
    name: str = "interactions"

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str = "interactions") -> Interactions:
        """Check and normalise a frame with the interaction columns (value may be absent)."""
        missing = [c for c in ("user", "item", "event", "timestamp") if c not in frame.columns]
        if missing:
            raise DataError(
                f"{name}: the interaction log lacks the columns {missing}; "
                f"expected {list(INTERACTION_COLUMNS)}."
            )
        # Check before building the Categorical: pandas deprecates (and 4.0 rejects) unknown values.
        unknown = ~frame["event"].isin(EVENT_TYPES).to_numpy()
        if unknown.any():
            bad = sorted(set(frame["event"][unknown].astype(str)))[:5]
            raise DataError(f"{name}: unknown event types {bad}; allowed are {list(EVENT_TYPES)}.")
        out = pd.DataFrame(
            {
                "user": frame["user"].astype(str).to_numpy(),
                "item": frame["item"].astype(str).to_numpy(),
                "event": pd.Categorical(frame["event"], categories=EVENT_TYPES),
                "timestamp": _as_int64(frame["timestamp"], name),
                "value": (
                    pd.to_numeric(frame["value"], errors="coerce").astype("float64").to_numpy()
                    if "value" in frame.columns
                    else np.full(len(frame), np.nan)
                ),
            }
        )
        return cls(out.reset_index(drop=True), name)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_users(self) -> int:
        return int(self.frame["user"].nunique())

    @property
    def n_items(self) -> int:
        return int(self.frame["item"].nunique())

    def sorted(self) -> Interactions:
        """The same log, stably sorted by user then time (file order breaks ties)."""
        order = np.lexsort((self.frame["timestamp"].to_numpy(), self.frame["user"].to_numpy()))
        return Interactions(self.frame.iloc[order].reset_index(drop=True), self.name)


def _as_int64(col: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(col):
        return (col.astype("datetime64[s]").astype("int64")).to_numpy()
    values = pd.to_numeric(col, errors="coerce")
    if values.isna().any():
        raise DataError(f"{name}: {int(values.isna().sum())} timestamps are missing or not numbers.")
    return values.astype("int64").to_numpy()


@dataclass(frozen=True)
class Catalogue:
    """Product metadata: title, category and price per item id."""

    frame: pd.DataFrame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Catalogue:
        if "item" not in frame.columns:
            raise DataError("The catalogue needs an 'item' column.")
        out = pd.DataFrame({"item": frame["item"].astype(str).to_numpy()})
        out["title"] = frame["title"].fillna("").astype(str).to_numpy() if "title" in frame else ""
        out["category"] = (
            frame["category"].fillna("").astype(str).to_numpy() if "category" in frame else ""
        )
        out["price"] = (
            pd.to_numeric(frame["price"], errors="coerce").astype("float64").to_numpy()
            if "price" in frame
            else np.nan
        )
        # One row per item: the last description wins, as a shop's latest catalogue update would.
        out = out.drop_duplicates("item", keep="last").reset_index(drop=True)
        return cls(out)

    def __len__(self) -> int:
        return len(self.frame)

    def lookup(self, items: np.ndarray | list[str], column: str = "title") -> list[str]:
        """Values of `column` for the given item ids ('' where the item is not catalogued)."""
        series = self.frame.set_index("item")[column]
        return [str(v) if pd.notna(v) else "" for v in series.reindex(list(items)).to_numpy()]


@dataclass
class QualityReport:
    """What cleaning found in a source and what it did about each finding.

    `counts` maps a finding (for example 'exact_duplicates') to the number of rows it affected;
    `actions` says, for the same key, whether those rows were dropped, repaired or kept.
    """

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)

    def add(self, finding: str, count: int, action: str) -> None:
        self.counts[finding] = self.counts.get(finding, 0) + int(count)
        self.actions[finding] = action

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "findings": {k: {"rows": v, "action": self.actions.get(k, "")} for k, v in self.counts.items()},
        }
