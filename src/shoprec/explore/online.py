"""Exploration for one request at a time, with each shopper's state kept outside (in a database).

The simulator holds a whole population of shoppers in one `Policy`; a service sees one shopper
per request and keeps every shopper's posterior in its store. `OnlineExplorer` is that seam:

- `prior_state(history)` is a new shopper's state (their history's length and mean embedding);
- `choose(state, history, scores, allowed, k, rng)` builds the candidate pools (exploit top-N of
  the model's scores, long-tail items near each interest of the history, new items near them
  through their text embedding, trending items) and draws the slate with the policy, its
  exploration weight and the weight's signals, and exact or Monte-Carlo propensities;
- `learn(state, item, slot, reward, explored, z)` returns the shopper's next state (a pure
  function of the state and the event, so the service can store it in the transaction that
  stores the event) and updates the shared item and calibration statistics in memory;
- `learn_shared(...)` replays logged feedback into the shared statistics (a restart rebuilds
  them from the stored impressions and events).

Item embeddings are the served model's item vectors projected to `feature_dim` principal
components; the projection (`space`) is kept when the model is fine-tuned, so stored shopper
states stay meaningful across retrains, and a state from another space is reset to its prior.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from shoprec.errors import DataError, check_choice, check_float, check_int
from shoprec.explore.config import PolicyConfig
from shoprec.explore.policies import Policy
from shoprec.explore.pools import (
    Candidates,
    PoolConfig,
    history_interests,
    long_tail,
    merge_pools,
    top_n,
    trending_pool,
)
from shoprec.explore.slate import Slate, SlateConfig
from shoprec.explore.state import ShopperState, normalise_rows, project
from shoprec.explore.weighting import FITTED_WEIGHTS, WeightConfig

__all__ = ["WEIGHT_RULES", "OnlineConfig", "OnlineExplorer", "Space"]

WEIGHT_RULES = ("dynamic", "fixed", "learned", "fitted")
"""How the served exploration weight is set: "dynamic" (the per-shopper rule of
`shoprec.explore.weighting`, hand-set coefficients), "fixed" (epsilon-greedy at `epsilon`),
"learned" (epsilon-greedy in LinUCB order at the level a bandit over the shopper's signals picks,
`shoprec.explore.learned`; exact propensities; `OnlineExplorer.learn_weight` feeds it) or
"fitted" (epsilon-greedy with uniformly drawn exploration slots at the per-shopper weight of the
rule's formula with `weighting`'s coefficients, by default those fitted on the Online Retail
store, `shoprec.explore.weighting.FITTED_WEIGHTS`; exact propensities)."""


@dataclass(frozen=True)
class OnlineConfig:
    """The service's exploration.

    weight_rule: "dynamic", "fixed", "learned" or "fitted" (see WEIGHT_RULES). explorer: what the
    dynamic rule's exploration slots follow, "thompson" (Monte-Carlo propensities) or "linucb"
    (exact). weighting: the fitted rule's coefficients and signal settings.
    epsilon: the fixed rule's exploration probability per budget slot. explore_budget: most
    exploratory slots per slate. feature_dim: dimensions of the item embeddings the shopper
    posteriors live in. trending_decay: per-feedback decay of the trending counts.
    propensity_samples: Monte-Carlo draws behind randomised propensities.
    """

    weight_rule: str = "dynamic"
    explorer: str = "thompson"
    epsilon: float = 0.1
    explore_budget: int = 3
    feature_dim: int = 16
    trending_decay: float = 0.999
    propensity_samples: int = 100
    pools: PoolConfig = field(default_factory=PoolConfig)
    weighting: WeightConfig = FITTED_WEIGHTS

    def __post_init__(self) -> None:
        where = "OnlineConfig"
        check_choice("weight_rule", self.weight_rule, WEIGHT_RULES, where)
        check_choice("explorer", self.explorer, ("thompson", "linucb"), where)
        check_float("epsilon", self.epsilon, 0.0, 1.0, where)
        check_int("explore_budget", self.explore_budget, 0, 100, where)
        check_int("feature_dim", self.feature_dim, 1, 1024, where)
        check_float("trending_decay", self.trending_decay, 0.0, 1.0, where)
        check_int("propensity_samples", self.propensity_samples, 1, 100_000, where)

    def policy_config(self, k: int) -> PolicyConfig:
        """The policy for slates of k items (slots before the third are never exploratory)."""
        first = min(2, k - 1)
        slate = SlateConfig(k=k, explore_budget=min(self.explore_budget, k - first), first_explore_slot=first,
                            propensity_samples=self.propensity_samples)
        if self.weight_rule == "fixed":
            return PolicyConfig(kind="egreedy", epsilon=self.epsilon, slate=slate, label=f"egreedy:{self.epsilon:g}")
        if self.weight_rule == "learned":
            return PolicyConfig(kind="learned", explore_order="ucb", slate=slate, label="learned")
        if self.weight_rule == "fitted":
            return PolicyConfig(kind="dynamic", explorer="egreedy", explore_order="uniform", weighting=self.weighting,
                                slate=slate, label="fitted")
        return PolicyConfig(kind="dynamic", explorer=self.explorer, slate=slate, label=f"dynamic-{self.explorer}")

    @property
    def name(self) -> str:
        return self.policy_config(10).name


@dataclass(frozen=True)
class Space:
    """The projection of model item vectors to the policy's features: (x - mean) @ components.T."""

    mean: np.ndarray
    components: np.ndarray

    @cached_property
    def id(self) -> str:
        """A short digest: states stored under another space are reset to their prior."""
        digest = hashlib.sha256(np.ascontiguousarray(self.components, np.float32).tobytes()).hexdigest()
        return digest[:12]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return normalise_rows((np.asarray(vectors, np.float64) - self.mean) @ self.components.T)


