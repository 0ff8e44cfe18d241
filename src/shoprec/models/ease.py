"""EASE: the embarrassingly shallow autoencoder (Steck, WWW 2019), dense and sparse."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, check_float, check_int
from shoprec.models.base import PerUserState, Recommender, histories_to_csr
from shoprec.models.knn import _csr_from_state, _csr_state, _row_blocks, keep_top_per_row


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
        _check_l2(self.l2, "EASE")
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


def _check_l2(l2, where: str) -> None:
    """EASE's penalty: a number in (0, 1e6]."""
    if check_float("l2", l2, 0.0, 1e6, where) == 0.0:
        raise ConfigError(f"The 'l2' parameter of {where} must be a number > 0. Got 0.0 instead.")


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
        _check_l2(self.l2, "SparseEASE")
        check_int("neighbors", self.neighbors, 1, 2000, "SparseEASE")

    def _fit(self, train: Dataset, valid=None) -> None:
        self.weights_ = sparse_ease_weights(self.seen_, float(self.l2), int(self.neighbors))

    def _score_histories(self, histories, events=None) -> np.ndarray:
        return (histories_to_csr(histories, len(self.items_)) @ self.weights_).toarray()

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return (self.seen_[users] @ self.weights_).toarray()

    def _get_state(self):
        return _csr_state("weights", self.weights_)

    def _set_state(self, state):
        n = len(self.items_)
        self.weights_ = _csr_from_state("weights", state, (n, n))


def gram_matrix(x: sp.csr_matrix, neighbors: int | None = None) -> tuple[sp.csr_matrix, np.ndarray | None]:
    """X^T X of a user x item matrix as sorted float32 csr, built a block of item rows at a time,
    and (when `neighbors` is given) each item's neighbourhood from its finished rows
    (`_neighbourhoods`), so that no nnz-sized temporary beyond the Gram itself is ever held."""
    x = sp.csr_matrix(x, dtype=np.float32)
    xt = x.T.tocsr()
    n = xt.shape[0]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel()).astype(np.float32)
    # Upper bound on each item row's entries: the events of the users who have the item.
    work = (xt != 0).astype(np.float64) @ np.diff(x.indptr).astype(np.float64)
    data, indices, counts, support = [], [], [], []
    for start, end in _row_blocks(work, _GRAM_BLOCK_NNZ):
        block = (xt[start:end] @ x).tocsr()
        block.sum_duplicates()
        block.sort_indices()
        if neighbors is not None:
            support.append(_neighbourhoods(block, start, norms, neighbors))
        data.append(block.data.astype(np.float32, copy=False))
        indices.append(block.indices.astype(np.int32, copy=False))
        counts.append(np.diff(block.indptr))
        del block
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]) if counts else np.zeros(n + 1, np.int64)
    gram = sp.csr_matrix((np.concatenate(data) if data else np.zeros(0, np.float32),
                          np.concatenate(indices) if indices else np.zeros(0, np.int32), indptr), shape=(n, n))
    gram.has_sorted_indices = True
    return gram, (np.concatenate(support) if support else np.zeros((0, neighbors), np.int64)) if neighbors else None


def _neighbourhoods(rows_block: sp.csr_matrix, first: int, norms: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) indices of each row's k most co-occurring other items by cosine (ties: lower
    item first, as `keep_top_per_row`); -1 pads. rows_block: rows first, first + 1, ... of the
    Gram."""
    n_rows = rows_block.shape[0]
    item = first + np.repeat(np.arange(n_rows), np.diff(rows_block.indptr))
    cosine = sp.csr_matrix(
        (rows_block.data / np.maximum(norms[item] * norms[rows_block.indices], np.float32(1e-12)),
         rows_block.indices, rows_block.indptr), shape=rows_block.shape, copy=True)  # the Gram keeps its block
    cosine.data[cosine.indices == item] = 0.0  # an item is not its own regressor
    cosine.eliminate_zeros()
    top = keep_top_per_row(cosine, k)
    counts = np.diff(top.indptr)
    out = np.full((n_rows, k), -1, np.int64)
    out[np.repeat(np.arange(n_rows), counts), np.arange(top.nnz) - np.repeat(top.indptr[:-1], counts)] = top.indices
    return out


def _lookup(gram: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """gram[rows, cols] elementwise (0 where nothing is stored), for sorted csr indices: a
    binary search inside each row's slice, all queries at once."""
    rows, cols = np.broadcast_arrays(rows, cols)
    lo = gram.indptr[rows].astype(np.int64)
    hi = gram.indptr[rows + 1].astype(np.int64)
    indices = gram.indices
    # Invariant: the entry, if stored, is in [lo, hi); every step halves the widest range.
    for _ in range(int(np.ceil(np.log2(max(int(np.diff(gram.indptr).max(initial=1)), 1) + 1))) + 1):
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo + hi) >> 1
        below = open_ & (indices[np.minimum(mid, len(indices) - 1)] < cols)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(open_ & ~below, mid, hi)
    at = np.minimum(lo, max(len(indices) - 1, 0))
    found = (lo < gram.indptr[rows + 1]) & (indices[at] == cols) if len(indices) else np.zeros(rows.shape, bool)
    return np.where(found, gram.data[at] if len(indices) else 0.0, np.float32(0.0))


def sparse_ease_weights(x: sp.csr_matrix, l2: float, neighbors: int) -> sp.csr_matrix:
    """SparseEASE's B (n_items x n_items csr; column j holds j's regression on its neighbours)."""
    import torch

    n = x.shape[1]
    k = max(1, min(neighbors, n - 1))
    gram, support = gram_matrix(x, k)
    eye = np.eye(k, dtype=np.float64)
    iu0, iu1 = np.triu_indices(k)
    cols_out, rows_out, vals_out = [], [], []
    step = max(1, _SOLVE_ENTRIES // (k * k))
    for start in range(0, n, step):
        items = np.arange(start, min(start + step, n))
        nb = support[items]  # (b, k), -1 = padding
        real = nb >= 0
        safe = np.where(real, nb, 0)
        # G[N_j, N_j] is symmetric: look up its upper triangle only, then mirror it.
        a = np.empty((len(items), k, k), np.float64)
        upper = _lookup(gram, safe[:, iu0], safe[:, iu1])
        a[:, iu0, iu1] = upper
        a[:, iu1, iu0] = upper
        both = real[:, :, None] & real[:, None, :]
        # Padded regressors get an identity row and column and a zero right-hand side: weight 0.
        a = np.where(both, a, 0.0) + eye * np.where(real, l2, 1.0)[:, :, None]
        rhs = np.where(real, _lookup(gram, safe, items[:, None]), 0.0).astype(np.float64)
        b = torch.linalg.solve(torch.from_numpy(a), torch.from_numpy(rhs)[..., None])[..., 0].numpy()
        cols_out.append(np.broadcast_to(items[:, None], nb.shape)[real])
        rows_out.append(nb[real])
        vals_out.append(b[real].astype(np.float32))
    weights = sp.csr_matrix(
        (np.concatenate(vals_out), (np.concatenate(rows_out), np.concatenate(cols_out))), shape=(n, n)
    )
    weights.eliminate_zeros()
    return weights
