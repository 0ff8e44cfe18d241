"""Differentially private item counts for the popularity and trending pools.

A count is the number of distinct shoppers who interacted with an item (in a time window, for
trending). Each shopper contributes at most `max_items_per_user` items (when they have more, a
pseudo-random choice of their distinct items keyed on their own ids), so adding or removing one shopper changes the
count vector by at most c = max_items_per_user in L1 norm and sqrt(c) in L2 norm. Then:

- Laplace mechanism: counts + Laplace(c / epsilon) noise per item, (epsilon, 0)-DP.
- Gaussian mechanism: counts + N(0, sigma^2), sigma from the analytic Gaussian mechanism
  (Balle & Wang 2018) for L2 sensitivity sqrt(c), (epsilon, delta)-DP for any epsilon > 0.

The `sampler` picks where the noise comes from:

- "float" (the default, reproducible): numpy's seeded floating-point Laplace / normal
  generators. Floating-point samplers have known weaknesses (Mironov 2012), and the seed is
  predictable; fine for experiments, not for a hardened release.
- "discrete": exact integer noise (`shoprec.privacy.discrete`): the discrete Laplace with scale
  >= c / epsilon, pure epsilon-DP; the discrete Gaussian with sigma^2 calibrated for the
  discrete mechanism itself (CKS Theorem 7 when c = 1, zCDP and CKS Corollary 13 otherwise).
  Randomness from the operating system's CSPRNG, for both the noise and the choice of which
  items a heavy shopper keeps (see `bounded_pairs`). Not reproducible, by design.
- "discrete-seeded": the same exact algorithms driven by numpy's seeded generator:
  reproducible, for tests and experiments; as predictable as "float".

The spent budget is a `PrivacyReport` (mechanism "laplace", "gaussian", "discrete-laplace" or
"discrete-gaussian") that `DPPopularity` saves beside its counts. `dp_item_counts(...).counts` and
`dp_recent_counts(...).counts` are what `shoprec.explore.pools` takes as `popularity` and
`recent_counts`.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError, check_choice, check_float, check_int
from shoprec.models.base import PerUserState, Recommender
from shoprec.privacy.accountant import PrivacyReport, check_budget
from shoprec.privacy.discrete import (
    SecureIntegers,
    SeededIntegers,
    calibrate_discrete_gaussian,
    calibrate_discrete_laplace,
    discrete_gaussian,
    discrete_laplace,
)

MECHANISMS = ("laplace", "gaussian")
SAMPLERS = ("float", "discrete", "discrete-seeded")
DAY = 86_400


@dataclass(frozen=True)
class DPCounts:
    """Noisy per-item counts (float64, negatives clipped to 0) and the budget they spent."""

    counts: np.ndarray
    report: PrivacyReport


def bounded_pairs(
    data: Dataset, max_items_per_user: int, seed: int = 0, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs with at most `max_items_per_user` items per user.

    mask: rows of `data` to use (for example a time window). A user with more distinct items
    keeps a pseudo-random subset of them: the items with the smallest keyed hash of (shopper id,
    item id, seed). The subset is a function of the shopper's own data alone, so adding or
    removing one shopper changes no one else's subset and the sensitivity is exactly c, whether
    or not the seed is known (a random stream shared by all shoppers, as before, let one
    shopper's presence move every later shopper's draws).
    """
    users, items = data.user_idx, data.item_idx
    if mask is not None:
        users, items = users[mask], items[mask]
    if len(users) == 0:
        return users, items
    key = users * np.int64(data.n_items) + items
    key = np.unique(key)
    users, items = key // data.n_items, key % data.n_items
    # A keyed hash rank within each user, then keep ranks < c.
    order = np.lexsort((_pair_hash(data, users, items, seed), users))
    users, items = users[order], items[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(users)) + 1])
    rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.concatenate([starts, [len(users)]])))
    keep = rank < max_items_per_user
    return users[keep], items[keep]


