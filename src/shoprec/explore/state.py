"""What a policy learns online, as plain arrays: per-shopper posteriors and per-item statistics.

The reward model behind every policy in `shoprec.explore` is a logistic one with position bias:

    P(click on item a shown at a slot examined with probability e)
        = e * sigmoid(g(z_a) + beta_a + x_a . theta_u)

where
- z_a is a feature of the exploitation model's score of a (by default -log(1 + its rank)) and
  r_ua how much u has recently been shown a; g(z, r) = slope * z + intercept + repeat * r is a
  global calibrator (three numbers) that turns them into a click logit;
- beta_a is a global per-item logit offset (what every shopper's feedback says about item a
  beyond its model score; new items start at 0 with a wide prior);
- x_a is item a's embedding (unit norm, d ~ 16-64) and theta_u the shopper's linear correction.

Each part has a Gaussian posterior, updated online from every feedback event by the Laplace /
extended-Kalman step of Bayesian logistic regression (Chapelle & Li 2011): the precision grows
by the event's Fisher information w x x^T (Sherman-Morrison on the covariance) and the mean moves
by covariance x gradient. Before any feedback theta_u = 0 and beta_a = 0, so the ranking is the
exploitation model's. Every state is a dataclass of numpy arrays with `to_arrays` /
`from_arrays`, so the service can keep one shopper's state in a row of its store and update it on
every feedback event.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from shoprec.errors import ConfigError, DataError, check_float

__all__ = [
    "BanditConfig",
    "Calibrator",
    "ItemStats",
    "ShopperState",
    "ShopperStates",
    "logistic_step",
    "observe_jointly",
    "update_shopper",
]


@dataclass(frozen=True)
class BanditConfig:
    """How the posteriors learn. Standard deviations are in logits.

    prior_sd: prior sd of x . theta for a unit-norm x (how far a shopper may differ from the model).
    item_prior_sd: prior sd of a per-item offset beta_a.
    base_ctr: click probability of an average candidate (z = 0) before any feedback.
    calibrator_prior_sd: prior sd of the calibrator's slope (prior 1) and intercept.
    recent_rate, longterm_rate: per-positive-event rates of the fast and slow interest averages.
    payoff_decay: per-event decay of the explore/exploit payoff counters (1 = never forget).
    """

    prior_sd: float = 0.5
    item_prior_sd: float = 0.5
    base_ctr: float = 0.01
    calibrator_prior_sd: float = 1.0
    recent_rate: float = 0.3
    longterm_rate: float = 0.03
    payoff_decay: float = 0.995

    def __post_init__(self) -> None:
        where = "BanditConfig"
        for name in ("prior_sd", "item_prior_sd", "calibrator_prior_sd"):
            check_float(name, getattr(self, name), 1e-6, 100.0, where)
        check_float("base_ctr", self.base_ctr, 1e-6, 0.999, where)
        check_float("recent_rate", self.recent_rate, 0.0, 1.0, where)
        check_float("longterm_rate", self.longterm_rate, 0.0, 1.0, where)
        check_float("payoff_decay", self.payoff_decay, 0.0, 1.0, where)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def logistic_step(eta: np.ndarray, exam: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, Fisher information) of the log-likelihood of one event with respect to its logit.

    The event: reward (clicked or not, or a reward in [0, 1]) at a slot examined with probability
    exam, under P(click) = exam * sigmoid(eta).
    """
    s = sigmoid(eta)
    p = np.clip(exam * s, 1e-12, 1 - 1e-9)
    grad = (reward - p) * (1.0 - s) / (1.0 - p)
    info = np.maximum(exam * s * (1.0 - s) ** 2 / (1.0 - p), 1e-12)
    return grad, info


