"""Non-personalised baselines: all-time popularity, recent popularity, random."""

from __future__ import annotations

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import check_int
from shoprec.models.base import PerUserState, Recommender


class Popularity(Recommender):
    """Ranks items by the number of distinct users who interacted with them in training."""

    name = "pop"
    per_user_state = PerUserState()

    def _fit(self, train: Dataset, valid=None) -> None:
        self.item_scores_ = train.item_popularity().astype(np.float32)

    def _score_histories(self, histories, events=None) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(histories), len(self.item_scores_))).copy()

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(users), len(self.item_scores_))).copy()

    def _get_state(self):
        return {"item_scores": self.item_scores_}

    def _set_state(self, state):
        self.item_scores_ = state["item_scores"]


class RecentPopularity(Popularity):
    """Popularity over the last `window_days` of the training log (what is trending now).

    Items with no events in the window rank after every item that has some, ordered by their
    all-time popularity, so the list is always complete.

    window_days: the window, in days before the latest training event, in [1, 100000].
    """

    name = "recent-pop"

    def __init__(self, window_days: int = 30) -> None:
        self.window_days = window_days

    def _check_params(self) -> None:
        check_int("window_days", self.window_days, 1, 100_000, "RecentPopularity")

    def _fit(self, train: Dataset, valid=None) -> None:
        start = train.timestamp.max() - int(self.window_days) * 86_400
        recent = train.timestamp >= start
        recent_counts = np.bincount(train.item_idx[recent], minlength=train.n_items)
        all_time = train.item_popularity()
        # Tie-break by all-time popularity, scaled below 1 so it never beats a recent event.
        self.item_scores_ = (recent_counts + all_time / (all_time.max() + 1.0)).astype(np.float32)


class RandomRecommender(Recommender):
    """Uniformly random scores: the floor every model must clear. Seeded, so reproducible.

    seed: seeds the scores; the same seed gives the same scores in the same order of calls.
    """

    name = "random"
    per_user_state = PerUserState()

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _check_params(self) -> None:
        check_int("seed", self.seed, 0, 2**63 - 1, "RandomRecommender")

    def _fit(self, train: Dataset, valid=None) -> None:
        self._rng = np.random.default_rng(self.seed)

    def _set_state(self, state):
        self._rng = np.random.default_rng(self.seed)

    def _score_histories(self, histories, events=None) -> np.ndarray:
        return self._rng.random((len(histories), len(self.items_)), dtype=np.float32)

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return self._rng.random((len(users), len(self.items_)), dtype=np.float32)