class OnlineExplorer:
    """One request's slate with the shopper's state passed in; see the module docstring.

    item_vectors (I, d): the served model's item vectors (zero rows: items it cannot place);
    popularity (I,): training interactions per item (0 marks a new item); space: keep an earlier
    projection (a fine-tuned model), else one is fitted on the known items' vectors.
    """

    def __init__(self, config: OnlineConfig, item_vectors: np.ndarray, popularity: np.ndarray,
                 space: Space | None = None) -> None:
        vectors = np.asarray(item_vectors, np.float64)
        popularity = np.asarray(popularity, np.float64)
        if vectors.ndim != 2 or len(vectors) != len(popularity) or len(vectors) == 0:
            raise DataError(
                f"item_vectors ({vectors.shape}) and popularity ({popularity.shape}) must describe the same "
                "non-empty catalogue."
            )
        self.config = config
        known = (popularity > 0) & (np.abs(vectors).sum(axis=1) > 0)
        if space is None or space.components.shape[1] != vectors.shape[1]:
            dim = min(config.feature_dim, vectors.shape[1], max(int(known.sum()) - 1, 1))
            _, mean, comps = project(vectors, dim, fit_on=known if known.sum() > dim else None)
            space = Space(mean, comps)
        self.space = space
        self.features = space.apply(vectors)
        self.popularity = popularity
        self.tail = long_tail(popularity, config.pools.tail_quantile, known)
        self.new_items = np.flatnonzero((popularity <= 0) & (np.abs(self.features).sum(axis=1) > 0))
        # The pools search these rows on every request: keep them contiguous, in float32.
        self._tail_features = np.ascontiguousarray(self.features[self.tail], np.float32)
        self._new_features = np.ascontiguousarray(self.features[self.new_items], np.float32)
        self.trending = np.zeros(len(vectors))
        self._policies: dict[int, Policy] = {}
        self._base = Policy(config.policy_config(_MAX_SLOTS), self.features, 0)
        self._lock = threading.Lock()
        self._pending = 0  # events the calibrator has buffered since its last refit

    # ---- state -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.features.shape[1]

    @property
    def name(self) -> str:
        return self.config.name

    def prior_state(self, history: np.ndarray) -> ShopperState:
        """A shopper's state before any feedback: their history's length and mean embedding."""
        history = np.asarray(history, np.int64)
        mean = self.features[history].mean(axis=0) if len(history) else np.zeros(self.dim)
        return ShopperState.new(self.dim, self._base.config.bandit, len(history), mean)

    def _policy(self, k: int) -> Policy:
        """The policy for slates of k, sharing the learned item and calibration statistics."""
        policy = self._policies.get(k)
        if policy is None:
            policy = Policy(self.config.policy_config(k), self._base.features, 0)
            policy.items, policy.calibrator = self._base.items, self._base.calibrator
            policy.payoff_total = self._base.payoff_total  # one array, updated in place
            policy.levels = self._base.levels  # one level bandit for every slate size
            self._policies[k] = policy
        return policy

    # ---- choosing --------------------------------------------------------------------------
    def candidates(self, history: np.ndarray, scores: np.ndarray, allowed: np.ndarray) -> Candidates:
        """The four pools for one request (items not `allowed` never appear)."""
        pools = self.config.pools
        history = np.asarray(history, np.int64)
        interests, valid = history_interests(self.features, [history], max_interests=3)
        if not len(history):
            valid[:] = False
        centres = interests[0][valid[0]].astype(np.float32)
        # Long-tail items nearest each interest, and new items nearest any: the pools of
        # `shoprec.explore.pools`, over the precomputed rows, disallowed items masked.
        best_tail = (top_n(centres @ self._tail_features.T, pools.n_per_interest, allowed[self.tail])
                     if len(centres) else np.zeros((0, 0), np.int64))
        long_items = np.where(best_tail >= 0, self.tail[np.maximum(best_tail, 0)], -1).reshape(1, -1)
        long_idx = np.where(best_tail >= 0, np.arange(len(centres), dtype=np.int16)[:, None], -1).reshape(1, -1)
        new_sims = centres @ self._new_features.T if len(centres) else np.zeros((0, len(self.new_items)))
        new_best = np.where(allowed[self.new_items], new_sims.max(axis=0), -np.inf) if len(centres) else None
        new = (top_n(new_best[None], pools.n_new)[0] if new_best is not None and len(self.new_items)
               else np.zeros(0, np.int64))
        new = np.where(new >= 0, self.new_items[np.maximum(new, 0)], -1)[None]
        return merge_pools(
            top_n(scores[None], pools.n_exploit, allowed), long_items, long_idx.astype(np.int16), new,
            trending_pool(self.trending, pools.n_trending, allowed, 1),
        )

    def choose(self, state: ShopperState, history: np.ndarray, scores: np.ndarray, allowed: np.ndarray,
               k: int, rng: np.random.Generator, override: float | None = None) -> tuple[Slate, np.ndarray]:
        """A slate of up to k items for one shopper, and the score feature z of each shown item
        (what `learn` needs back with the feedback). scores (I,): the model's scores; allowed
        (I,): items that may be shown (in the catalogue, active, filtered, not in the history)."""
        k = check_int("k", k, 1, 1000, "OnlineExplorer.choose")
        scores = np.asarray(scores, np.float64)
        if scores.shape != (len(self.features),) or np.shape(allowed) != scores.shape:
            raise DataError(f"scores and allowed must have one entry per item ({len(self.features)}).")
        cand = self.candidates(history, scores, np.asarray(allowed, bool))
        cand_scores = np.where(cand.valid, scores[np.maximum(cand.items, 0)], -np.inf)
        if not cand.valid.any():
            return Slate(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, bool), [], 0.0, {},
                         self.name, np.zeros(0, np.int64)), np.zeros(0)
        k = min(k, int(cand.valid.sum()))
        with self._lock:
            batch = self._policy(k).recommend(np.zeros(1, np.int64), cand, cand_scores, rng,
                                              override=override, states=state.as_batch())
        slate = batch.slate(0)
        keep = batch.items[0] >= 0
        return replace(slate, policy=self.name), batch.model_z[0][keep]

    # ---- learning --------------------------------------------------------------------------
    def learn(self, state: ShopperState, item: int, slot: int, reward: float, explored: bool,
              z: float) -> ShopperState:
        """The shopper's state after feedback on one shown item (reward 1: a click, cart or
        purchase on it; 0: shown and skipped); the shared statistics learn from it too."""
        return self.learn_many(state, [item], [slot], [reward], [explored], [z])

    def learn_many(self, state: ShopperState, items, slots, rewards, explored, z) -> ShopperState:
        """`learn` for several shown items of one shopper at once: one joint Laplace step for the
        shopper (`observe_jointly`), the shared calibrator refitting once every
        `CALIBRATOR_REFIT_EVERY` events."""
        items = np.asarray(items, np.int64)
        if len(items) and (items.min() < 0 or items.max() >= len(self.features)):
            raise DataError(f"Item indices must be inside the explorer's {len(self.features)} items.")
        if not len(items):
            return state
        rewards = np.asarray(rewards, np.float64)
        batch = state.as_batch()
        with self._lock:
            self._pending += len(items)
            refit = self._pending >= CALIBRATOR_REFIT_EVERY
            if refit:
                self._pending = 0
            self._base.observe(np.zeros(len(items), np.int64), items, np.asarray(slots, np.int64), rewards,
                               np.asarray(explored, bool), np.asarray(z, np.float64), states=batch,
                               refit_calibrator=refit, jointly=len(items) > 1)
            for item in items[rewards > 0]:
                self.trending *= self.config.trending_decay
                self.trending[item] += 1.0
        return ShopperState.from_batch(batch)

    def learn_weight(self, signals: dict[str, float], reward: float) -> None:
        """Teach the learned weight rule one slate's outcome: the slate's `weight_signals` (with
        the level it used) and its reward (the sum of its items' rewards, skips 0). A no-op for
        the other rules."""
        if self._base.levels is None or "level" not in signals:
            return
        arrays = {key: np.array([float(v)]) for key, v in signals.items()}
        with self._lock:
            self._base.levels.update(arrays, np.array([float(reward)]))

    def learn_shared(self, items: np.ndarray, slots: np.ndarray, rewards: np.ndarray, z: np.ndarray) -> None:
        """Replay logged feedback into the shared item and calibration statistics (and the
        trending counts), without any shopper's state: what a restart rebuilds from the log."""
        items = np.asarray(items, np.int64)
        if not len(items):
            return
        policy = self._base
        exam = policy.exam[np.minimum(np.asarray(slots, np.int64), len(policy.exam) - 1)]
        r = np.asarray(rewards, np.float64)
        z = np.asarray(z, np.float64)
        with self._lock:
            g = policy.calibrator.predict(z, np.zeros_like(z))
            policy.calibrator.observe(z, np.zeros_like(z), policy.items.mean[items], exam, r)
            policy.items.observe(items, g, exam, r)
            # As `learn` does click by click: decay, then count the click.
            clicked = items[r > 0]
            decay = self.config.trending_decay
            self.trending = self.trending * decay ** len(clicked)
            np.add.at(self.trending, clicked, decay ** np.arange(len(clicked) - 1, -1, -1.0))

    def shared_arrays(self) -> dict[str, np.ndarray]:
        """The shared statistics (item posteriors, calibrator, payoff total, trending) as arrays."""
        out = {f"items/{k}": v for k, v in self._base.items.to_arrays().items()}
        out.update({f"calibrator/{k}": v for k, v in self._base.calibrator.to_arrays().items()})
        out.update(payoff_total=self._base.payoff_total.copy(), trending=self.trending.copy())
        if self._base.levels is not None:
            out.update({f"levels/{k}": v.copy() for k, v in self._base.levels.to_arrays().items()})
        return out

    def state_in_space(self, state: ShopperState | None, space_id: str | None, history: np.ndarray) -> ShopperState:
        """`state` if it was stored under this explorer's space; else the prior of `history`
        that keeps the stored state's counters (feedback seen, payoff), since those do not
        depend on the embedding."""
        if state is None:
            return self.prior_state(history)
        if space_id == self.space.id and state.theta.shape == (self.dim,):
            return state
        fresh = self.prior_state(history)
        fresh.n_feedback[...] = state.n_feedback
        fresh.n_positive[...] = state.n_positive
        fresh.payoff[...] = state.payoff
        return fresh


