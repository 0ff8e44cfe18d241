"""Item vectors and nearest-neighbour search over them: exact for small catalogues, FAISS HNSW
for large ones.

Similar items and the "because you viewed X" explanations both need item-to-item similarity for
whatever model is served. Models that learn item vectors (`Recommender.item_embeddings`: the
Transformer's embeddings, factor models' item factors) provide them; for every other model the
vectors are a truncated SVD of the model's own training matrix (items x users), so they follow
the same co-occurrences the model learned from.

Exact search is a matrix-vector product and an `argpartition`: no build time, perfect recall,
cost linear in the catalogue. HNSW costs a build (seconds per 100k items, done when a model is
loaded, off the request path) and answers in near-constant time. `benchmarks/load.py --ann` measures
where the two cross on this machine; `ServeSettings.ann_threshold` holds the result.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from shoprec.errors import check_int

__all__ = ["ItemIndex", "item_vectors"]


def item_vectors(model, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit-length item vectors (n_items, d) for a fitted model; items without data get zeros.

    dim: the SVD rank when the model has no item factors of its own (capped by the data).
    """
    factors = model.item_embeddings()
    if factors is not None:
        vectors = np.asarray(factors, dtype=np.float32)
    else:
        vectors = _svd_vectors(model.seen_, dim, seed)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0).astype(np.float32)


def _svd_vectors(seen: sp.csr_matrix, dim: int, seed: int) -> np.ndarray:
    from sklearn.utils.extmath import randomized_svd

    x = sp.csr_matrix(seen.T, dtype=np.float32)  # items x users
    # Scale users by 1/sqrt(history length) so that heavy shoppers do not dominate every vector.
    user_len = np.asarray(x.sum(axis=0)).ravel()
    scale = 1.0 / np.sqrt(np.maximum(user_len, 1.0))
    x = x @ sp.diags(scale.astype(np.float32))
    rank = min(dim, min(x.shape) - 1)
    if rank < 1 or x.nnz == 0:
        return np.zeros((x.shape[0], 1), np.float32)
    u, s, _ = randomized_svd(x, n_components=rank, n_iter=4, random_state=seed)
    return (u * s).astype(np.float32)


class ItemIndex:
    """Inner-product search over unit vectors (cosine similarity).

    threshold: at this many items or more, an HNSW index is built (when faiss is installed);
    below it, search is exact.
    m, ef_search: HNSW graph degree and search breadth (recall against speed).
    """

    def __init__(self, vectors: np.ndarray, threshold: int = 100_000, m: int = 32, ef_search: int = 64) -> None:
        check_int("threshold", threshold, 1, 1 << 40, "ItemIndex")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.n, self.dim = self.vectors.shape
        self.kind = "exact"
        self._index = None
        if self.n >= threshold:
            try:
                import faiss
            except ImportError:  # pragma: no cover - faiss is in the 'ann' extra
                faiss = None
            if faiss is not None:
                index = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 80
                index.add(self.vectors)
                index.hnsw.efSearch = ef_search
                self._index = index
                self.kind = "hnsw"

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest items to one query vector: (indices, similarities), best first."""
        k = max(0, min(int(k), self.n))
        if k == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if self._index is not None:
            sims, idx = self._index.search(q, k)
            keep = idx[0] >= 0
            return idx[0][keep].astype(np.int64), sims[0][keep]
        sims = self.vectors @ q[0]
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.lexsort((top, -sims[top]))]
        return top.astype(np.int64), sims[top]
