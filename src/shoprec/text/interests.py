"""Multi-interest shoppers: a Gaussian mixture over the embeddings of what they engaged with.

A shopper who buys tea pots and garden tools has two interests; the mean of their embeddings sits
between both and near neither. `user_interests` finds the interests, `retrieve_per_interest` takes
the nearest items around each one (candidate pools for exploration).

How the mixture is fitted, and why:

* Histories are short (tens of items) and embeddings wide (384-d). A diagonal Gaussian has 769
  parameters per component there, so BIC's penalty (parameters x ln n) picks one component for
  nearly every history. The mixture is therefore fitted in the history's own top `n_dims`
  principal directions (3 by default), where the directions that separate interests live; the
  interest centres are then computed back in the embedding space, as responsibility-weighted
  means of the history's embeddings.
* The number of components is chosen by BIC among 1..k_max, where
  k_max = min(max_interests, n_distinct_items // min_items_per_interest): a history of fewer
  than 2 x min_items_per_interest distinct items has one interest.
* `reg_covar` is relative: the variance floor added to every component is reg_covar times the
  mean variance of the projected history. It keeps tiny clusters from having near-zero variance
  (and an unbounded likelihood) and sets how fine an interest may be.
* Repeated items are fitted once (k-means initialisation cannot split identical points); every
  occurrence counts in the weights and gets an assignment.

These defaults recovered the number of interests in about 70% of synthetic histories of 1-4
keyword groups of Amazon game titles (3-25 items per group), with an adjusted Rand index near
0.75; a random guess of k among 1-4 gets 25%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shoprec.errors import ConfigError, EmptyDataError, check_float, check_int


@dataclass(frozen=True)
class Interests:
    """A shopper's interests, heaviest first.

    means: (k, d) interest centres in the embedding space (responsibility-weighted means of the
        history's embeddings; not normalised: for unit-norm items, ranking by inner product with
        a centre is ranking by Euclidean distance to it).
    weights: (k,) share of the history's items in each interest; sums to 1.
    assignment: (n,) interest of each history row (argmax responsibility); -1 for rows without an
        embedding (all zeros).
    """

    means: np.ndarray
    weights: np.ndarray
    assignment: np.ndarray

    @property
    def n_interests(self) -> int:
        return len(self.weights)


def user_interests(
    item_embeddings_of_history: np.ndarray,
    max_interests: int = 4,
    seed: int = 0,
    *,
    min_items_per_interest: int = 3,
    n_dims: int = 3,
    reg_covar: float = 0.1,
) -> Interests:
    """Fit a diagonal Gaussian mixture to one history's embeddings, choosing k by BIC.

    item_embeddings_of_history: (n, d) embeddings of the history's items (repeats allowed);
        all-zero rows (items without text) are left out of the fit.
    max_interests: most interests, in [1, 64].
    seed: seeds the mixture's initialisation; same input and seed, same interests.
    min_items_per_interest: distinct items each interest needs on average, in [1, 1000].
    n_dims: principal directions the mixture is fitted in, in [1, 64].
    reg_covar: variance floor relative to the projected history's mean variance, in (0, 10].

    Raises EmptyDataError when no row has an embedding.
    """
    x = np.asarray(item_embeddings_of_history, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(
            f"user_interests expects a 2-d (n_items, dim) array. Got shape {x.shape}."
        )
    max_interests = check_int("max_interests", max_interests, 1, 64, "user_interests")
    seed = check_int("seed", seed, 0, 2**32 - 1, "user_interests")
    min_items = check_int(
        "min_items_per_interest", min_items_per_interest, 1, 1000, "user_interests"
    )
    n_dims = check_int("n_dims", n_dims, 1, 64, "user_interests")
    reg_covar = check_float("reg_covar", reg_covar, 0.0, 10.0, "user_interests")
    if reg_covar <= 0:
        raise ConfigError(
            f"The 'reg_covar' parameter of user_interests must be above 0. Got {reg_covar}."
        )
    if not np.isfinite(x).all():
        raise ConfigError("user_interests: the embeddings contain NaN or infinite values.")

    present = np.abs(x).sum(axis=1) > 0
    if not present.any():
        raise EmptyDataError(
            "user_interests: no history item has an embedding (empty history or no text)."
        )
    rows = x[present]
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(distinct)).astype(np.float64)
    k_max = min(max_interests, len(distinct) // min_items)

    if k_max <= 1:
        resp = np.ones((len(distinct), 1))
    else:
        resp = _fit_mixture(distinct, k_max, seed, n_dims, reg_covar)

    # Every occurrence counts: a twice-bought item weighs twice in its interest.
    mass = resp * counts[:, None]
    totals = mass.sum(axis=0)
    keep = totals > 1e-12  # a component that took no item (possible after EM) is dropped
    resp, mass, totals = resp[:, keep], mass[:, keep], totals[keep]
    means = (mass.T @ distinct) / totals[:, None]
    weights = totals / totals.sum()
    order = np.lexsort((np.arange(len(weights)), -weights))  # heaviest first, stable
    means, weights, resp = means[order], weights[order], resp[:, order]

    assignment = np.full(len(x), -1, np.int64)
    assignment[present] = np.argmax(resp, axis=1)[inverse]
    return Interests(means.astype(np.float32), weights.astype(np.float64), assignment)


def _fit_mixture(
    points: np.ndarray, k_max: int, seed: int, n_dims: int, reg_covar: float
) -> np.ndarray:
    """Responsibilities (n, k) of the BIC-best diagonal mixture with 1..k_max components."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    dims = min(n_dims, len(points) - 1, points.shape[1])
    z = PCA(n_components=dims, svd_solver="full").fit_transform(points)
    spread = float(z.var(axis=0).mean())
    if spread <= 1e-12:  # all points (numerically) the same: one interest
        return np.ones((len(points), 1))
    best_bic, best = np.inf, np.ones((len(points), 1))
    for k in range(1, k_max + 1):
        gmm = GaussianMixture(
            n_components=k,
            covariance_type="diag",
            reg_covar=reg_covar * spread,
            n_init=3,
            max_iter=300,
            random_state=seed,
        ).fit(z)
        bic = gmm.bic(z)
        if bic < best_bic - 1e-9:  # ties go to fewer interests
            best_bic, best = bic, gmm.predict_proba(z)
    return best


