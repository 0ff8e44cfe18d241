"""A behaviour log indexed against user and item vocabularies: what models fit on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shoprec.data.schema import EVENT_TYPES, Catalogue, EventWeights, Interactions
from shoprec.data.vocab import Vocabulary
from shoprec.errors import EmptyDataError


@dataclass
class Dataset:
    """Interactions as dense index arrays, sorted by user then time.

    Several datasets (a train part, the full log) can share the same vocabularies, so that a
    model fitted on one is scored against the other without re-indexing.
    """

    users: Vocabulary
    items: Vocabulary
    user_idx: np.ndarray  # int64, sorted ascending
    item_idx: np.ndarray  # int64
    event: np.ndarray  # int8 codes into EVENT_TYPES
    timestamp: np.ndarray  # int64 seconds
    value: np.ndarray  # float64, NaN where absent
    catalogue: Catalogue | None = None
    name: str = "dataset"
    _indptr: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_interactions(
        cls,
        log: Interactions,
        catalogue: Catalogue | None = None,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
    ) -> Dataset:
        """Index a log. Vocabularies default to the ids in the log, in order of appearance."""
        if len(log) == 0:
            raise EmptyDataError(f"{log.name}: the interaction log is empty.")
        frame = log.frame
        # factorize assigns codes in order of first appearance in one pass; far faster than
        # building the vocabulary and then looking every id up again.
        if users is None:
            user_codes, user_ids = pd.factorize(frame["user"], sort=False)
            users = Vocabulary(np.asarray(user_ids, dtype=str), "user")
        else:
            user_codes = users.index(frame["user"].to_numpy())
        if items is None:
            ids = frame["item"]
            if catalogue is not None:
                # Catalogue items with no events still belong to the item space (new products).
                ids = pd.concat([ids, catalogue.frame["item"]], ignore_index=True)
            item_codes, item_ids = pd.factorize(ids, sort=False)
            item_codes = item_codes[: len(frame)]
            items = Vocabulary(np.asarray(item_ids, dtype=str), "item")
        else:
            item_codes = items.index(frame["item"].to_numpy())
        return cls.from_arrays(
            users,
            items,
            user_codes,
            item_codes,
            frame["event"].cat.codes.to_numpy().astype(np.int8),
            frame["timestamp"].to_numpy().astype(np.int64),
            frame["value"].to_numpy().astype(np.float64),
            catalogue,
            log.name,
        )

    @classmethod
    def from_arrays(
        cls,
        users: Vocabulary,
        items: Vocabulary,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        event: np.ndarray | None = None,
        timestamp: np.ndarray | None = None,
        value: np.ndarray | None = None,
        catalogue: Catalogue | None = None,
        name: str = "dataset",
    ) -> Dataset:
        """Build from index arrays; sorts stably by (user, timestamp), keeping given order on ties."""
        n = len(user_idx)
        event = np.full(n, EVENT_TYPES.index("purchase"), np.int8) if event is None else event
        timestamp = np.arange(n, dtype=np.int64) if timestamp is None else timestamp
        value = np.full(n, np.nan) if value is None else value
        order = np.lexsort((timestamp, user_idx))
        return cls(
            users,
            items,
            np.asarray(user_idx, np.int64)[order],
            np.asarray(item_idx, np.int64)[order],
            np.asarray(event, np.int8)[order],
            np.asarray(timestamp, np.int64)[order],
            np.asarray(value, np.float64)[order],
            catalogue,
            name,
        )

    def subset(self, mask: np.ndarray, name: str | None = None) -> Dataset:
        """The rows where mask is True, with the same vocabularies (order is preserved)."""
        return Dataset(
            self.users,
            self.items,
            self.user_idx[mask],
            self.item_idx[mask],
            self.event[mask],
            self.timestamp[mask],
            self.value[mask],
            self.catalogue,
            name or self.name,
        )

    def with_user_ids(self, rename) -> Dataset:
        """The same dataset with every user id replaced by rename(id) (pseudonymisation, say);
        rename must map distinct ids to distinct ids."""
        users = Vocabulary([rename(str(u)) for u in self.users.ids], "user")
        return Dataset(users, self.items, self.user_idx, self.item_idx, self.event, self.timestamp, self.value,
                       self.catalogue, self.name)

    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def indptr(self) -> np.ndarray:
        """Row pointers: user u's events are rows indptr[u]:indptr[u+1] (time order)."""
        if self._indptr is None:
            counts = np.bincount(self.user_idx, minlength=self.n_users)
            self._indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return self._indptr

    def history(self, user: int) -> np.ndarray:
        """Item indices of one user's events in time order."""
        return self.item_idx[self.indptr[user] : self.indptr[user + 1]]

    def sequences(self) -> list[np.ndarray]:
        """Every user's item sequence in time order (empty arrays for users without events)."""
        return np.split(self.item_idx, self.indptr[1:-1])

    def matrix(self, weights: EventWeights | None = None, binary: bool = False) -> sp.csr_matrix:
        """User x item matrix: summed event weights, or 1 where any event exists if binary."""
        data = (
            np.ones(len(self), np.float32)
            if binary or weights is None
            else (weights.as_array()[self.event])
        )
        m = sp.csr_matrix(
            (data, (self.user_idx, self.item_idx)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.eliminate_zeros()
        return m

    def item_popularity(self) -> np.ndarray:
        """Number of distinct users per item."""
        return np.asarray(self.matrix(binary=True).sum(axis=0)).ravel()

    def active_users(self) -> np.ndarray:
        """Indices of users with at least one event."""
        return np.flatnonzero(np.diff(self.indptr) > 0)
