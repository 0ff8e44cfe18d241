"""EASE: the embarrassingly shallow autoencoder (Steck, WWW 2019)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

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
                f"its 'max_items' limit of {max_items}. Use 'item-knn' for catalogues this large, "
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
