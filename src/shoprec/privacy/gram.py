"""A private release of item-side sufficient statistics: the item-item Gram matrix X^T X.

X is the binary shopper x item matrix in which every shopper keeps only their `m` most recent
distinct items (`recent_items_matrix`). One shopper's contribution to X^T X is then x x^T for a
binary x with k <= m ones: k diagonal entries (their item counts) and k (k - 1) / 2 distinct
off-diagonal pairs, each 1. The release is the upper triangle, diagonal included, plus Gaussian
noise, mirrored to a symmetric matrix; the diagonal is multiplied by `diag_weight` a before the
noise is added and divided by it after (a > 1 spends more of the budget on the item counts).
Adding or removing one shopper changes the released vector by at most

    Delta = sqrt(a^2 m + m (m - 1) / 2)          (L2 norm, `gram_sensitivity`)

so noise N(0, sigma^2) on every released entry, sigma from the analytic Gaussian mechanism
(Balle & Wang 2018, `dp_counts.gaussian_sigma`) for L2 sensitivity Delta, makes the release
(epsilon, delta)-DP at the user level. The matrix is released once: this one Gaussian mechanism
is the whole privacy accounting (no composition, no subsampling), and what models do with the
release afterwards (projecting it, inverting it, keeping some items) is post-processing and
costs nothing. A shopper's own history, used at serving time to score items against the
released statistics, is theirs: the guarantee covers what the model shares across shoppers
(joint differential privacy, as in private ALS; Chien et al. 2021).

With `sampler="discrete"` the noise is exact discrete Gaussian noise on the integer counts
(`shoprec.privacy.discrete`, Canonne, Kamath & Steinke 2020) from the operating system's CSPRNG:
off-diagonal entries get variance sigma^2, the diagonal sigma^2 / a^2, and the accounting is
rho-zCDP, rho = Delta^2 / (2 sigma^2) summed over the released coordinates (each changes by 1
at most), converted to (epsilon, delta) by CKS Corollary 13; "discrete-seeded" draws the same from
a seeded generator (reproducible, for tests and experiments).

`GramConfig` holds the settings the models built on the release share (`dpease`, `dpknn`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, check_choice, check_float, check_int
from shoprec.models.base import PerUserState, Recommender, histories_to_csr
from shoprec.privacy.accountant import PrivacyReport, check_budget, is_private
from shoprec.privacy.discrete import (
    SecureIntegers,
    SeededIntegers,
    calibrate_discrete_gaussian,
    discrete_gaussian,
)
from shoprec.privacy.dp_counts import SAMPLERS, gaussian_sigma

__all__ = [
    "DENOISE",
    "DISCRETE_MECHANISM",
    "MECHANISM",
    "GramConfig",
    "GramRecommender",
    "GramRelease",
    "check_release_settings",
    "denoise_gram",
    "discrete_symmetric_noise",
    "gram_sensitivity",
    "noise_edge",
    "place_scores",
    "private_gram",
    "recent_items_matrix",
    "symmetric_noise",
]

MECHANISM = "gaussian-gram"
DISCRETE_MECHANISM = "discrete-gaussian-gram"
DENOISE = ("none", "psd", "lowrank")
_BLOCK = 1024


def recent_items_matrix(data: Dataset, max_items: int | None) -> sp.csr_matrix:
    """Binary user x item matrix of each user's `max_items` most recent distinct items.

    Recency is an item's last event (rows of a Dataset are in time order within each user).
    max_items None keeps every item (the same matrix as `data.matrix(binary=True)`).
    """
    if max_items is None:
        return data.matrix(binary=True)
    m = check_int("max_items_per_user", max_items, 1, 1_000_000, "recent_items_matrix")
    n_users, n_items = data.n_users, data.n_items
    users, items = data.user_idx, data.item_idx
    pos = np.arange(len(users), dtype=np.int64)
    key = users * np.int64(n_items) + items
    # The last event of every distinct (user, item): sort by key, newest first within a key.
    order = np.lexsort((-pos, key))
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    rows = order[first]
    # Newest first within each user, then rank by recency and keep the m newest.
    rows = rows[np.lexsort((-rows, users[rows]))]
    u = users[rows]
    starts = np.searchsorted(u, u, side="left")
    keep = rows[(np.arange(len(rows)) - starts) < m]
    out = sp.csr_matrix(
        (np.ones(len(keep), np.float32), (users[keep], items[keep])), shape=(n_users, n_items)
    )
    out.sum_duplicates()
    return out


def gram_sensitivity(max_items: int, diag_weight: float = 1.0) -> float:
    """L2 sensitivity of the released Gram (upper triangle with the diagonal x diag_weight) when
    one shopper with at most `max_items` distinct items is added or removed."""
    m = float(max_items)
    return math.sqrt(diag_weight**2 * m + m * (m - 1.0) / 2.0)


def symmetric_noise(n: int, sigma: float, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """(n, n) symmetric matrix whose upper triangle (diagonal included) is iid N(0, sigma^2).

    Drawn a strip of rows at a time and mirrored in place, so the peak is one n x n matrix.
    """
    z = _symmetric(n, lambda shape: rng.standard_normal(shape, dtype=dtype), dtype)
    z *= dtype(sigma)
    return z


def _symmetric(n: int, draw, dtype) -> np.ndarray:
    """(n, n) symmetric matrix whose upper triangle comes from draw(shape), a strip at a time."""
    z = np.empty((n, n), dtype)
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        z[s:e, s:] = draw((e - s, n - s))
        block = z[s:e, s:e]
        block[:] = np.triu(block) + np.triu(block, 1).T
        z[e:, s:e] = z[s:e, e:].T
    return z


def discrete_symmetric_noise(n: int, sigma2: Fraction, sigma2_diag: Fraction, source) -> np.ndarray:
    """(n, n) symmetric float32 matrix of exact discrete Gaussian integers: variance sigma2 above
    the diagonal, sigma2_diag on it (both exact rationals; `shoprec.privacy.discrete`)."""
    z = _symmetric(n, lambda shape: discrete_gaussian(sigma2, math.prod(shape), source).reshape(shape),
                   np.float32)
    z[np.diag_indices(n)] = discrete_gaussian(sigma2_diag, n, source)
    return z


def noise_edge(n: int, sigma: float) -> float:
    """2 sigma sqrt(n): the spectral norm of an n x n symmetric Gaussian noise matrix with entry
    standard deviation sigma (the edge of Wigner's semicircle), for large n."""
    return 2.0 * float(sigma) * math.sqrt(max(int(n), 1))


@dataclass(frozen=True)
class GramRelease:
    """The released statistics and what they cost.

    gram: (n_items, n_items) float32, symmetric: X^T X plus noise; its diagonal is `counts`.
    counts: noisy number of (capped) shoppers per item, float64 (not clipped).
    sigma: standard deviation of the noise on each off-diagonal entry (0 without privacy);
        the diagonal's is sigma / diag_weight.
    """

    gram: np.ndarray
    counts: np.ndarray
    sigma: float
    sensitivity: float
    report: PrivacyReport

    @property
    def sigma_diag(self) -> float:
        return self.sigma / float(self.report.extra.get("diag_weight", 1.0))


def private_gram(
    x: sp.csr_matrix,
    epsilon: float | None,
    delta: float | None = None,
    *,
    max_items: int | None,
    diag_weight: float = 1.0,
    seed: int = 0,
    sampler: str = "float",
    where: str = "private_gram",
) -> GramRelease:
    """Release X^T X once with the Gaussian mechanism at user level (see the module docstring).

    x: binary user x item matrix, every row with at most `max_items` ones (`recent_items_matrix`).
    epsilon: > 0, or None / inf for the exact Gram (reported as epsilon = inf).
    delta: in (0, 1/n) for n shoppers with items; None -> 1 / n ** 1.1.
    max_items: the contribution bound m the sensitivity is computed from; None only without
        privacy.
    sampler: "float" (numpy's seeded normal; the analytic Gaussian mechanism), "discrete"
        (exact discrete Gaussian from the OS CSPRNG; `seed` is not used) or "discrete-seeded".
    """
    x = sp.csr_matrix(x, dtype=np.float32)
    n_users = max(int((np.diff(x.indptr) > 0).sum()), 1)
    eps, dlt = check_budget(epsilon, delta, n_users, where)
    a = check_float("diag_weight", diag_weight, 1e-3, 1e3, where)
    check_choice("sampler", sampler, SAMPLERS, where)
    gram = (x.T @ x).toarray().astype(np.float32, copy=False)
    if not math.isfinite(eps):
        report = PrivacyReport("none", math.inf, 0.0, unit="user", n_users=n_users,
                               max_items_per_user=max_items)
        return GramRelease(gram, np.diag(gram).astype(np.float64), 0.0, 0.0, report)
    if max_items is None:
        raise ConfigError(
            f"The 'max_items_per_user' parameter of {where} must be an int in [1, 1000000] for a "
            f"private release (it bounds each shopper's contribution). Got None instead."
        )
    m = check_int("max_items_per_user", max_items, 1, 1_000_000, where)
    longest = int(np.diff(x.indptr).max()) if x.shape[0] else 0
    if longest > m or (x.data != 1).any():
        raise ConfigError(
            f"{where}: every row of x must be binary with at most max_items_per_user={m} items "
            f"(the sensitivity assumes it). Got a row with {longest} items; build x with "
            f"recent_items_matrix."
        )
    sens = gram_sensitivity(m, a)
    extra = {"sampler": sampler}
    if sampler == "float":
        sigma = gaussian_sigma(eps, dlt, sens)
        noise = symmetric_noise(gram.shape[0], sigma, np.random.default_rng(seed))
        # Diagonal: released as a * count + N(0, sigma^2), so count + N(0, (sigma / a)^2).
        noise[np.diag_indices_from(noise)] /= np.float32(a)
        mechanism, accountant = MECHANISM, "analytic-gaussian"
    else:
        # rho-zCDP adds over coordinates: m diagonal ones at variance sigma^2 / a^2 and
        # m (m - 1) / 2 pairs at sigma^2, each changed by 1, give rho = Delta^2 / (2 sigma^2).
        # The calibration wants an integer Delta^2: rounding it up only adds noise.
        cal = calibrate_discrete_gaussian(eps, dlt, math.ceil(sens**2 - 1e-9))
        source = SecureIntegers() if sampler == "discrete" else SeededIntegers(seed)
        noise = discrete_symmetric_noise(gram.shape[0], cal.sigma2, cal.sigma2 / Fraction(a * a), source)
        sigma = math.sqrt(cal.sigma2)
        mechanism, accountant = DISCRETE_MECHANISM, "zcdp-discrete-gaussian"
        extra.update(randomness="secure" if sampler == "discrete" else "seeded", sigma2_exact=str(cal.sigma2),
                     rho=cal.rho, bound=cal.bound, delta_bound=cal.delta_bound)
    gram += noise
    del noise
    report = PrivacyReport(
        mechanism, eps, dlt, unit="user", target_epsilon=eps, noise_multiplier=sigma / sens,
        steps=1, n_users=n_users, max_items_per_user=m, accountant=accountant,
        extra={
            "released": "item-item Gram X^T X (upper triangle and diagonal) of each shopper's "
                        f"{m} most recent distinct items",
            "l2_sensitivity": sens, "sigma": sigma, "diag_weight": a, **extra,
        },
    )
    return GramRelease(gram, np.diag(gram).astype(np.float64), float(sigma), sens, report)


def denoise_gram(gram: np.ndarray, method: str, edge: float = 0.0) -> np.ndarray:
    """Post-process a noisy Gram in place-ish; returns the result (float32).

    "none": unchanged. "psd": the nearest positive semidefinite matrix (negative eigenvalues set
    to 0; the true Gram is PSD). "lowrank": only the eigen-directions whose eigenvalue exceeds
    `edge` (the noise's spectral norm, `noise_edge`): everything below it is indistinguishable
    from noise.
    """
    check_choice("denoise", method, DENOISE, "denoise_gram")
    if method == "none":
        return gram
    floor = 0.0 if method == "psd" else float(edge)
    g = np.asarray(gram, np.float64)
    vals, vecs = scipy.linalg.eigh(g, overwrite_a=True, check_finite=False)
    keep = vals > floor
    vecs = vecs[:, keep] * np.sqrt(vals[keep])[None, :]
    return (vecs @ vecs.T).astype(np.float32)


def check_release_settings(config, where: str) -> None:
    """Check the settings every private release shares: target_epsilon, target_delta,
    max_items_per_user (required when private) and max_modelled."""
    if config.target_epsilon is not None:
        check_budget(config.target_epsilon, None, 2, where)  # type and sign; delta checked at fit
    if config.target_delta is not None:
        dlt = check_float("target_delta", config.target_delta, 0.0, 1.0, where)
        if not 0.0 < dlt < 1.0:
            raise ConfigError(
                f"The 'target_delta' parameter of {where} must be a number in (0, 1). Got {dlt} instead."
            )
    if config.max_items_per_user is None:
        if is_private(config.target_epsilon):
            raise ConfigError(
                f"The 'max_items_per_user' parameter of {where} must be an int in [1, 100000] "
                f"when target_epsilon is finite: it bounds each shopper's contribution. Got None."
            )
    else:
        check_int("max_items_per_user", config.max_items_per_user, 1, 100_000, where)
    if config.max_modelled is not None:
        check_int("max_modelled", config.max_modelled, 1, 200_000, where)


@dataclass(frozen=True)
class GramConfig:
    """The settings every model built on the private Gram shares. The defaults are those chosen
    on ML-1M's validation items at epsilon 8 and 2 (docs/privacy.md).

    Args:
        target_epsilon: the privacy budget of the one release; None or inf releases the exact
            Gram (the non-private counterpart).
        target_delta: None -> 1 / n ** 1.1 for n training shoppers; else in (0, 1/n).
        max_items_per_user: m, each shopper's most recent distinct items that enter the Gram
            (the contribution bound), in [1, 100000]; None keeps every item (only without
            privacy).
        diag_weight: the item counts' weight in the release, in [0.001, 1000]: their noise is
            sigma / diag_weight, at the price of a larger sigma everywhere.
        min_count: items whose noisy count is below this are not modelled (they score below
            every modelled item, in noisy-count order), >= 0.
        max_modelled: model at most this many items, those with the largest noisy counts (None:
            no limit), in [1, 200000]; bounds the dense n x n work on large catalogues.
        denoise: "none", "psd" (project to positive semidefinite) or "lowrank" (keep the
            eigen-directions above the noise's spectral norm 2 sigma sqrt(n)); only a private
            release is denoised (the exact Gram is PSD already).
        seed: seeds the noise; same seed, same release (not used by sampler "discrete").
        sampler: "float" (numpy's seeded normal), "discrete" (exact discrete Gaussian from the
            OS CSPRNG: for a release an adversary may see) or "discrete-seeded" (the same,
            seeded: reproducible).
    """

    target_epsilon: float | None = None
    target_delta: float | None = None
    max_items_per_user: int | None = 25
    diag_weight: float = 1.0
    min_count: float = 0.0
    max_modelled: int | None = 5000
    denoise: str = "psd"
    seed: int = 0
    sampler: str = "float"

    def __post_init__(self) -> None:
        where = type(self).__name__
        check_release_settings(self, where)
        check_float("diag_weight", self.diag_weight, 1e-3, 1e3, where)
        check_float("min_count", self.min_count, 0.0, 1e12, where)
        check_choice("denoise", self.denoise, DENOISE, where)
        check_int("seed", self.seed, 0, 2**31 - 1, where)
        check_choice("sampler", self.sampler, SAMPLERS, where)

    @property
    def private(self) -> bool:
        return is_private(self.target_epsilon)

    def release(self, train: Dataset, where: str) -> GramRelease:
        """The one private release of `train`'s capped Gram under these settings."""
        x = recent_items_matrix(train, self.max_items_per_user)
        return private_gram(
            x, self.target_epsilon, self.target_delta, max_items=self.max_items_per_user,
            diag_weight=float(self.diag_weight), seed=int(self.seed), sampler=self.sampler, where=where,
        )

    def modelled_items(self, counts: np.ndarray) -> np.ndarray:
        """Indices (ascending) of the items modelled: noisy count >= `min_count`, and of those
        the `max_modelled` with the largest noisy counts (ties: lower index). A choice made from
        the released counts only, so it costs no budget."""
        keep = np.flatnonzero(counts >= float(self.min_count)) if self.min_count > 0 else np.arange(len(counts))
        if self.max_modelled is not None and len(keep) > self.max_modelled:
            order = np.lexsort((keep, -counts[keep]))
            keep = np.sort(keep[order[: int(self.max_modelled)]])
        return keep


def place_scores(
    kept_scores: np.ndarray, keep: np.ndarray, counts: np.ndarray, n_items: int, break_ties: bool = True
) -> np.ndarray:
    """Scores over the whole catalogue from scores over the modelled items `keep`.

    Items that are not modelled score below every modelled item of the same row, ordered by
    their noisy count (a private popularity prior), so every score stays finite. With
    `break_ties`, modelled items with equal scores (a shopper none of whose items is modelled
    scores them all 0) are ordered by noisy count too, through a relative nudge of 1e-5 of the
    row's score range; private models use it, their non-private counterparts do not (so they
    keep their exact scores).
    """
    kept_scores = np.asarray(kept_scores, np.float32)
    if break_ties and kept_scores.size:
        c = np.asarray(counts, np.float64)[keep]
        prior = (c - c.min()) / max(float(np.ptp(c)), 1e-12)
        spread = np.ptp(kept_scores, axis=1, keepdims=True)
        spread = np.where(spread > 0, spread, 1.0)
        kept_scores = (kept_scores + 1e-5 * spread * prior[None, :]).astype(np.float32)
    if len(keep) == n_items:
        return kept_scores
    out = np.empty((kept_scores.shape[0], n_items), np.float32)
    out[:, keep] = kept_scores
    rest = np.setdiff1d(np.arange(n_items), keep)
    c = counts[rest]
    prior = (c - c.min()) / max(float(np.ptp(c)), 1e-12) if len(c) else c
    floor = kept_scores.min(axis=1, keepdims=True) if kept_scores.shape[1] else np.zeros((len(out), 1))
    out[:, rest] = (floor - 1.0 + 0.5 * prior[None, :]).astype(np.float32)
    return out


class GramRecommender(Recommender):
    """What the models built on one private Gram release share: item-side state only (a
    shopper is scored from their own history at request time), scoring through `_score_rows`
    (a csr matrix of histories -> scores over the catalogue), and the release's privacy record."""

    per_user_state = PerUserState()  # item x item weights; known users score from `seen_`
    privacy_: PrivacyReport

    def _score_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _score_histories(self, histories, events=None) -> np.ndarray:
        return self._score_rows(histories_to_csr(histories, len(self.items_)))

    def _score_known_users(self, users: np.ndarray) -> np.ndarray:
        return self._score_rows(self.seen_[users])

    @property
    def privacy(self) -> PrivacyReport:
        """The (epsilon, delta) of the released Gram this model was built from."""
        self._check_fitted()
        return self.privacy_