def _pair_hash(data: Dataset, users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A uint64 hash of each (shopper id, item id) pair under a key made from the seed: raw ids,
    not indices, since indices shift when a shopper is added."""
    import pandas as pd

    hash_key = f"{int(seed) % 10**16:016d}"
    user_hash = pd.util.hash_array(np.asarray(data.users.ids, dtype=object), hash_key=hash_key)[users]
    item_hash = pd.util.hash_array(np.asarray(data.items.ids, dtype=object), hash_key=hash_key)[items]
    mixed = user_hash * np.uint64(0x9E3779B97F4A7C15) ^ item_hash  # wraps modulo 2**64
    return pd.util.hash_array(mixed, hash_key=hash_key)


def gaussian_sigma(epsilon: float, delta: float, l2_sensitivity: float) -> float:
    """Smallest sigma for which the Gaussian mechanism is (epsilon, delta)-DP (Balle & Wang 2018,
    Theorem 8), found by bisection on the exact privacy profile."""
    from scipy.stats import norm

    def delta_of(sigma: float) -> float:
        a = l2_sensitivity / (2 * sigma)
        b = epsilon * sigma / l2_sensitivity
        return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))

    lo, hi = 1e-6, 1.0
    while delta_of(hi) > delta:
        hi *= 2
        if hi > 1e12:
            raise ConfigError(f"No Gaussian noise meets epsilon={epsilon:g}, delta={delta:g}.")
    for _ in range(200):
        mid = (lo + hi) / 2
        if delta_of(mid) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def dp_item_counts(
    data: Dataset,
    epsilon: float,
    *,
    delta: float | None = None,
    mechanism: str = "laplace",
    max_items_per_user: int = 10,
    mask: np.ndarray | None = None,
    seed: int = 0,
    sampler: str = "float",
) -> DPCounts:
    """Distinct-shopper counts per item with epsilon-DP (Laplace) or (epsilon, delta)-DP (Gaussian).

    epsilon: the budget, > 0 (None/inf returns exact counts, reported as epsilon = inf).
    delta: Gaussian only; None -> 1 / n ** 1.1 for n shoppers.
    mask: rows to count (for example a trending window); shoppers outside it do not count.
    sampler: "float", "discrete" (exact, secure randomness; `seed` is then not used) or
    "discrete-seeded" (exact, seeded); see the module docstring.
    """
    where = "dp_item_counts"
    check_choice("mechanism", mechanism, MECHANISMS, where)
    check_choice("sampler", sampler, SAMPLERS, where)
    c = check_int("max_items_per_user", max_items_per_user, 1, 1_000_000, where)
    n_users = max(int(data.n_users), 1)
    eps, dlt = check_budget(epsilon, delta if mechanism == "gaussian" else None, n_users, where)
    secure = sampler == "discrete"
    _, items = bounded_pairs(data, c, secrets.randbits(63) if secure else seed, mask)
    exact = np.bincount(items, minlength=data.n_items).astype(np.float64)
    if not math.isfinite(eps):
        report = PrivacyReport("none", math.inf, 0.0, unit="user", n_users=n_users, max_items_per_user=c)
        return DPCounts(exact, report)
    if sampler == "float":
        noise, name, spent, dlt, extra = _float_noise(mechanism, len(exact), eps, dlt, c, seed)
    else:
        source = SecureIntegers() if secure else SeededIntegers(seed + 1)
        noise, name, spent, dlt, extra = _discrete_noise(mechanism, len(exact), eps, dlt, c, source)
        extra["randomness"] = "secure" if secure else "seeded"
    extra["sampler"] = sampler
    report = PrivacyReport(
        name, spent, dlt, unit="user", target_epsilon=eps, n_users=n_users,
        max_items_per_user=c, extra=extra,
    )
    # Clipping at 0 is post-processing: it costs no budget.
    return DPCounts(np.maximum(exact + noise, 0.0), report)


def _float_noise(mechanism: str, n: int, eps: float, dlt: float, c: int, seed: int):
    """numpy's floating-point noise: (noise, mechanism name, epsilon, delta, report extras)."""
    rng = np.random.default_rng(seed + 1)
    if mechanism == "laplace":
        scale = c / eps
        return rng.laplace(0.0, scale, size=n), "laplace", eps, 0.0, {
            "l1_sensitivity": float(c), "scale": float(scale)}
    sigma = gaussian_sigma(eps, dlt, math.sqrt(c))
    return rng.normal(0.0, sigma, size=n), "gaussian", eps, dlt, {
        "l2_sensitivity": math.sqrt(c), "sigma": float(sigma)}


def _discrete_noise(mechanism: str, n: int, eps: float, dlt: float, c: int, source):
    """Exact integer noise calibrated for the discrete mechanism (as `_float_noise` returns).

    One shopper adds 1 to each of at most c counts: L1 sensitivity c, squared L2 sensitivity c,
    and with c = 1 a single coordinate changes, where CKS Theorem 7 is exact.
    """
    if mechanism == "laplace":
        cal = calibrate_discrete_laplace(eps, c)
        noise = discrete_laplace(cal.scale, n, source)
        # The scale is rounded up onto an exact rational, so the epsilon spent is <= the target.
        return noise.astype(np.float64), "discrete-laplace", cal.epsilon, 0.0, {
            "l1_sensitivity": float(c), "scale": float(cal.scale), "scale_exact": str(cal.scale)}
    cal = calibrate_discrete_gaussian(eps, dlt, c, coordinates_changed=1 if c == 1 else None)
    noise = discrete_gaussian(cal.sigma2, n, source)
    return noise.astype(np.float64), "discrete-gaussian", eps, dlt, {
        "l2_sensitivity": math.sqrt(c), "sigma": math.sqrt(cal.sigma2), "sigma2_exact": str(cal.sigma2),
        "rho": cal.rho, "bound": cal.bound, "delta_bound": cal.delta_bound}


def dp_recent_counts(
    data: Dataset,
    epsilon: float,
    *,
    window_days: float = 7.0,
    now: int | None = None,
    **kwargs,
) -> DPCounts:
    """Private counts over the last `window_days` before `now` (epoch seconds; default: the
    latest timestamp in `data`), for the trending pool. Other arguments as `dp_item_counts`."""
    check_float("window_days", window_days, 1e-6, 1e6, "dp_recent_counts")
    end = int(data.timestamp.max()) if now is None and len(data) else int(now or 0)
    mask = (data.timestamp > end - window_days * DAY) & (data.timestamp <= end)
    return dp_item_counts(data, epsilon, mask=mask, **kwargs)


class DPPopularity(Recommender):
    """Popularity ranking from differentially private counts ("dp-pop").

    Every shopper gets the same ranking: items by noisy distinct-shopper counts, over the whole
    log or, with window_days, over the latest window (the trending pool). The spent budget is
    saved with the model (`privacy_`).

    epsilon: > 0, or None for exact counts.
    delta: Gaussian only (None: 1 / n ** 1.1).
    mechanism: "laplace" or "gaussian".
    max_items_per_user: c, the contribution bound of each shopper.
    window_days: None for all-time popularity, else the latest window in days.
    seed: seeds subsampling and noise (not used for either by sampler "discrete").
    sampler: "float" (default), "discrete" (exact, secure: for a real release) or
        "discrete-seeded" (exact, reproducible); see `dp_item_counts`.
    """

    name = "dp-pop"
    per_user_state = PerUserState()

    def __init__(
        self,
        epsilon: float | None = 1.0,
        delta: float | None = None,
        mechanism: str = "laplace",
        max_items_per_user: int = 10,
        window_days: float | None = None,
        seed: int = 0,
        sampler: str = "float",
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.mechanism = mechanism
        self.max_items_per_user = max_items_per_user
        self.window_days = window_days
        self.seed = seed
        self.sampler = sampler

    def _check_params(self) -> None:
        check_int("seed", self.seed, 0, 2**32 - 1, "DPPopularity")
        check_choice("mechanism", self.mechanism, MECHANISMS, "DPPopularity")
        check_choice("sampler", self.sampler, SAMPLERS, "DPPopularity")

    def _fit(self, train: Dataset, valid=None) -> None:
        kwargs = {
            "delta": self.delta, "mechanism": self.mechanism,
            "max_items_per_user": self.max_items_per_user, "seed": int(self.seed),
            "sampler": self.sampler,
        }
        if self.window_days is None:
            result = dp_item_counts(train, self.epsilon, **kwargs)
        else:
            result = dp_recent_counts(train, self.epsilon, window_days=self.window_days, **kwargs)
        # A tiny seeded jitter breaks ties between equal counts without favouring low indices.
        jitter = np.random.default_rng(self.seed + 2).random(train.n_items) * 1e-6
        self.counts_ = result.counts
        self.item_scores_ = (result.counts + jitter).astype(np.float64)
        self.privacy_ = result.report

    def _score_histories(self, histories, events=None) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(histories), len(self.item_scores_))).copy()

    def _get_state(self):
        return {"counts": self.counts_, "item_scores": self.item_scores_, "privacy": self.privacy_.state()}

    def _set_state(self, state):
        self.counts_ = state["counts"]
        self.item_scores_ = state["item_scores"]
        self.privacy_ = PrivacyReport.from_state(state["privacy"])

    @property
    def privacy(self) -> PrivacyReport:
        self._check_fitted()
        return self.privacy_


__all__ = [
    "MECHANISMS",
    "SAMPLERS",
    "DPCounts",
    "DPPopularity",
    "bounded_pairs",
    "dp_item_counts",
    "dp_recent_counts",
    "gaussian_sigma",
]
