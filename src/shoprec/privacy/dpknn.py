"""Differentially private item-kNN ("dp-item-knn"): cosine neighbours from a private Gram.

The item-item co-occurrence matrix X^T X (each shopper's `max_items_per_user` most recent
distinct items) is released once with the Gaussian mechanism at user level
(`shoprec.privacy.gram`); its diagonal is the item counts. Similarities are the shrunk cosine
of ItemKNN computed on the release,

    sim(i, j) = G~_ij / (sqrt(c~_i c~_j) + shrink + noise_shrink x sigma),

with noisy counts c~ clipped at 0 and negative similarities dropped; each candidate item keeps its
`neighbors` most similar items as its voters, as ItemKNN does. The extra shrinkage in units of
the noise's standard deviation damps pairs whose co-occurrence is mostly noise. A shopper's
scores are their own history times S, computed when they ask (joint DP).

With target_epsilon None (or inf), max_items_per_user None and no item filter (min_count 0,
max_modelled None) the model is ItemKNN exactly (same scores): the non-private counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.errors import check_float, check_int
from shoprec.models.knn import item_similarity
from shoprec.privacy.accountant import PrivacyReport
from shoprec.privacy.gram import (
    GramConfig,
    GramRecommender,
    denoise_gram,
    noise_edge,
    place_scores,
    recent_items_matrix,
)

__all__ = ["DPItemKNN", "DPItemKNNConfig", "dense_neighbours"]

_ROWS = 512


@dataclass(frozen=True)
class DPItemKNNConfig(GramConfig):
    """DP item-kNN's hyperparameters: ItemKNN's below, the release's from `GramConfig`.

    Args:
        neighbors: similar items kept per item, in [1, 100000].
        shrink: added to the norm product, >= 0 (as ItemKNN).
        noise_shrink: added shrinkage in units of the noise's sigma, in [0, 1e6].
    """

    neighbors: int = 100
    shrink: float = 10.0
    noise_shrink: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        where = type(self).__name__
        check_int("neighbors", self.neighbors, 1, 100_000, where)
        check_float("shrink", self.shrink, 0.0, 1e9, where)
        check_float("noise_shrink", self.noise_shrink, 0.0, 1e6, where)


def dense_neighbours(gram: np.ndarray, counts: np.ndarray, neighbors: int, shrink: float) -> sp.csr_matrix:
    """Row j: j's `neighbors` most similar items by shrunk cosine on a dense (noisy) Gram.

    Negative similarities and the diagonal are dropped. Computed a strip of rows at a time.
    """
    n = len(gram)
    norms = np.sqrt(np.maximum(np.asarray(counts, np.float64), 0.0)).astype(np.float32)
    k = min(int(neighbors), max(n - 1, 1))
    indptr, indices, data = [0], [], []
    for s in range(0, n, _ROWS):
        e = min(s + _ROWS, n)
        sim = gram[s:e] / (norms[s:e, None] * norms[None, :] + np.float32(shrink))
        sim[np.arange(e - s), np.arange(s, e)] = 0.0
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (e - s, 1))
        vals = np.take_along_axis(sim, top, axis=1)
        ok = vals > 0
        indices.append(top[ok])
        data.append(vals[ok])
        indptr.extend((indptr[-1] + np.cumsum(ok.sum(axis=1))).tolist())
    return sp.csr_matrix(
        (np.concatenate(data).astype(np.float32), np.concatenate(indices), np.asarray(indptr)), shape=(n, n)
    )


class DPItemKNN(GramRecommender):
    """Item-item cosine kNN on a user-level differentially private co-occurrence matrix.

    Hyperparameters: the fields of `DPItemKNNConfig` (`shoprec models --params dp-item-knn`).
    After fit, `privacy_` holds the release's (epsilon, delta), sigma and sensitivity.
    """

    name = "dp-item-knn"
    config_class = DPItemKNNConfig
    config_: DPItemKNNConfig

    def _fit(self, train: Dataset, valid=None) -> None:
        cfg = self.config_
        where = type(self).__name__
        n = train.n_items
        if not cfg.private and cfg.min_count == 0 and (cfg.max_modelled or n) >= n:
            # The exact Gram: ItemKNN's own sparse computation, so the scores are ItemKNN's.
            x = recent_items_matrix(train, cfg.max_items_per_user)
            self.similarity_ = item_similarity(x, int(cfg.neighbors), float(cfg.shrink)).T.tocsr()
            self.keep_ = np.arange(n, dtype=np.int64)
            self.counts_ = np.asarray(x.sum(axis=0), np.float64).ravel()
            self.privacy_ = PrivacyReport("none", float("inf"), 0.0, unit="user",
                                          n_users=int((np.diff(x.indptr) > 0).sum()),
                                          max_items_per_user=cfg.max_items_per_user)
            return
        release = cfg.release(train, where)
        keep = cfg.modelled_items(release.counts)
        gram = release.gram if len(keep) == n else release.gram[np.ix_(keep, keep)]
        if release.sigma > 0 and cfg.denoise != "none":
            gram = denoise_gram(gram, cfg.denoise, noise_edge(len(keep), release.sigma))
            counts = np.diag(gram).astype(np.float64)
        else:
            counts = release.counts[keep]
        shrink = float(cfg.shrink) + float(cfg.noise_shrink) * release.sigma
        self.similarity_ = dense_neighbours(gram, counts, int(cfg.neighbors), shrink).T.tocsr()
        self.keep_ = keep.astype(np.int64)
        self.counts_ = release.counts
        self.privacy_ = release.report

    def _score_rows(self, rows) -> np.ndarray:
        rows = rows[:, self.keep_] if len(self.keep_) < rows.shape[1] else rows
        return place_scores((rows @ self.similarity_).toarray(), self.keep_, self.counts_, len(self.items_),
                            break_ties=self.privacy_.private)


    def _get_state(self):
        s = self.similarity_
        return {"sim_data": s.data, "sim_indices": s.indices, "sim_indptr": s.indptr, "keep": self.keep_,
                "counts": self.counts_, "privacy": self.privacy_.state()}

    def _set_state(self, state):
        self.keep_ = np.asarray(state["keep"], np.int64)
        k = len(self.keep_)
        self.similarity_ = sp.csr_matrix((state["sim_data"], state["sim_indices"], state["sim_indptr"]), shape=(k, k))
        self.counts_ = np.asarray(state["counts"], np.float64)
        self.privacy_ = PrivacyReport.from_state(state["privacy"])