def retrieve_per_interest(
    interests: Interests,
    item_embeddings: np.ndarray,
    k_per_interest: int | Sequence[int],
    exclude: np.ndarray | Sequence[int] | None = None,
) -> list[np.ndarray]:
    """The items nearest each interest centre, best first: one index array per interest.

    item_embeddings: (n_items, d) unit-norm rows; all-zero rows (no text) are never returned.
    k_per_interest: items per interest, one int for all or one per interest (e.g. in
        proportion to `interests.weights`), each in [0, n_items].
    exclude: item indices never to return (the history, items out of stock).

    An item can be near two interests and then appears in both lists; callers that pool the
    lists deduplicate. A list is shorter than asked when too few items are left. Each list is
    ordered by similarity, then by item index.
    """
    emb = np.asarray(item_embeddings, dtype=np.float32)
    means = np.asarray(interests.means, dtype=np.float32)
    if emb.ndim != 2 or means.ndim != 2 or emb.shape[1] != means.shape[1]:
        raise ConfigError(
            f"item_embeddings must have shape (n_items, {means.shape[-1]}). Got {emb.shape} instead."
        )
    n_items, n_int = emb.shape[0], means.shape[0]
    if np.ndim(k_per_interest) == 0:
        ks = [
            check_int("k_per_interest", k_per_interest, 0, max(n_items, 0), "retrieve_per_interest")
        ] * n_int
    else:
        ks = [
            check_int("k_per_interest", k, 0, max(n_items, 0), "retrieve_per_interest")
            for k in k_per_interest
        ]
        if len(ks) != n_int:
            raise ConfigError(
                f"k_per_interest must give one count per interest ({n_int}). Got {len(ks)} counts."
            )
    scores = means @ emb.T  # (k, n_items)
    banned = ~(np.abs(emb).sum(axis=1) > 0)
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64).reshape(-1)
        if ex.size and (ex.min() < 0 or ex.max() >= n_items):
            raise ConfigError(f"exclude holds item indices outside [0, {n_items}).")
        banned[ex] = True
    scores[:, banned] = -np.inf
    ks = [min(k, int((~banned).sum())) for k in ks]
    k_top = max(ks, default=0)
    if k_top == 0:
        return [np.empty(0, np.int64) for _ in ks]
    # One argpartition for all interests, then sort just the k_top survivors of each row.
    top = np.argpartition(-scores, k_top - 1, axis=1)[:, :k_top]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=-1)
    top = np.take_along_axis(top, order, axis=1).astype(np.int64)
    return [top[i, :k].copy() for i, k in enumerate(ks)]
