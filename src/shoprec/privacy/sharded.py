"""SISA-style sharded training ("sisa"): exact unlearning by retraining one shard.

Shoppers are split into `n_shards` disjoint shards by a hash of their (pseudonymised) id; one
sub-model of the `base` model is trained on each shard's events alone, and the ensemble scores a
history as the mean of the sub-models' row-standardised scores (Bourtoule et al. 2021, "Machine
Unlearning", without the slicing). Because no sub-model ever saw another shard's shoppers,
`forget(ids)` removes the shoppers' events and retrains only the shards they were in: the result
is exactly the model that training without those shoppers would have produced (same seeds).

The shard logs are kept in the model (they are needed to retrain) and are per-shopper data:
`forget` removes the shopper from them too. Cost: each shard sees 1/n_shards of the data, so
accuracy usually drops a little against one model on everything (measured in docs/privacy.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, ModelFormatError, check_int
from shoprec.models.base import PerUserState, Recommender, jsonable_params

_LOG_KEYS = ("user_idx", "item_idx", "event", "timestamp", "value")


def shard_of(ids: np.ndarray, n_shards: int) -> np.ndarray:
    """Stable shard number of each id (first 8 bytes of SHA-256, mod n_shards)."""
    return np.array(
        [int.from_bytes(hashlib.sha256(str(i).encode("utf-8")).digest()[:8], "big") % n_shards for i in ids],
        dtype=np.int64,
    )


class ShardedRecommender(Recommender):
    """An ensemble of one `base` model per shard of shoppers, retrainable shard by shard.

    base: a registered model name (for example "dp-mf", "ease", "als").
    n_shards: shards of shoppers, each with its own base model, in [1, 256].
    base_params: the base model's hyperparameters (None: its defaults).
    """

    name = "sisa"
    # The shard logs are per-shopper data too; erasure calls `forget`, which drops the shopper
    # from them and retrains their shard, so no array is edited from outside.
    per_user_state = PerUserState()

    def __init__(self, base: str = "dp-mf", n_shards: int = 4, base_params: dict[str, Any] | None = None) -> None:
        self.base = base
        self.n_shards = n_shards
        self.base_params = base_params

    def _check_params(self) -> None:
        from shoprec.models.registry import model_class

        check_int("n_shards", self.n_shards, 1, 256, "ShardedRecommender")
        if self.base == self.name:
            raise ConfigError("The 'base' parameter of ShardedRecommender cannot be 'sisa' itself.")
        model_class(self.base)  # raises ConfigError naming the known models
        if self.base_params is not None and not isinstance(self.base_params, dict):
            raise ConfigError(
                f"The 'base_params' parameter of ShardedRecommender must be a dict or None. "
                f"Got {type(self.base_params).__name__} instead."
            )

    def _make_base(self) -> Recommender:
        from shoprec.models.registry import make_model

        return make_model(self.base, **(self.base_params or {}))

    # ---- fitting ---------------------------------------------------------------------------
    def _fit(self, train: Dataset, valid=None) -> None:
        shards = shard_of(train.users.ids, int(self.n_shards))
        self.shard_logs_: list[dict[str, np.ndarray]] = []
        self.shard_users_: list[np.ndarray] = []
        for j in range(int(self.n_shards)):
            users = train.users.ids[shards == j]
            rows = np.isin(train.user_idx, np.flatnonzero(shards == j))
            local = Vocabulary(users, "user").index(train.users.ids[train.user_idx[rows]])
            self.shard_users_.append(users)
            self.shard_logs_.append(
                {
                    "user_idx": local,
                    "item_idx": train.item_idx[rows],
                    "event": train.event[rows],
                    "timestamp": train.timestamp[rows],
                    "value": train.value[rows],
                }
            )
        self.models_: list[Recommender | None] = [self._fit_shard(j) for j in range(int(self.n_shards))]

    def _shard_dataset(self, j: int) -> Dataset:
        log = self.shard_logs_[j]
        return Dataset.from_arrays(
            Vocabulary(self.shard_users_[j], "user"), self.items_, *(log[k] for k in _LOG_KEYS),
            name=f"shard{j}",
        )

    def _fit_shard(self, j: int) -> Recommender | None:
        data = self._shard_dataset(j)
        return self._make_base().fit(data) if len(data) else None

    # ---- unlearning ------------------------------------------------------------------------
    def forget(self, ids: list[str] | np.ndarray) -> list[int]:
        """Remove shoppers (stored ids) and retrain only their shards; returns the shard numbers
        retrained. Unknown ids are ignored."""
        self._check_fitted()
        ids = np.asarray([str(i) for i in ids], dtype=str)
        known = ids[np.isin(ids, self.users_.ids)]
        if len(known) == 0:
            return []
        touched = sorted({int(j) for j in shard_of(known, int(self.n_shards))})
        for j in touched:
            users = self.shard_users_[j]
            gone = np.flatnonzero(np.isin(users, known))
            keep_users = np.delete(users, gone)
            log = self.shard_logs_[j]
            rows = ~np.isin(log["user_idx"], gone)
            remap = np.full(len(users), -1, np.int64)
            remap[np.setdiff1d(np.arange(len(users)), gone)] = np.arange(len(keep_users))
            self.shard_logs_[j] = {k: v[rows] for k, v in log.items()}
            self.shard_logs_[j]["user_idx"] = remap[self.shard_logs_[j]["user_idx"]]
            self.shard_users_[j] = keep_users
            self.models_[j] = self._fit_shard(j)
        keep = ~np.isin(self.users_.ids, known)
        self.users_ = Vocabulary(self.users_.ids[keep], "user")
        self.seen_ = sp.csr_matrix(self.seen_[np.flatnonzero(keep)])
        self._train_histories = [h for h, k in zip(self._train_histories, keep) if k]
        self._train_events = [e for e, k in zip(self._train_events, keep) if k]
        return touched

    # ---- scoring ---------------------------------------------------------------------------
    def _score_histories(self, histories, events=None) -> np.ndarray:
        total = np.zeros((len(histories), len(self.items_)), np.float64)
        n = 0
        for model in self.models_:
            if model is None:
                continue
            s = np.asarray(model.score_histories(histories, events), np.float64)
            sd = s.std(axis=1, keepdims=True)
            total += (s - s.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
            n += 1
        return (total / max(n, 1)).astype(np.float32)

    # ---- persistence -----------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for j, model in enumerate(self.models_):
            p = f"shard{j}/"
            state[p + "users"] = np.asarray(self.shard_users_[j], dtype=str)
            for k in _LOG_KEYS:
                state[p + k] = self.shard_logs_[j][k]
            if model is not None:
                state[p + "params"] = np.array(json.dumps(jsonable_params(model.get_params())))
                for key, value in model.state_arrays().items():
                    state[p + "m/" + key] = np.asarray(value)
        return state

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        from shoprec.models.registry import model_class

        self.shard_users_, self.shard_logs_, self.models_ = [], [], []
        for j in range(int(self.n_shards)):
            p = f"shard{j}/"
            if p + "users" not in state:
                raise ModelFormatError(f"The sisa model file lacks shard {j}.")
            self.shard_users_.append(state[p + "users"].astype(str))
            self.shard_logs_.append({k: state[p + k] for k in _LOG_KEYS})
            if p + "params" not in state:
                self.models_.append(None)
                continue
            shard_state = {k[len(p) + 2 :]: v for k, v in state.items() if k.startswith(p + "m/")}
            params = json.loads(str(state[p + "params"]))
            self.models_.append(model_class(self.base).from_state(params, shard_state, self._shard_dataset(j)))


__all__ = ["ShardedRecommender", "shard_of"]
