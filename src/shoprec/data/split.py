"""Train / validation / test splits, deterministic for a given seed.

Every split keeps the full dataset's vocabularies, so that evaluation ranks over the whole item
catalogue and a model fitted on `train` scores the test users directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, EmptyDataError, check_choice, check_float

PROTOCOLS = ("loo", "temporal", "random")


@dataclass
class Split:
    """A train part and held-out targets as user x item indicator matrices.

    `valid` and `test` hold 1 at (user, item) for each held-out item; users without held-out items
    have empty rows and are not evaluated. For leave-one-out, `valid_train` is train plus nothing
    and `test_train` is train plus the validation item, as in SASRec's protocol, where the test
    prediction sees the validation item as part of the history.
    """

    protocol: str
    train: Dataset
    valid: sp.csr_matrix
    test: sp.csr_matrix
    test_history: Dataset  # the history a model sees when predicting test targets

    def with_user_ids(self, rename) -> Split:
        """The same split with user ids replaced by rename(id) (see `Dataset.with_user_ids`)."""
        from dataclasses import replace

        return replace(self, train=self.train.with_user_ids(rename), test_history=self.test_history.with_user_ids(rename))

    @property
    def test_users(self) -> np.ndarray:
        return np.flatnonzero(np.diff(self.test.indptr) > 0)


def _targets(data: Dataset, mask: np.ndarray) -> sp.csr_matrix:
    m = sp.csr_matrix(
        (np.ones(int(mask.sum()), np.float32), (data.user_idx[mask], data.item_idx[mask])),
        shape=(data.n_users, data.n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def leave_one_out(data: Dataset, min_history: int = 3) -> Split:
    """Last event of each user is the test item, the one before it validation (SASRec/BERT4Rec).

    Users with fewer than `min_history` events stay wholly in training (the papers keep such users
    in training and do not evaluate them).
    """
    if len(data) == 0:
        raise EmptyDataError("Cannot split an empty dataset.")
    indptr = data.indptr
    lengths = np.diff(indptr)
    eligible = lengths >= min_history
    pos = np.arange(len(data))
    # Position of each row within its user's time-ordered history, counted from the end.
    from_end = np.repeat(indptr[1:], lengths) - pos
    row_eligible = np.repeat(eligible, lengths)
    test_mask = row_eligible & (from_end == 1)
    valid_mask = row_eligible & (from_end == 2)
    train_mask = ~(test_mask | valid_mask)
    return Split(
        "loo",
        data.subset(train_mask, f"{data.name}[train]"),
        _targets(data, valid_mask),
        _targets(data, test_mask),
        data.subset(~test_mask, f"{data.name}[train+valid]"),
    )


def temporal_split(data: Dataset, test_fraction: float = 0.2, valid_fraction: float = 0.1) -> Split:
    """Global time cut: the latest `test_fraction` of events is test, the slice before it valid.

    Test and validation targets are restricted to users and items that have training history is
    *not* done: cold items stay as targets, so the figure is honest about cold start.
    """
    check_float("test_fraction", test_fraction, 0.0, 0.9, "temporal_split")
    check_float("valid_fraction", valid_fraction, 0.0, 0.9, "temporal_split")
    if test_fraction + valid_fraction >= 1.0:
        raise ConfigError("test_fraction + valid_fraction must be below 1.")
    ts = data.timestamp
    test_cut = np.quantile(ts, 1.0 - test_fraction, method="lower")
    valid_cut = np.quantile(ts, 1.0 - test_fraction - valid_fraction, method="lower")
    test_mask = ts > test_cut
    valid_mask = (ts > valid_cut) & ~test_mask
    train_mask = ~(test_mask | valid_mask)
    return Split(
        "temporal",
        data.subset(train_mask, f"{data.name}[train]"),
        _targets(data, valid_mask),
        _targets(data, test_mask),
        data.subset(~test_mask, f"{data.name}[train+valid]"),
    )


def random_holdout(
    data: Dataset, test_fraction: float = 0.2, valid_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Each event goes to test / valid / train at random (same seed, same split)."""
    check_float("test_fraction", test_fraction, 0.0, 0.9, "random_holdout")
    check_float("valid_fraction", valid_fraction, 0.0, 0.9, "random_holdout")
    if test_fraction + valid_fraction >= 1.0:
        raise ConfigError("test_fraction + valid_fraction must be below 1.")
    u = np.random.default_rng(seed).random(len(data))
    test_mask = u < test_fraction
    valid_mask = (u >= test_fraction) & (u < test_fraction + valid_fraction)
    train_mask = ~(test_mask | valid_mask)
    return Split(
        "random",
        data.subset(train_mask, f"{data.name}[train]"),
        _targets(data, valid_mask),
        _targets(data, test_mask),
        data.subset(~test_mask, f"{data.name}[train+valid]"),
    )


def split(data: Dataset, protocol: str = "loo", seed: int = 0) -> Split:
    """Dispatch by protocol name: 'loo', 'temporal' or 'random'."""
    check_choice("protocol", protocol, PROTOCOLS, "split")
    if protocol == "loo":
        return leave_one_out(data)
    if protocol == "temporal":
        return temporal_split(data)
    return random_holdout(data, seed=seed)


def k_core(data: Dataset, k_users: int = 5, k_items: int = 5, max_rounds: int = 50) -> Dataset:
    """Iteratively drop users with < k_users distinct items and items with < k_items users.

    Returns a dataset with fresh vocabularies holding only the survivors.
    """
    from shoprec.data.vocab import Vocabulary

    keep = np.ones(len(data), bool)
    for _ in range(max_rounds):
        pairs = np.unique(np.stack([data.user_idx[keep], data.item_idx[keep]]), axis=1)
        ucount = np.bincount(pairs[0], minlength=data.n_users)
        icount = np.bincount(pairs[1], minlength=data.n_items)
        new_keep = keep & (ucount[data.user_idx] >= k_users) & (icount[data.item_idx] >= k_items)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise EmptyDataError(f"Nothing survives a ({k_users}, {k_items})-core filter.")
    users = Vocabulary(data.users.ids[np.unique(data.user_idx[keep])], "user")
    items = Vocabulary(data.items.ids[np.unique(data.item_idx[keep])], "item")
    return Dataset.from_arrays(
        users,
        items,
        users.index(data.users.ids[data.user_idx[keep]]),
        items.index(data.items.ids[data.item_idx[keep]]),
        data.event[keep],
        data.timestamp[keep],
        data.value[keep],
        data.catalogue,
        data.name,
    )
