"""Id vocabularies: the shop's external ids <-> dense indices 0..n-1."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from shoprec.errors import UnknownIdError


class Vocabulary:
    """A fixed, ordered set of external ids (strings) with O(1) lookup both ways.

    Offline, an unknown id is an error (`index`); callers that must tolerate unknown ids (the
    service, raw histories) use `index(..., missing="drop")` or `missing="-1"`.
    """

    def __init__(self, ids: Iterable[str], name: str = "id") -> None:
        self._index = pd.Index(np.asarray(list(ids) if not isinstance(ids, (np.ndarray, pd.Index)) else ids, dtype=object).astype(str))
        if not self._index.is_unique:
            raise ValueError(f"{name} vocabulary has duplicate ids")
        self.name = name

    @classmethod
    def from_values(cls, values: np.ndarray | pd.Series, name: str = "id") -> Vocabulary:
        """Vocabulary of the distinct values, in order of first appearance."""
        return cls(pd.unique(np.asarray(values, dtype=object)), name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    @property
    def ids(self) -> np.ndarray:
        """External ids as a numpy array of str, position = dense index (read-only, cached)."""
        # Converting an arrow-backed index costs ~10 ms per 100k ids; a vocabulary never changes,
        # so convert once.
        cached = getattr(self, "_ids", None)
        if cached is None:
            cached = self._index.to_numpy(dtype=str)
            cached.flags.writeable = False
            self._ids = cached
        return cached

    def index(self, ids: Iterable[object] | np.ndarray, missing: str = "error") -> np.ndarray:
        """Dense indices of external ids.

        missing: "error" raises UnknownIdError naming the first unknown ids; "-1" returns -1 for
        them; "drop" leaves them out.
        """
        arr = np.asarray(list(ids) if not isinstance(ids, (np.ndarray, pd.Series)) else ids)
        codes = self._index.get_indexer(arr.astype(str)) if len(arr) else np.empty(0, dtype=np.int64)
        unknown = codes < 0
        if unknown.any():
            if missing == "error":
                bad = [str(x) for x in arr[unknown][:5]]
                raise UnknownIdError(f"Unknown {self.name} ids {bad} ({int(unknown.sum())} in all).")
            if missing == "drop":
                codes = codes[~unknown]
        return codes.astype(np.int64)

    def id_of(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """External ids of dense indices."""
        return self.ids[np.asarray(indices, dtype=np.int64)]

    def extend(self, new_ids: Iterable[str]) -> Vocabulary:
        """A vocabulary with unseen ids appended (existing indices unchanged)."""
        new = pd.Index(np.asarray(list(new_ids), dtype=object).astype(str)).unique()
        new = new[~new.isin(self._index)]
        return Vocabulary(np.concatenate([self.ids, new.to_numpy(dtype=str)]), self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    __hash__ = None  # type: ignore[assignment]