class _Arrays:
    """to_arrays / from_arrays for dataclasses whose fields are all numpy arrays."""

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as a dict of plain numeric arrays (np.savez-able, no pickle)."""
        return {f.name: np.array(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]):
        """Rebuild from `to_arrays` output; raises DataError naming missing keys."""
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise DataError(f"{cls.__name__}.from_arrays: missing arrays {missing}; expected {names}.")
        return cls(**{n: np.array(arrays[n], dtype=np.float64) for n in names})


@dataclass
class ShopperStates(_Arrays):
    """Posteriors of n shoppers over d-dimensional item embeddings (row i = shopper i).

    cov (n, d, d): posterior covariance of theta; theta (n, d): posterior mean.
    n_history (n,): events known before this session (offline history length).
    n_feedback (n,): feedback events observed online; n_positive (n,): those with a reward > 0.
    recent, longterm (n, d): fast and slow averages of the embeddings of items the shopper
        engaged with; their disagreement measures interest drift.
    payoff (n, 4): decayed [exploratory exposure, exploratory reward, exploit exposure, exploit
        reward], exposures weighted by the slot's examination probability.
    """

    cov: np.ndarray
    theta: np.ndarray
    n_history: np.ndarray
    n_feedback: np.ndarray
    n_positive: np.ndarray
    recent: np.ndarray
    longterm: np.ndarray
    payoff: np.ndarray

    @classmethod
    def new(
        cls,
        n: int,
        dim: int,
        config: BanditConfig | None = None,
        history_length: np.ndarray | None = None,
        history_mean: np.ndarray | None = None,
    ) -> ShopperStates:
        """Prior states: theta ~ N(0, prior_sd^2 I); interests start at the history's mean embedding."""
        config = config or BanditConfig()
        cov = np.broadcast_to(np.eye(dim) * config.prior_sd**2, (n, dim, dim)).copy()
        mean = np.zeros((n, dim)) if history_mean is None else np.asarray(history_mean, np.float64)
        if mean.shape != (n, dim):
            raise DataError(f"history_mean must have shape ({n}, {dim}). Got {mean.shape} instead.")
        hist = np.zeros(n) if history_length is None else np.asarray(history_length, np.float64)
        if hist.shape != (n,):
            raise DataError(f"history_length must have shape ({n},). Got {hist.shape} instead.")
        return cls(cov, np.zeros((n, dim)), hist.copy(), np.zeros(n), np.zeros(n), mean.copy(), mean.copy(),
                   np.zeros((n, 4)))

    def __len__(self) -> int:
        return len(self.theta)

    @property
    def dim(self) -> int:
        return self.theta.shape[1]

    def take(self, rows: np.ndarray | list[int]) -> ShopperStates:
        """A copy of the states of some shoppers (for example one, to store per shopper)."""
        rows = np.asarray(rows, dtype=np.int64)
        return ShopperStates(*(getattr(self, f.name)[rows].copy() for f in fields(self)))

    def put(self, rows: np.ndarray | list[int], other: ShopperStates) -> None:
        """Write `other` (as returned by `take`) back into rows."""
        rows = np.asarray(rows, dtype=np.int64)
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)

    def extend(self, n_new: int, config: BanditConfig | None = None) -> None:
        """Append prior states for n_new shoppers (new shoppers of the service)."""
        more = ShopperStates.new(n_new, self.dim, config)
        for f in fields(self):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), getattr(more, f.name)]))

    def observe(
        self,
        rows: np.ndarray,
        x: np.ndarray,
        offset: np.ndarray,
        exam: np.ndarray,
        reward: np.ndarray,
        explored: np.ndarray,
        config: BanditConfig,
    ) -> None:
        """Update shoppers `rows` with one event each, in order (rows may repeat).

        x (m, d): the shown items' embeddings; offset (m,): the rest of the event's logit
        (g + beta); exam (m,): examination probability of the slot; reward (m,): the observed
        reward in [0, 1]; explored (m,): whether the slot was exploratory.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        # Events of the same shopper must be applied one after another; group them by how many
        # earlier events of the same shopper precede them, and apply each group at once.
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        start = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
        occurrence = np.empty(len(rows), np.int64)
        occurrence[order] = np.arange(len(rows)) - np.repeat(start, np.diff(np.r_[start, len(rows)]))
        for k in range(int(occurrence.max()) + 1):
            sel = np.flatnonzero(occurrence == k)
            r, xs = rows[sel], x[sel]
            eta = offset[sel] + np.einsum("nd,nd->n", xs, self.theta[r])
            grad, info = logistic_step(eta, exam[sel], reward[sel])
            u = xs * np.sqrt(info)[:, None]
            cu = np.einsum("nij,nj->ni", self.cov[r], u)
            denom = 1.0 + np.einsum("ni,ni->n", u, cu)
            self.cov[r] -= cu[:, :, None] * cu[:, None, :] / denom[:, None, None]
            self.theta[r] += np.einsum("nij,nj->ni", self.cov[r], xs) * grad[:, None]
            self.n_feedback[r] += 1
            pos = reward[sel] > 0
            if pos.any():
                rp, xp = r[pos], xs[pos]
                self.n_positive[rp] += 1
                self.recent[rp] += config.recent_rate * (xp - self.recent[rp])
                self.longterm[rp] += config.longterm_rate * (xp - self.longterm[rp])
            self.payoff[r] *= config.payoff_decay
            e = explored[sel].astype(bool)
            self.payoff[r[e], 0] += exam[sel][e]
            self.payoff[r[e], 1] += reward[sel][e]
            self.payoff[r[~e], 2] += exam[sel][~e]
            self.payoff[r[~e], 3] += reward[sel][~e]


def observe_jointly(states: ShopperStates, row: int, x: np.ndarray, offset: np.ndarray, exam: np.ndarray,
                    reward: np.ndarray, explored: np.ndarray, config: BanditConfig) -> None:
    """Update one shopper with several events at once: one Laplace step from the current mean
    (precision += sum of the events' Fisher information x x^T, mean += cov * sum of gradient x),
    the batch form of `ShopperStates.observe`'s event-by-event updates, at the cost of one d x d
    solve; the counters and interest averages advance as they would one event at a time."""
    theta, cov = states.theta[row], states.cov[row]
    eta = offset + x @ theta
    grad, info = logistic_step(eta, exam, reward)
    precision = np.linalg.inv(cov) + (x * info[:, None]).T @ x
    new_cov = np.linalg.inv(precision)
    states.cov[row] = (new_cov + new_cov.T) / 2
    states.theta[row] = theta + new_cov @ (x.T @ grad)
    states.n_feedback[row] += len(x)
    for xp in x[reward > 0]:
        states.n_positive[row] += 1
        states.recent[row] += config.recent_rate * (xp - states.recent[row])
        states.longterm[row] += config.longterm_rate * (xp - states.longterm[row])
    for e, ex, r in zip(explored.astype(bool), exam, reward):
        states.payoff[row] *= config.payoff_decay
        states.payoff[row, 0 if e else 2] += ex
        states.payoff[row, 1 if e else 3] += r


@dataclass
class ShopperState(_Arrays):
    """One shopper's state (the service keeps one per shopper): the fields of ShopperStates, unbatched."""

    cov: np.ndarray
    theta: np.ndarray
    n_history: np.ndarray
    n_feedback: np.ndarray
    n_positive: np.ndarray
    recent: np.ndarray
    longterm: np.ndarray
    payoff: np.ndarray

    @classmethod
    def new(cls, dim: int, config: BanditConfig | None = None, history_length: int = 0,
            history_mean: np.ndarray | None = None) -> ShopperState:
        """The prior state of a shopper with `history_length` past events."""
        mean = None if history_mean is None else np.asarray(history_mean, np.float64)[None]
        return cls.from_batch(ShopperStates.new(1, dim, config, np.array([float(history_length)]), mean))

    @classmethod
    def from_batch(cls, states: ShopperStates, row: int = 0) -> ShopperState:
        return cls(*(np.array(getattr(states, f.name)[row]) for f in fields(ShopperStates)))

    def as_batch(self) -> ShopperStates:
        return ShopperStates(*(np.array(getattr(self, f.name))[None].copy() for f in fields(self)))


def update_shopper(
    state: ShopperState,
    item_embedding: np.ndarray,
    reward: float,
    config: BanditConfig | None = None,
    exam: float = 1.0,
    offset: float = 0.0,
    explored: bool = False,
) -> ShopperState:
    """A new state after one feedback event on one shown item (a pure function: `state` is kept).

    reward: 1 for a click, cart or purchase, 0 for a skip (values in between are allowed).
    offset: the global part of the event's logit, g(z) + beta (what `Policy` computes);
    exam: examination probability of the slot the item was shown in.
    """
    config = config or BanditConfig()
    x = np.asarray(item_embedding, dtype=np.float64).reshape(1, -1)
    if x.shape[1] != state.theta.shape[0]:
        raise DataError(f"item_embedding must have {state.theta.shape[0]} values. Got {x.shape[1]} instead.")
    if not np.isfinite(reward) or not 0.0 <= reward <= 1.0:
        raise DataError(f"reward must be a number in [0, 1]. Got {reward!r} instead.")
    batch = state.as_batch()
    batch.observe(np.zeros(1, np.int64), x, np.array([offset], float), np.array([exam], float),
                  np.array([reward], float), np.array([explored]), config)
    return ShopperState.from_batch(batch)


@dataclass
class ItemStats(_Arrays):
    """Global per-item statistics shared by every shopper.

    mean, precision: Gaussian posterior of each item's logit offset beta; impressions, rewards:
    examination-weighted impressions and rewards (for reporting).
    """

    mean: np.ndarray
    precision: np.ndarray
    impressions: np.ndarray
    rewards: np.ndarray

    @classmethod
    def new(cls, n_items: int, config: BanditConfig | None = None) -> ItemStats:
        config = config or BanditConfig()
        return cls(np.zeros(n_items), np.full(n_items, 1.0 / config.item_prior_sd**2),
                   np.zeros(n_items), np.zeros(n_items))

    def __len__(self) -> int:
        return len(self.mean)

    def extend(self, n_new: int, config: BanditConfig | None = None) -> None:
        more = ItemStats.new(n_new, config)
        for f in fields(self):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), getattr(more, f.name)]))

    def var(self, items: np.ndarray) -> np.ndarray:
        return 1.0 / self.precision[items]

    def observe(self, items: np.ndarray, offset: np.ndarray, exam: np.ndarray, reward: np.ndarray) -> None:
        """Add a batch of events (one Newton step per item): offset is the logit without beta."""
        grad, info = logistic_step(offset + self.mean[items], exam, reward)
        g = np.bincount(items, grad, minlength=len(self.mean))
        np.add.at(self.precision, items, info)
        touched = np.unique(items)
        self.mean[touched] += g[touched] / self.precision[touched]
        np.add.at(self.impressions, items, exam)
        np.add.at(self.rewards, items, reward)


