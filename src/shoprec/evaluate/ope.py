"""Off-policy evaluation: the value of a policy estimated from another policy's logged slates.

A log holds n requests with k slots each: the shown action (a candidate column), the logging
policy's propensity of showing it there, and the reward. A target policy is given by its own
probabilities of showing each candidate in each slot. Under a position-based click model (a
slot's reward depends on the shopper, the item and the slot only), the value of a policy, the
expected total reward of one slate, is estimated slot by slot:

- IPS: mean over requests of sum_j w_j r_j, with w_j = target / logging propensity.
- SNIPS: per slot, sum_i w_ij r_ij / sum_i w_ij; summed over slots.
- DM: sum_j sum_a target(a | j) r_hat(a, j) from a reward model.
- DR: DM plus sum_j w_j (r_j - r_hat(a_j, j)).
- Replay (Li et al. 2011), for uniform logs: per slot, the mean reward of the requests where the
  target's own choice equals the logged one (weighted by 1 / propensity when given, which is the
  same when every request has as many candidates).

Every estimate comes with a percentile bootstrap interval over requests, or over groups of
requests (`groups`: one label per request, e.g. the shopper) when requests of one group are not
independent: a shopper seen in many rounds brings correlated rewards and weights, and resampling
their requests one by one would make the interval too narrow. Arrays of shape (n,) are
read as one slot per request. A single-slot, k = 1 log is the usual contextual bandit.

`shoprec.simulation.validation` checks the estimators against a simulated store's truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.errors import DataError, EmptyDataError, check_float, check_int

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "RewardModel",
    "direct_method",
    "doubly_robust",
    "ips",
    "replay",
    "snips",
]

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dm", "dr")


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate with its bootstrap confidence interval."""

    estimator: str
    value: float
    ci: tuple[float, float]
    n: int
    level: float = 0.95

    def covers(self, truth: float) -> bool:
        return self.ci[0] <= truth <= self.ci[1]

    def relative_error(self, truth: float) -> float:
        """|estimate - truth| / |truth| (as in the Open Bandit Pipeline)."""
        return abs(self.value - truth) / abs(truth) if truth else float("inf")

    def as_dict(self, truth: float | None = None) -> dict:
        out = {"estimate": self.value, "ci95": [self.ci[0], self.ci[1]], "n": self.n}
        if truth is not None:
            out.update(truth=truth, relative_error=self.relative_error(truth), covered=self.covers(truth))
        return out


# ---- validation -----------------------------------------------------------------------------
def _array(name: str, values, ndim: int = 2) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == ndim - 1:
        arr = arr[:, None] if ndim == 2 else arr[:, None, :]
    if arr.ndim != ndim:
        raise DataError(f"{name} must be a {ndim - 1}- or {ndim}-dimensional array. Got shape {arr.shape} instead.")
    return arr


def _check_same_shape(**arrays: np.ndarray) -> None:
    shapes = [a.shape for a in arrays.values()]
    if len(set(shapes)) > 1:
        names = list(arrays)
        listed = ", ".join(names[:-1]) + " and " + names[-1]
        got = ", ".join(str(s) for s in shapes[:-1]) + " and " + str(shapes[-1])
        raise DataError(f"{listed} must have the same shape; got {got}.")
    if shapes and shapes[0][0] == 0:
        raise EmptyDataError("Off-policy estimation needs at least one logged request; got none.")


def _first_bad(name: str, arr: np.ndarray, bad: np.ndarray, rule: str) -> None:
    if bad.any():
        flat = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
        value = arr.reshape(len(arr), -1)[flat[0]][bad.reshape(len(arr), -1)[flat[0]]][0]
        raise DataError(
            f"{name} must be {rule}; {int(bad.sum())} values are not (first: {float(value)!r} at row {int(flat[0])})."
        )


