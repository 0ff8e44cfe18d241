"""The read-only views the serving engine works on: the catalogue as arrays, the loaded model with
what serving derives from it, their alignment, and what a recommendation says.

Views are replaced, never mutated: a model reload or catalogue change builds a new view off the
request path and the engine swaps one attribute, so a request sees the old view or the new one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shoprec.serve.ann import ItemIndex

__all__ = ["Alignment", "CatalogueView", "Explanation", "ModelView", "Recommendation", "Served", "file_version"]


def file_version(path: str | Path) -> str:
    """A model file's version: the first 12 hex digits of its SHA-256 (the same file, the same
    version, in every process)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Explanation:
    """Why an item is recommended. code: history | new_in_category | exploring | popular | similar.
    basis: for a history explanation, "model" (removing the anchor event lowers the item's
    score the most) or "similarity" (the anchor is the most similar history item)."""

    code: str
    text: str
    anchor_item_id: str | None = None
    basis: str | None = None


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    title: str
    category: str
    price: float | None
    score: float
    explored: bool
    propensity: float
    explanation: Explanation


@dataclass(frozen=True)
class Served:
    """What one recommendation request produced: the items, each one's score feature z (what
    the learner needs back with the feedback; None for items shown by rule), the exploration
    weight and its signals, the policy, the scoring path ("model", "embedding" when the latency
    budget was short, "popularity" for a cold start), and the shopper state it was drawn with."""

    items: list[Recommendation]
    z: list[float | None]
    weight: float
    signals: dict[str, float]
    policy: str
    path: str
    state: Any
    space: str

    @property
    def degraded(self) -> bool:
        return self.path == "embedding"


@dataclass(frozen=True)
class CatalogueView:
    """The catalogue as arrays (one row per item, sorted by id)."""

    ids: np.ndarray
    titles: np.ndarray
    categories: np.ndarray
    cat_codes: np.ndarray  # int64 code of each row's category
    cat_code: dict[str, int]  # category -> code
    price: np.ndarray  # float64, NaN where unknown
    active: np.ndarray  # bool
    created_at: np.ndarray  # int64
    row: dict[str, int]
    version: int

    @classmethod
    def from_rows(cls, rows: list[tuple], version: int) -> CatalogueView:
        """rows: (item_id, title, category, price, active, created_at) as `Store.all_items`."""
        n = len(rows)
        ids = np.array([r[0] for r in rows], dtype=object)
        cat_code: dict[str, int] = {}
        codes = np.fromiter((cat_code.setdefault(r[2], len(cat_code)) for r in rows), dtype=np.int64, count=n)
        return cls(
            ids=ids,
            titles=np.array([r[1] for r in rows], dtype=object),
            categories=np.array([r[2] for r in rows], dtype=object),
            cat_codes=codes,
            cat_code=cat_code,
            price=np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=np.float64).reshape(n),
            active=np.array([bool(r[4]) for r in rows], dtype=bool).reshape(n),
            created_at=np.array([r[5] for r in rows], dtype=np.int64).reshape(n),
            row={item: i for i, item in enumerate(ids)},
            version=version,
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class ModelView:
    """A loaded model with what serving derives from it once."""

    model: Any
    name: str
    version: str
    path: str | None
    loaded_at: float
    info: dict[str, Any]
    vectors: np.ndarray
    index: ItemIndex
    popularity: np.ndarray  # distinct training users per item, scaled to [0, 1]
    load_seconds: float
    position: dict[str, int]  # item id -> model index (a dict: faster than the pandas index per request)
    explorer: Any = None  # the per-shopper exploration learner over this model's items

    @property
    def n_items(self) -> int:
        return len(self.model.items_)


@dataclass
class Alignment:
    """Model items x catalogue rows, rebuilt when either changes."""

    key: tuple[str, int]
    m2c: np.ndarray  # catalogue row of each model item, -1 if not catalogued
    eligible: np.ndarray  # bool per model item: may be recommended at all
    category: np.ndarray  # object per model item ('' if not catalogued)
    cat_codes: np.ndarray  # int64 category code per model item (-1 if not catalogued)
    price: np.ndarray  # float64 per model item
    cold_rows: np.ndarray  # catalogue rows the model does not know, active
    extras: dict[str, Any] = field(default_factory=dict)
