"""Histories as the networks read them: left-padded item, event and time matrices.

Item indices inside the networks are shifted by one: 0 is padding, item i is row i + 1. Event
codes are shifted the same way. Time gaps become log2 buckets of seconds since the previous
event: 0 on padding, 1 (`UNKNOWN_GAP`) for a first event or a history without timestamps.
"""

from __future__ import annotations

import numpy as np

from shoprec.data.dataset import Dataset

__all__ = ["UNKNOWN_GAP", "SequenceStore", "gap_buckets", "gap_matrix", "pad_left"]

UNKNOWN_GAP = 1  # gap bucket of the first event and of histories without timestamps


def gap_buckets(timestamps: np.ndarray, n_buckets: int) -> np.ndarray:
    """Log2-bucketed gap in seconds to the previous event: 1 for the first, 2.. for the rest."""
    ts = np.asarray(timestamps, dtype=np.int64)
    out = np.full(len(ts), UNKNOWN_GAP, dtype=np.int64)
    if len(ts) > 1:
        gaps = np.maximum(np.diff(ts), 0).astype(np.float64)
        out[1:] = 2 + np.minimum(np.floor(np.log2(1.0 + gaps)), n_buckets - 3).astype(np.int64)
    return out


def gap_matrix(items: np.ndarray, times: np.ndarray, n_buckets: int) -> np.ndarray:
    """Gap buckets for left-padded item/time matrices (0 on padding)."""
    gaps = np.zeros(items.shape, dtype=np.int64)
    if items.shape[1] == 0:
        return gaps
    diff = np.diff(times, axis=1).astype(np.float64)
    b = 2 + np.minimum(np.floor(np.log2(1.0 + np.maximum(diff, 0))), n_buckets - 3).astype(np.int64)
    gaps[:, 1:] = b
    real = items > 0
    first = real & ~np.concatenate([np.zeros((len(items), 1), bool), real[:, :-1]], axis=1)
    gaps[first] = UNKNOWN_GAP
    gaps[~real] = 0
    return gaps


def pad_left(rows: list[np.ndarray], width: int, shift: int = 0, dtype=np.int64) -> np.ndarray:
    """Right-aligned matrix of the last `width` values of each row (+shift), 0 on the left."""
    out = np.zeros((len(rows), width), dtype=dtype)
    for r, row in enumerate(rows):
        row = np.asarray(row)[-width:] if width else np.asarray(row)[:0]
        if len(row):
            out[r, width - len(row) :] = row + shift
    return out


class SequenceStore:
    """Each user's last `width` events as left-padded matrices: items + 1, event codes + 1, time.

    Kept in the model's state, so a loaded model scores known users from their real, ordered
    recent history, and `partial_fit` appends new events to it.
    """

    def __init__(self, items: np.ndarray, events: np.ndarray, times: np.ndarray) -> None:
        self.items, self.events, self.times = items, events, times

    @classmethod
    def from_dataset(cls, data: Dataset, width: int) -> SequenceStore:
        ptr = data.indptr

        def per_user(values: np.ndarray) -> list[np.ndarray]:
            return [values[ptr[u] : ptr[u + 1]] for u in range(data.n_users)]

        return cls(
            pad_left(per_user(data.item_idx), width, 1, np.int32),
            pad_left(per_user(data.event.astype(np.int64)), width, 1, np.int8),
            pad_left(per_user(data.timestamp), width, 0, np.int64),
        )

    @property
    def width(self) -> int:
        return self.items.shape[1]

    def lengths(self) -> np.ndarray:
        """Real (non-padding) events per user."""
        return (self.items > 0).sum(axis=1)

    def without_first_column(self) -> SequenceStore:
        """The store one column narrower (training keeps max_len + 1 events: inputs and targets)."""
        return SequenceStore(self.items[:, 1:], self.events[:, 1:], self.times[:, 1:])

    def widened(self) -> SequenceStore:
        """The store one column wider, padding on the left (the inverse of `without_first_column`)."""
        pad = ((0, 0), (1, 0))
        return SequenceStore(np.pad(self.items, pad), np.pad(self.events, pad), np.pad(self.times, pad))

    def rows(self, users: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Unpadded (item index, event code, timestamp) arrays of the given users."""
        its, evs, tss = [], [], []
        for u in users:
            keep = self.items[u] > 0
            its.append(self.items[u][keep].astype(np.int64) - 1)
            evs.append(self.events[u][keep].astype(np.int64) - 1)
            tss.append(self.times[u][keep])
        return its, evs, tss

    def appended(self, data: Dataset, user_map: np.ndarray, n_users: int, width: int) -> SequenceStore:
        """A store over n_users users with `data`'s events (users mapped by user_map) appended."""
        old_users = len(self.items)
        its, evs, tss = self.rows(np.arange(old_users))
        empty = [np.empty(0, np.int64)] * (n_users - old_users)
        its, evs, tss = its + empty, evs + empty, tss + empty
        ptr = data.indptr
        for u in np.flatnonzero(np.diff(ptr) > 0):
            m = user_map[u]
            sl = slice(ptr[u], ptr[u + 1])
            its[m] = np.concatenate([its[m], data.item_idx[sl]])
            evs[m] = np.concatenate([evs[m], data.event[sl].astype(np.int64)])
            tss[m] = np.concatenate([tss[m], data.timestamp[sl]])
        return SequenceStore(
            pad_left(its, width, 1, np.int32), pad_left(evs, width, 1, np.int8), pad_left(tss, width, 0, np.int64)
        )