def check_probabilities(name: str, values, allow_zero: bool) -> np.ndarray:
    """A float array of probabilities: in (0, 1] (logging) or [0, 1] (target); NaN is an error."""
    arr = np.asarray(values, dtype=np.float64)
    rule = "probabilities in [0, 1]" if allow_zero else "probabilities in (0, 1]"
    _first_bad(name, arr, np.isnan(arr), rule + " (not NaN)")
    low_bad = arr < 0 if allow_zero else arr <= 0
    _first_bad(name, arr, low_bad | (arr > 1 + 1e-9), rule)
    return np.minimum(arr, 1.0)  # sums of probabilities may exceed 1 by a rounding error


def _check_rewards(rewards: np.ndarray) -> None:
    _first_bad("rewards", rewards, ~np.isfinite(rewards), "finite numbers")


def _bootstrap(n: int, n_bootstrap: int, seed: int, *columns: np.ndarray,
               groups: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Column sums over `n_bootstrap` resamples (with replacement) of the n requests, or of the
    groups of requests when `groups` (n,) labels them (a cluster bootstrap: the requests of one
    shopper are resampled together). For each (n, m) array in `columns`, an (n_bootstrap, m)
    array; and the number of requests in each resample (n_bootstrap,)."""
    check_int("n_bootstrap", n_bootstrap, 10, 1_000_000, "off-policy estimation")
    rng = np.random.default_rng(seed)
    sizes = np.ones(n)
    if groups is not None:
        labels, code = np.unique(groups, return_inverse=True)
        n_groups = len(labels)
        sizes = np.bincount(code, minlength=n_groups).astype(np.float64)
        columns = tuple(np.stack([np.bincount(code, weights=c[:, j], minlength=n_groups) for j in range(c.shape[1])],
                                 axis=1) for c in columns)
    units = len(sizes)
    out = [np.empty((n_bootstrap, c.shape[1])) for c in columns]
    counts = np.empty(n_bootstrap)
    chunk = max(1, 2_000_000 // max(units, 1))
    for start in range(0, n_bootstrap, chunk):
        idx = rng.integers(0, units, size=(min(chunk, n_bootstrap - start), units))
        for o, c in zip(out, columns):
            o[start:start + len(idx)] = c[idx].sum(axis=1)
        counts[start:start + len(idx)] = sizes[idx].sum(axis=1)
    return out, counts


def _groups(groups, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.shape != (n,):
        raise DataError(f"groups must have one label per request, shape ({n},). Got {g.shape} instead.")
    return g


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.nanquantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _mean_estimate(name: str, per_request: np.ndarray, n_bootstrap: int, level: float, seed: int,
                   groups=None) -> Estimate:
    check_float("level", level, 0.5, 0.999, "off-policy estimation")
    (sums,), counts = _bootstrap(len(per_request), n_bootstrap, seed, per_request[:, None],
                                 groups=_groups(groups, len(per_request)))
    boot = sums[:, 0] / counts
    return Estimate(name, float(per_request.mean()), _interval(boot, level), len(per_request), level)


def _ratio_estimate(name: str, num: np.ndarray, den: np.ndarray, n_bootstrap: int, level: float, seed: int,
                    groups=None) -> Estimate:
    """sum over slots of (sum_i num_ij / sum_i den_ij), with a bootstrap over requests (or groups)."""
    check_float("level", level, 0.5, 0.999, "off-policy estimation")

    def value(n_sum: np.ndarray, d_sum: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d_sum > 0, n_sum / np.where(d_sum > 0, d_sum, 1.0), 0.0).sum(axis=-1)

    (num_sums, den_sums), _ = _bootstrap(len(num), n_bootstrap, seed, num, den, groups=_groups(groups, len(num)))
    boot = value(num_sums, den_sums)
    return Estimate(name, float(value(num.sum(axis=0), den.sum(axis=0))), _interval(boot, level), len(num), level)


# ---- estimators -----------------------------------------------------------------------------
def _weights(rewards, logging_propensity, target_propensity) -> tuple[np.ndarray, np.ndarray]:
    _check_same_shape(rewards=np.asarray(rewards), logging_propensity=np.asarray(logging_propensity),
                      target_propensity=np.asarray(target_propensity))
    r = _array("rewards", rewards)
    p0 = _array("logging_propensity", logging_propensity)
    pe = _array("target_propensity", target_propensity)
    _check_rewards(r)
    p0 = check_probabilities("logging_propensity", p0, allow_zero=False)
    pe = check_probabilities("target_propensity", pe, allow_zero=True)
    return r, pe / p0


def ips(rewards, logging_propensity, target_propensity, *, n_bootstrap: int = 1000, level: float = 0.95,
        seed: int = 0, groups=None) -> Estimate:
    """Inverse propensity scoring: unbiased when the logging propensities are right and positive
    wherever the target policy acts. Arrays: (n,) or (n, k)."""
    r, w = _weights(rewards, logging_propensity, target_propensity)
    return _mean_estimate("ips", (w * r).sum(axis=1), n_bootstrap, level, seed, groups)


def snips(rewards, logging_propensity, target_propensity, *, n_bootstrap: int = 1000, level: float = 0.95,
          seed: int = 0, groups=None) -> Estimate:
    """Self-normalised IPS, per slot: slightly biased, much less variable than IPS."""
    r, w = _weights(rewards, logging_propensity, target_propensity)
    return _ratio_estimate("snips", w * r, w, n_bootstrap, level, seed, groups)


def _dist_and_hat(target_dist, reward_hat) -> tuple[np.ndarray, np.ndarray]:
    _check_same_shape(target_dist=np.asarray(target_dist), reward_hat=np.asarray(reward_hat))
    dist = _array("target_dist", target_dist, ndim=3)
    hat = _array("reward_hat", reward_hat, ndim=3)
    dist = check_probabilities("target_dist", dist, allow_zero=True)
    total = dist.sum(axis=2)
    if (total > 1 + 1e-6).any():
        row = int(np.flatnonzero((total > 1 + 1e-6).any(axis=1))[0])
        raise DataError(f"target_dist must sum to at most 1 over candidates in each slot; row {row} sums to {float(total[row].max())!r}.")
    _first_bad("reward_hat", hat, ~np.isfinite(hat), "finite numbers")
    return dist, hat


def direct_method(target_dist, reward_hat, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                  groups=None) -> Estimate:
    """The reward model's value of the target policy: sum_j sum_a target(a | j) r_hat(a, j).

    target_dist, reward_hat: (n, k, C) (or (n, C) for one slot)."""
    dist, hat = _dist_and_hat(target_dist, reward_hat)
    return _mean_estimate("dm", (dist * hat).sum(axis=(1, 2)), n_bootstrap, level, seed, groups)


def doubly_robust(rewards, actions, logging_propensity, target_dist, reward_hat, *, n_bootstrap: int = 1000,
                  level: float = 0.95, seed: int = 0, groups=None) -> Estimate:
    """DM corrected by IPS on the reward model's residual: unbiased if either the propensities or
    the reward model are right. actions (n, k): the logged candidate columns."""
    _check_same_shape(rewards=np.asarray(rewards), actions=np.asarray(actions),
                      logging_propensity=np.asarray(logging_propensity))
    dist, hat = _dist_and_hat(target_dist, reward_hat)
    a = _actions(actions, dist)
    pe = np.take_along_axis(dist, a[..., None], axis=2)[..., 0]
    r, w = _weights(_array("rewards", rewards), _array("logging_propensity", logging_propensity), pe)
    hat_a = np.take_along_axis(hat, a[..., None], axis=2)[..., 0]
    per_request = (dist * hat).sum(axis=(1, 2)) + (w * (r - hat_a)).sum(axis=1)
    return _mean_estimate("dr", per_request, n_bootstrap, level, seed, groups)


def _actions(actions, dist: np.ndarray) -> np.ndarray:
    a = np.asarray(actions)
    if a.ndim == 1:
        a = a[:, None]
    if a.shape != dist.shape[:2]:
        raise DataError(f"actions must have shape {dist.shape[:2]} (requests x slots). Got {a.shape} instead.")
    if not np.issubdtype(a.dtype, np.integer) or (a < 0).any() or (a >= dist.shape[2]).any():
        raise DataError(f"actions must be candidate columns, integers in [0, {dist.shape[2]}).")
    return a.astype(np.int64)


def replay(rewards, actions, target_actions, logging_propensity=None, *, n_bootstrap: int = 1000,
           level: float = 0.95, seed: int = 0, groups=None) -> Estimate:
    """Replay for logs of a uniformly random policy: per slot, the mean reward over the requests
    where the target's choice (one draw of it) equals the logged action."""
    shapes = {"rewards": np.asarray(rewards), "actions": np.asarray(actions), "target_actions": np.asarray(target_actions)}
    if logging_propensity is not None:
        shapes["logging_propensity"] = np.asarray(logging_propensity)
    _check_same_shape(**shapes)
    r = _array("rewards", rewards)
    a, t = _array("actions", actions), _array("target_actions", target_actions)
    _check_rewards(r)
    u = np.ones_like(r)
    if logging_propensity is not None:
        p0 = _array("logging_propensity", logging_propensity)
        u = 1.0 / check_probabilities("logging_propensity", p0, allow_zero=False)
    match = (a == t).astype(np.float64) * u
    empty = np.flatnonzero(match.sum(axis=0) == 0)
    if len(empty):
        raise DataError(f"replay: no logged event matches the target policy in slot {int(empty[0])}; the log is too small.")
    return _ratio_estimate("replay", match * r, match, n_bootstrap, level, seed, groups)


class RewardModel:
    """A logistic reward model r_hat(x, a, slot) for DM and DR: sigmoid(b + features . w + b_slot).

    Fitted by scikit-learn's L2-regularised logistic regression on logged (features, slot,
    reward) rows; features are standardised first. The intercept b is not penalised (lbfgs
    leaves it out of the penalty) and is then solved to its optimum's condition exactly, the
    mean prediction over the log equal to the mean reward (lbfgs meets it only to its tolerance,
    14% off at rare rewards); the slot offsets b_slot are penalised deviations from it. Penalising the whole per-slot
    intercept instead pulls it towards logit 0: at click rates near 0.001 that doubled every
    prediction, and DM with it.
    """

    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = check_float("l2", l2, 1e-9, 1e9, "RewardModel")

    def fit(self, features: np.ndarray, slots: np.ndarray, rewards: np.ndarray, n_slots: int) -> RewardModel:
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(features, np.float64)
        y = (np.asarray(rewards) > 0).astype(int)
        if len(np.unique(y)) < 2:
            raise DataError("The reward model needs both rewarded and unrewarded events in the log.")
        self.mean_, self.scale_ = x.mean(axis=0), x.std(axis=0) + 1e-12
        self.n_slots_ = n_slots
        design = np.concatenate([(x - self.mean_) / self.scale_, np.eye(n_slots)[np.asarray(slots)]], axis=1)
        self.model_ = LogisticRegression(C=1.0 / self.l2, max_iter=2000, fit_intercept=True)
        self.model_.fit(design, y)
        logits = design @ self.model_.coef_[0]
        b = float(self.model_.intercept_[0])
        for _ in range(50):  # Newton on sum sigmoid(logits + b) = sum y; converges in a few steps
            p = 1.0 / (1.0 + np.exp(-(logits + b)))
            step = (p.sum() - y.sum()) / max(float((p * (1 - p)).sum()), 1e-12)
            b -= step
            if abs(step) < 1e-10:
                break
        self.intercept_ = b
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(..., n_slots): the predicted reward of each feature row in every slot."""
        x = (np.asarray(features, np.float64) - self.mean_) / self.scale_
        coef = self.model_.coef_[0]
        base = x @ coef[: x.shape[-1]]
        logits = base[..., None] + coef[x.shape[-1]:] + self.intercept_
        return 1.0 / (1.0 + np.exp(-logits))