def pack_state(state: ShopperState) -> bytes:
    """A shopper state as bytes for a database column (float64, fixed layout for its dimension)."""
    return np.concatenate([np.ravel(getattr(state, name)) for name in _FIELDS]).astype("<f8").tobytes()


def unpack_state(blob: bytes, dim: int) -> ShopperState:
    """The inverse of `pack_state` for states of dimension `dim`; DataError when it does not fit."""
    flat = np.frombuffer(blob, dtype="<f8")
    sizes = [_size(name, dim) for name in _FIELDS]
    if len(flat) != sum(sizes):
        raise DataError(f"A stored shopper state has {len(flat)} values; a {dim}-d state has {sum(sizes)}.")
    parts = np.split(flat.copy(), np.cumsum(sizes)[:-1])
    shapes = {"cov": (dim, dim), "theta": (dim,), "recent": (dim,), "longterm": (dim,), "payoff": (4,)}
    return ShopperState(**{n: p.reshape(shapes.get(n, ())) for n, p in zip(_FIELDS, parts)})


CALIBRATOR_REFIT_EVERY = 500  # events between refits of the shared calibrator (3 numbers, slow to move)
_MAX_SLOTS = 100  # the shared policy's slate size: its examination curve covers any served slot

_FIELDS = ("cov", "theta", "n_history", "n_feedback", "n_positive", "recent", "longterm", "payoff")


def _size(name: str, dim: int) -> int:
    return {"cov": dim * dim, "theta": dim, "recent": dim, "longterm": dim, "payoff": 4}.get(name, 1)


__all__ += ["pack_state", "unpack_state"]