@dataclass
class Calibrator(_Arrays):
    """g(z, r) = slope * z + intercept + repeat * r: the click logit of a model score z (for
    example minus the log of the item's rank) and of r, how much the shopper has already been
    shown the item recently (decayed, examination-weighted impressions; fatigue).

    It is the maximum a posteriori fit of P(click) = exam * sigmoid(g + offset) on the last
    `capacity` events (a ring buffer), under a Gaussian prior at slope 1, intercept
    logit(base_ctr), repeat 0; refitted by damped Newton steps after each batch of events. The
    slope is kept positive so that the model's ranking is never turned upside down.
    """

    coef: np.ndarray  # [slope, intercept, repeat]
    prior: np.ndarray  # [slope, intercept, repeat, sd]
    events: np.ndarray  # (capacity, 5): z, repeat, offset, exam, reward
    cursor: np.ndarray  # [next row to write, rows filled]

    @classmethod
    def new(cls, config: BanditConfig | None = None, capacity: int = 20_000) -> Calibrator:
        config = config or BanditConfig()
        b = float(np.log(config.base_ctr / (1 - config.base_ctr)))
        return cls(np.array([1.0, b, 0.0]), np.array([1.0, b, 0.0, config.calibrator_prior_sd]),
                   np.zeros((capacity, 5)), np.zeros(2))

    def coefficients(self) -> tuple[float, float, float]:
        return max(float(self.coef[0]), 0.05), float(self.coef[1]), float(self.coef[2])

    def predict(self, z: np.ndarray, repeat: np.ndarray | float = 0.0) -> np.ndarray:
        slope, intercept, rep = self.coefficients()
        return slope * z + intercept + rep * repeat

    def observe(self, z: np.ndarray, repeat: np.ndarray, offset: np.ndarray, exam: np.ndarray,
                reward: np.ndarray, refit: bool = True) -> None:
        """Add events and (unless refit=False: callers that add events one by one refit every
        so often) refit. offset: the rest of each event's logit (beta + x . theta)."""
        rows = np.stack([z, np.broadcast_to(repeat, np.shape(z)), offset, exam, reward], axis=1)[-len(self.events):]
        cap = len(self.events)
        at = int(self.cursor[0])
        idx = (at + np.arange(len(rows))) % cap
        self.events[idx] = rows
        self.cursor[:] = [(at + len(rows)) % cap, min(cap, self.cursor[1] + len(rows))]
        if refit:
            self._refit()

    def _refit(self, iterations: int = 10) -> None:
        data = self.events[: int(self.cursor[1])]
        z, rep, off, exam, y = data.T
        f = np.stack([z, np.ones_like(z), rep], axis=1)
        mu, sd = self.prior[:3], self.prior[3]

        def objective(w: np.ndarray) -> float:
            p = np.clip(exam * sigmoid(f @ w + off), 1e-12, 1 - 1e-12)
            return float((y * np.log(p) + (1 - y) * np.log(1 - p)).sum() - ((w - mu) ** 2).sum() / (2 * sd**2))

        coef = self.coef.copy()
        current = objective(coef)
        for _ in range(iterations):
            grad_eta, info = logistic_step(f @ coef + off, exam, y)
            grad = f.T @ grad_eta - (coef - mu) / sd**2
            step = np.linalg.solve((f * info[:, None]).T @ f + np.eye(3) / sd**2, grad)
            t = 1.0
            while t > 1e-3:  # backtracking: the step must not lower the posterior
                value = objective(coef + t * step)
                if value >= current:
                    break
                t /= 2
            if t <= 1e-3:
                break
            coef, gain, current = coef + t * step, value - current, value
            if gain < 1e-8:
                break
        self.coef = coef


