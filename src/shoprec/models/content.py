"""Content-based recommendation from product text.

`TextContentRecommender` ("text") embeds every catalogue item's "title. category" with MiniLM
(`shoprec.text.encoder`) and scores items by cosine similarity to a recency-weighted mix of the
shopper's last items. It needs no interaction with an item to score it, so it ranks items that
never appeared in training (new products) like any other: that is its use for cold start
(`cold_start_scores`, and the protocol in `shoprec.evaluate.cold_start`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Catalogue
from shoprec.data.vocab import Vocabulary
from shoprec.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    UnknownIdError,
    check_float,
    check_int,
)
from shoprec.models.base import PerUserState, Recommender


class TextContentRecommender(Recommender):
    """Items nearest, by product-text embedding, to a shopper's recent items.

    recent: how many of the last history items form the query, in [1, 10000].
    decay: weight of an item relative to the one after it, in [0, 1]: the last item weighs 1,
        the one before `decay`, then decay**2... (1 = all `recent` items equal).
    cache_dir: the text encoder's cache folder (None: $SHOPREC_CACHE/text or
        ~/.cache/shoprec/text).
    encoder: a `TextEncoder` to use instead of the packaged MiniLM (tests inject a fake one).
        It is a resource, not a hyperparameter: `get_params` leaves it out and a saved model
        does not need it (the item vectors are saved).

    Scores are cosines in [-1, 1]. A history with no embedded item (empty, or only items
    without text) gets training popularity scaled into [0, 1) instead, so it still gets a list.
    """

    name = "text"
    # Each shopper's ordered training history (for recency weights), saved as csr "hist".
    per_user_state = PerUserState(csr=("hist",))
    sequential = True  # the order of the history matters (recency weights)

    def __init__(
        self,
        recent: int = 10,
        decay: float = 0.8,
        cache_dir: str | Path | None = None,
        encoder=None,
    ) -> None:
        self.recent = recent
        self.decay = decay
        self.cache_dir = cache_dir
        self.encoder = encoder

    def get_params(self) -> dict:
        """Hyperparameters (without `encoder`, a runtime resource); cache_dir as a str."""
        params = super().get_params()
        params.pop("encoder", None)
        if params.get("cache_dir") is not None:
            params["cache_dir"] = str(params["cache_dir"])
        return params

    # ---- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Dataset, valid: sp.csr_matrix | None = None) -> None:
        if train.catalogue is None:
            raise DataError(
                f"TextContentRecommender needs a catalogue with product titles; "
                f"{train.name} has no catalogue."
            )
        from shoprec.text.encoder import item_text_matrix

        vectors = item_text_matrix(
            train.items, train.catalogue, cache_dir=self.cache_dir, encoder=self.encoder
        )
        if not np.abs(vectors).sum(axis=1).any():
            raise DataError(f"No item of {train.name} has a title or category to embed.")
        self.item_vectors_ = np.ascontiguousarray(vectors, dtype=np.float32)
        pop = train.item_popularity().astype(np.float64)
        self.popularity_ = (pop / (pop.max() + 1.0)).astype(np.float32)
        self._store_histories()

    def _check_params(self) -> None:
        check_int("recent", self.recent, 1, 10_000, "TextContentRecommender")
        check_float("decay", self.decay, 0.0, 1.0, "TextContentRecommender")

    def _store_histories(self) -> None:
        lengths = np.array([len(h) for h in self._train_histories], np.int64)
        self._hist_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._hist_items = (
            np.concatenate(self._train_histories).astype(np.int64)
            if lengths.sum()
            else np.empty(0, np.int64)
        )

    # ---- scoring -------------------------------------------------------------------------------
    def query_vectors(self, histories: list[np.ndarray]) -> np.ndarray:
        """Unit-norm query vectors (len(histories), dim): recency-weighted sums of item vectors.

        A row is zero when no item of the history has text.
        """
        self._check_fitted()
        recent = int(self.recent)
        tails = [np.asarray(h, dtype=np.int64)[-recent:] for h in histories]
        lengths = np.array([len(t) for t in tails], np.int64)
        n = len(tails)
        if lengths.sum() == 0:
            return np.zeros((n, self.item_vectors_.shape[1]), np.float32)
        items = np.concatenate(tails)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        # Age 0 is the last item; the weight falls by `decay` per step back.
        age = np.repeat(indptr[1:], lengths) - np.arange(len(items)) - 1
        weights = np.power(np.float64(self.decay), age).astype(np.float32)
        w = sp.csr_matrix((weights, items, indptr), shape=(n, len(self.item_vectors_)))
        q = np.asarray(w @ self.item_vectors_, dtype=np.float32)
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        return np.divide(q, norms, out=np.zeros_like(q), where=norms > 1e-12)

    def _score_histories(self, histories, events=None) -> np.ndarray:
        q = self.query_vectors(histories)
        scores = q @ self.item_vectors_.T
        blank = ~(np.abs(q).sum(axis=1) > 0)
        if blank.any():
            scores[blank] = self.popularity_
        return scores

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        ptr, items = self._hist_indptr, self._hist_items
        return self._score_histories([items[ptr[u] : ptr[u + 1]] for u in users])

    # ---- persistence ---------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            "item_vectors": self.item_vectors_,
            "popularity": self.popularity_,
            "hist_indptr": self._hist_indptr,
            "hist_items": self._hist_items,
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_vectors_ = np.asarray(state["item_vectors"], np.float32)
        self.popularity_ = np.asarray(state["popularity"], np.float32)
        self._hist_indptr = np.asarray(state["hist_indptr"], np.int64)
        self._hist_items = np.asarray(state["hist_items"], np.int64)
        if self.item_vectors_.shape[0] != len(self.items_) or len(self.popularity_) != len(
            self.items_
        ):
            raise ValueError("item vectors do not match the item vocabulary")
        ptr = self._hist_indptr
        self._train_histories = [self._hist_items[ptr[u] : ptr[u + 1]] for u in range(len(ptr) - 1)]


def cold_start_scores(
    model: TextContentRecommender,
    history_items: list[str] | np.ndarray,
    new_items: list[str] | np.ndarray,
    catalogue: Catalogue | None = None,
) -> np.ndarray:
    """Scores (len(new_items),) of items for a raw history, including items the model never saw.

    history_items: external ids of the shopper's items, oldest first (unknown ids are ignored).
    new_items: external ids to score. Items in the model's vocabulary use their stored vectors;
        others are embedded from `catalogue` (title and category) with the model's encoder, so a
        product added after fitting can be ranked at once.
    Scores are cosines; 0.0 for an item without text, and for every item when no history item
    has text. Raises UnknownIdError for items neither in the vocabulary nor in `catalogue`.
    """
    if not isinstance(model, TextContentRecommender):
        raise ConfigError(
            f"cold_start_scores needs a TextContentRecommender. Got {type(model).__name__}."
        )
    if not model.is_fitted:
        raise NotFittedError("cold_start_scores needs a fitted TextContentRecommender; call fit(train) first.")
    hist = model.items_.index(np.asarray(history_items, dtype=str), missing="drop")
    query = model.query_vectors([hist])[0]
    new_ids = np.asarray(new_items, dtype=str).reshape(-1)
    idx = model.items_.index(new_ids, missing="-1")
    vectors = np.zeros((len(new_ids), model.item_vectors_.shape[1]), np.float32)
    known = idx >= 0
    vectors[known] = model.item_vectors_[idx[known]]
    if (~known).any():
        unknown = new_ids[~known]
        in_catalogue = (
            np.isin(unknown, catalogue.frame["item"].to_numpy(dtype=str))
            if catalogue is not None
            else np.zeros(len(unknown), bool)
        )
        if not in_catalogue.all():
            raise UnknownIdError(
                f"Unknown item ids {list(unknown[~in_catalogue][:5])}: neither in the model nor in "
                "the catalogue given; pass catalogue= with their titles."
            )
        from shoprec.text.encoder import TextEncoder, item_text_matrix

        encoder = model.encoder if model.encoder is not None else TextEncoder(model.cache_dir)
        if encoder.dim != vectors.shape[1]:
            raise ConfigError(
                f"The encoder gives {encoder.dim}-d vectors but the model was fitted with "
                f"{vectors.shape[1]}-d ones."
            )
        unique = list(dict.fromkeys(unknown))
        embedded = item_text_matrix(Vocabulary(unique, "item"), catalogue, encoder=encoder)
        vectors[~known] = embedded[[unique.index(u) for u in unknown]]
    return (vectors @ query).astype(np.float32)
