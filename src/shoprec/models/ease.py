"""EASE: the embarrassingly shallow autoencoder (Steck, WWW 2019), dense and sparse."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, check_float, check_int
from shoprec.models.base import PerUserState, Recommender, histories_to_csr


class EASE(Recommender):
    """Item-item linear model with a closed-form solution and a zero diagonal.

    With G = X^T X + l2 I over the binary user x item matrix X and P = G^-1, the weights are
    B = I - P / diag(P) (column j divided by P_jj), so B_jj = 0: an item may not predict itself.
    A history h scores items by h @ B.

    l2: the L2 penalty, > 0. Steck uses a few hundred for ML-20M-scale data; 500 suits ML-1M.
    max_items: the largest catalogue fitted. B is a dense n_items x n_items float32 matrix
        (30,000 items take 3.6 GB, and the inversion briefly needs as much again), so larger
        catalogues raise a ConfigError instead of swapping; use item-knn for them.
    """

    name = "ease"
    per_user_state = PerUserState()  # B is item x item; known users score from `seen_`

    def __init__(self, l2: float = 500.0, max_items: int = 30_000) -> None:
        self.l2 = l2
        self.max_items = max_items

    def _check_params(self) -> None:
        l2 = check_float("l2", self.l2, 0.0, 1e6, "EASE")
        if l2 == 0.0:
            raise ConfigError("The 'l2' parameter of EASE must be a number > 0. Got 0.0 instead.")
        check_int("max_items", self.max_items, 1, 200_000, "EASE")

    def _fit(self, train: Dataset, valid=None) -> None:
        l2, max_items = float(self.l2), int(self.max_items)
        n = train.n_items
        if n > max_items:
            gb = n * n * 4 / 1e9
            raise ConfigError(
                f"EASE needs a dense {n} x {n} item matrix (about {gb:.1f} GB), above "
                f"its 'max_items' limit of {max_items}. Use 'sparse-ease' or 'item-knn' for catalogues this large, "
                f"filter rare items (k-core), or raise max_items if the memory is there."
            )
        x = self.seen_
        self.weights_ = ease_weights((x.T @ x).toarray().astype(np.float32, copy=False), l2)

    def _score_histories(self, histories, events=None) -> np.ndarray:
        return np.asarray(histories_to_csr(histories, len(self.items_)) @ self.weights_)

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen_[users] @ self.weights_)

    def _get_state(self):
        return {"weights": self.weights_}

    def _set_state(self, state):
        self.weights_ = state["weights"]


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE's B = I - P / diag(P), P = (gram + l2 I)^-1, zero diagonal; overwrites `gram`.

    gram: a dense symmetric float32 item x item matrix (X^T X, or a private release of it)
    for which gram + l2 I is positive definite; ConfigError when it is not.
    """
    n = len(gram)
    gram[np.diag_indices(n)] += np.float32(l2)
    # G is symmetric positive definite: invert it in place through its Cholesky factor, and
    # turn P into B in place too, so the peak stays near one n x n matrix.
    b = _spd_inverse(gram)
    b /= -np.diag(b).copy()[None, :]
    b[np.diag_indices(n)] = 0.0
    return b


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite matrix, overwriting `a` (LAPACK potrf + potri)."""
    # LAPACK works in place only on Fortran-ordered arrays; a symmetric matrix's transpose is
    # itself and is Fortran-ordered when `a` is C-ordered, so pass that view instead of a copy.
    a = a.T if a.flags.c_contiguous else a
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (a,))
    c, info = potrf(a, lower=True, overwrite_a=True, clean=False)
    if info != 0:  # X^T X + l2 I with l2 > 0 always is; a noisy Gram may not be
        raise ConfigError(
            f"EASE could not factorise X^T X + l2 I (LAPACK info {info}); raise 'l2'."
        )
    inv, info = potri(c, lower=True, overwrite_c=True)
    if info != 0:  # pragma: no cover
        raise ConfigError(f"EASE could not invert X^T X + l2 I (LAPACK info {info}); raise 'l2'.")
    # potri fills only the lower triangle; mirror it a strip at a time (no n x n temporaries).
    n, step = len(inv), 1024
    for s in range(0, n, step):
        e = min(s + step, n)
        block = inv[s:e, s:e]
        block[:] = np.tril(block) + np.tril(block, -1).T
        inv[s:e, e:] = inv[e:, s:e].T
    return inv.T if inv.flags.f_contiguous else inv


# ---- sparse EASE, for catalogues too large for a dense item x item matrix -------------------
# Entries of the neighbours x neighbours systems built and solved together (a few hundred MB
# with their lookup temporaries).
_SOLVE_ENTRIES = 4_000_000
_GRAM_BLOCK_NNZ = 20_000_000  # stored entries of one block of X^T X rows while it is built


class SparseEASE(Recommender):
    """EASE with every item's column restricted to its most co-occurring items: sparse B.

    Column j of EASE's B is the ridge regression of item j's column of X on every other item's
    column: B[-j, j] = (G[-j, -j] + l2 I)^-1 G[-j, j] with G = X^T X (that is what
    I - P / diag(P) equals). Here the regressors are only N_j, the `neighbors` items that
    co-occur with j the most (by cosine, as item-kNN ranks them; the support fsSLIM uses,
    Ning & Karypis 2012), so each column is one small neighbors x neighbors solve and B has at
    most `neighbors` entries per column. With neighbors >= n_items - 1 it is EASE exactly.
    Memory is that of the sparse Gram (one entry per co-occurring item pair) plus B.

    l2: the L2 penalty, > 0 (EASE's).
    neighbors: regressors per item, in [1, 2000]; the solves cost neighbors^3 per item and the
        Gram lookups neighbors^2.
    """

    name = "sparse-ease"
    per_user_state = PerUserState()  # B is item x item; known users score from `seen_`

    def __init__(self, l2: float = 500.0, neighbors: int = 100) -> None:
        self.l2 = l2
        self.neighbors = neighbors

    def _check_params(self) -> None:
        l2 = check_float("l2", self.l2, 0.0, 1e6, "SparseEASE")
        if l2 == 0.0:
            raise ConfigError("The 'l2' parameter of SparseEASE must be a number > 0. Got 0.0 instead.")
        check_int("neighbors", self.neighbors, 1, 2000, "SparseEASE")

    def _fit(self, train: Dataset, valid=None) -> None:
        self.weights_ = sparse_ease_weights(self.seen_, float(self.l2), int(self.neighbors))

    def _score_histories(self, histories, events=None) -> np.ndarray:
        return (histories_to_csr(histories, len(self.items_)) @ self.weights_).toarray()

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return (self.seen_[users] @ self.weights_).toarray()

    def _get_state(self):
        w = self.weights_
        return {"weights_data": w.data, "weights_indices": w.indices, "weights_indptr": w.indptr}

    def _set_state(self, state):
        n = len(self.items_)
        self.weights_ = sp.csr_matrix(
            (state["weights_data"], state["weights_indices"], state["weights_indptr"]), shape=(n, n)
        )


def gram_matrix(x: sp.csr_matrix) -> sp.csr_matrix:
    """X^T X of a user x item matrix as sorted float32 csr, built a block of item rows at a time."""
    x = sp.csr_matrix(x, dtype=np.float32)
    xt = x.T.tocsr()
    # Upper bound on each item row's entries: the events of the users who have the item.
    work = np.cumsum((xt != 0).astype(np.float64) @ np.diff(x.indptr).astype(np.float64))
    parts, start, n = [], 0, xt.shape[0]
    while start < n:
        end = int(np.searchsorted(work, (work[start - 1] if start else 0.0) + _GRAM_BLOCK_NNZ, side="right"))
        end = min(max(end, start + 1), n)
        block = (xt[start:end] @ x).tocsr()
        block.sum_duplicates()
        parts.append(block)
        start = end
    gram = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((n, n), dtype=np.float32)
    gram.sort_indices()
    return gram


def _neighbourhoods(gram: sp.csr_matrix, k: int) -> np.ndarray:
    """(n_items, k) indices of each item's k most co-occurring other items by cosine; -1 pads."""
    n = gram.shape[0]
    rows = np.repeat(np.arange(n), np.diff(gram.indptr))
    norms = np.sqrt(np.maximum(gram.diagonal(), 0.0)).astype(np.float32)
    cosine = gram.data / np.maximum(norms[rows] * norms[gram.indices], np.float32(1e-12))
    cosine[gram.indices == rows] = -np.inf  # an item is not its own regressor
    # Order every row's entries by cosine, descending (ties: lower item first), keep the first k.
    order = np.lexsort((gram.indices, -cosine, rows))
    rank = np.arange(len(order)) - gram.indptr[rows]
    keep = order[(rank < k) & np.isfinite(cosine[order])]
    out = np.full((n, k), -1, np.int64)
    kept_rows = rows[keep]
    slot = np.arange(len(keep)) - np.searchsorted(kept_rows, kept_rows)  # position within its row
    out[kept_rows, slot] = gram.indices[keep]
    return out


def _lookup(gram: sp.csr_matrix, keys: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """gram[rows, cols] elementwise (0 where nothing is stored); keys = row * n + col, sorted."""
    wanted = rows * gram.shape[1] + cols
    pos = np.searchsorted(keys, wanted)
    pos_ok = np.minimum(pos, len(keys) - 1)
    found = (pos < len(keys)) & (keys[pos_ok] == wanted)
    return np.where(found, gram.data[pos_ok], np.float32(0.0))


def sparse_ease_weights(x: sp.csr_matrix, l2: float, neighbors: int) -> sp.csr_matrix:
    """SparseEASE's B (n_items x n_items csr; column j holds j's regression on its neighbours)."""
    import torch

    gram = gram_matrix(x)
    n = gram.shape[0]
    k = max(1, min(neighbors, n - 1))
    support = _neighbourhoods(gram, k)
    keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(gram.indptr)) * n + gram.indices
    eye = np.eye(k, dtype=np.float64)
    cols_out, rows_out, vals_out = [], [], []
    step = max(1, _SOLVE_ENTRIES // (k * k))
    for start in range(0, n, step):
        items = np.arange(start, min(start + step, n))
        nb = support[items]  # (b, k), -1 = padding
        real = nb >= 0
        safe = np.where(real, nb, 0)
        a = _lookup(gram, keys, safe[:, :, None], safe[:, None, :]).astype(np.float64)
        both = real[:, :, None] & real[:, None, :]
        # Padded regressors get an identity row and column and a zero right-hand side: weight 0.
        a = np.where(both, a, 0.0) + eye * np.where(real, l2, 1.0)[:, :, None]
        rhs = np.where(real, _lookup(gram, keys, safe, np.broadcast_to(items[:, None], safe.shape)), 0.0).astype(np.float64)
        b = torch.linalg.solve(torch.from_numpy(a), torch.from_numpy(rhs)[..., None])[..., 0].numpy()
        cols_out.append(np.broadcast_to(items[:, None], nb.shape)[real])
        rows_out.append(nb[real])
        vals_out.append(b[real].astype(np.float32))
    weights = sp.csr_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))), shape=(n, n)
    )
    weights.eliminate_zeros()
    return weights