def log_rank(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """-log(1 + rank) of each valid entry within its row (rank 0 = best; ties by column); 0 where
    invalid. A scale-free score feature: click rates often fall as a power of the rank."""
    keyed = np.where(valid, np.asarray(scores, np.float64), -np.inf)
    order = np.argsort(-keyed, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(keyed.shape[1])[None, :].repeat(len(keyed), 0), axis=1)
    return np.where(valid, -np.log1p(rank), 0.0)


def check_features(features: np.ndarray, name: str = "item_features") -> np.ndarray:
    """A finite 2-d float array, or a DataError naming the problem."""
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"{name} must be a 2-d array (items x dimensions). Got shape {arr.shape} instead.")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} has {int((~np.isfinite(arr)).sum())} NaN or infinite values.")
    return arr


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x, dtype=np.float64), where=norm > 0)


def project(embeddings: np.ndarray, dim: int, fit_on: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reduce embeddings to `dim` principal components and unit norm.

    Returns (projected, mean, components); apply to new items with
    normalise_rows((e - mean) @ components.T). fit_on: boolean mask of the rows to fit on.
    """
    emb = check_features(embeddings, "embeddings")
    if not 1 <= dim <= emb.shape[1]:
        raise ConfigError(f"The 'dim' parameter of project must be an int in [1, {emb.shape[1]}]. Got {dim} instead.")
    base = emb if fit_on is None else emb[fit_on]
    mean = base.mean(axis=0)
    _, _, vt = np.linalg.svd(base - mean, full_matrices=False)
    comps = vt[:dim]
    # Fix the sign of each component so the projection is the same on every machine.
    signs = np.sign(comps[np.arange(dim), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    return normalise_rows((emb - mean) @ comps.T), mean, comps
