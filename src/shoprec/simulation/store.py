"""A semi-synthetic store calibrated on a real log, for comparing exploration policies.

The store (`SimulatedStore.build`) takes a real behaviour log and makes:

- true preferences: a factorisation fitted on the whole log (shoprec's ALS, or a truncated SVD);
  a shopper's click probability for item i is sigmoid(sharpness * standardised <u, v_i> + bias),
  with the bias set so that the mean, over shoppers, of their best item's click probability is
  `top_ctr` (the oracle's top-slot click rate);
- position bias: slot j is examined with probability 1 / log2(j + 2);
- interest drift: for `drift_fraction` of the shoppers, u moves linearly, over `drift_rounds`
  rounds, a share `drift_strength` of the way towards the taste of a dissimilar shopper;
- fatigue: each exposure (weighted by examination) multiplies the item's click probability for
  that shopper by `fatigue`, and the exposure memory decays by `fatigue_recovery` per round;
- new items: `new_item_fraction` of the items are held out of everything the policy learns from
  and arrive in batches every `new_item_every` rounds; the policy sees them only through their
  content (MiniLM title embeddings when `shoprec.text` is installed, else a noisy synthetic
  content vector), mapped to its item space by ridge regression;
- the policy's exploitation model: a factorisation of a random `model_data_fraction` of the log
  (new items excluded), so that its scores are good but not the truth.

`shoprec.simulation.run.simulate` runs policies in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import (
    ConfigError,
    EmptyDataError,
    MissingExtraError,
    check_choice,
    check_float,
    check_int,
)
from shoprec.explore.pools import INTEREST_METHODS, history_interests
from shoprec.explore.state import log_rank, normalise_rows, project

__all__ = ["SimulatedStore", "StoreConfig"]


@dataclass(frozen=True)
class StoreConfig:
    """How the store is made from a real log; see the module docstring for each mechanism."""

    n_shoppers: int = 300
    min_history: int = 5
    truth_model: str = "als"
    truth_factors: int = 32
    model_factors: int = 32
    model_data_fraction: float = 0.5
    feature_dim: int = 16
    content: str = "auto"
    content_noise: float = 1.0
    top_ctr: float = 0.05
    sharpness: float = 4.0
    purchase_rate: float = 0.25
    drift_fraction: float = 0.5
    drift_strength: float = 0.7
    drift_rounds: int = 100
    fatigue: float = 0.7
    fatigue_recovery: float = 0.8
    new_item_fraction: float = 0.1
    new_item_every: int = 10
    new_item_batches: int = 10
    trending_decay: float = 0.8
    max_interests: int = 3
    interests: str = "kmeans"

    def __post_init__(self) -> None:
        w = "StoreConfig"
        check_int("n_shoppers", self.n_shoppers, 1, 1_000_000, w)
        check_int("min_history", self.min_history, 1, 1_000_000, w)
        check_choice("truth_model", self.truth_model, ("als", "svd"), w)
        check_int("truth_factors", self.truth_factors, 2, 1024, w)
        check_int("model_factors", self.model_factors, 2, 1024, w)
        check_float("model_data_fraction", self.model_data_fraction, 0.01, 1.0, w)
        check_int("feature_dim", self.feature_dim, 1, min(self.model_factors, 1024), w)
        check_choice("content", self.content, ("auto", "text", "synthetic"), w)
        check_float("content_noise", self.content_noise, 0.0, 100.0, w)
        check_float("top_ctr", self.top_ctr, 1e-4, 0.9, w)
        check_float("sharpness", self.sharpness, 0.01, 20.0, w)
        check_float("purchase_rate", self.purchase_rate, 0.0, 1.0, w)
        check_float("drift_fraction", self.drift_fraction, 0.0, 1.0, w)
        check_float("drift_strength", self.drift_strength, 0.0, 1.0, w)
        check_int("drift_rounds", self.drift_rounds, 1, 1_000_000, w)
        check_float("fatigue", self.fatigue, 0.0, 1.0, w)
        check_float("fatigue_recovery", self.fatigue_recovery, 0.0, 1.0, w)
        check_float("new_item_fraction", self.new_item_fraction, 0.0, 0.9, w)
        check_int("new_item_every", self.new_item_every, 1, 1_000_000, w)
        check_int("new_item_batches", self.new_item_batches, 1, 1_000_000, w)
        check_float("trending_decay", self.trending_decay, 0.0, 1.0, w)
        check_int("max_interests", self.max_interests, 1, 100, w)
        check_choice("interests", self.interests, INTEREST_METHODS, w)


def _factorise(data: Dataset, kind: str, factors: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(user factors, item factors) of a dataset, deterministic for a seed."""
    if kind == "als":
        from shoprec.models.registry import make_model

        model = make_model("als", factors=factors, iterations=15, regularization=0.05, seed=seed)
        model.fit(data)
        return model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    from sklearn.utils.extmath import randomized_svd

    matrix = data.matrix(binary=True).astype(np.float64)
    k = min(factors, min(matrix.shape) - 1)
    u, s, vt = randomized_svd(matrix, k, random_state=seed)
    return u * np.sqrt(s), vt.T * np.sqrt(s)


def _content_vectors(data: Dataset, true_items: np.ndarray, config: StoreConfig, rng: np.random.Generator):
    """Content vectors of every item and where they came from ("text" or "synthetic")."""
    if config.content in ("auto", "text") and data.catalogue is not None:
        try:
            from shoprec.text.encoder import item_text_matrix

            return np.asarray(item_text_matrix(data.items.ids, data.catalogue), np.float64), "text"
        except (ImportError, MissingExtraError):
            if config.content == "text":
                raise
    elif config.content == "text":
        raise ConfigError("content='text' needs a dataset with a catalogue of titles.")
    # Synthetic content: a random linear view of the true item vector plus noise, so that content
    # predicts taste about as loosely as a product title does.
    proj = rng.standard_normal((true_items.shape[1], 64)) / np.sqrt(true_items.shape[1])
    base = true_items @ proj
    scale = base.std() if base.std() > 0 else 1.0
    return base + config.content_noise * scale * rng.standard_normal(base.shape), "synthetic"


@dataclass
class SimulatedStore:
    """The simulated shop: hidden truth plus what the policy is allowed to know."""

    config: StoreConfig
    shopper_ids: np.ndarray
    # hidden truth
    true_users: np.ndarray
    drift_target: np.ndarray
    drifting: np.ndarray
    true_items: np.ndarray
    centre: float
    spread: float
    bias: float
    arrival: np.ndarray  # round at which each item becomes available (0 = from the start)
    # what the policy knows
    exploit_scores: np.ndarray  # shoppers x items
    features: np.ndarray  # items x feature_dim, unit norm
    popularity: np.ndarray
    history_length: np.ndarray
    history_mean: np.ndarray
    interests: np.ndarray
    interest_valid: np.ndarray
    content_source: str
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    _static: np.ndarray | None = field(default=None, repr=False)
    _z: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_shoppers(self) -> int:
        return len(self.true_users)

    @property
    def n_items(self) -> int:
        return len(self.true_items)

    @property
    def exploit_z(self) -> np.ndarray:
        """The policy's score feature: -log(1 + rank) of each item in the shopper's model ranking
        over the whole catalogue (new items included through their content)."""
        if self._z is None:
            self._z = log_rank(self.exploit_scores, np.ones(self.exploit_scores.shape, bool))
        return self._z

    @property
    def new_items(self) -> np.ndarray:
        return np.flatnonzero(self.arrival > 0)

    @classmethod
    def build(cls, data: Dataset, config: StoreConfig | None = None, seed: int = 0) -> SimulatedStore:
        """Calibrate a store on a real dataset (same data, config and seed: same store)."""
        config = config or StoreConfig()
        rng = np.random.default_rng([seed, 0])
        lengths = np.diff(data.indptr)
        eligible = np.flatnonzero(lengths >= config.min_history)
        if len(eligible) == 0:
            raise EmptyDataError(f"No user of {data.name} has at least {config.min_history} events.")
        shoppers = np.sort(rng.choice(eligible, size=min(config.n_shoppers, len(eligible)), replace=False))

        users_f, items_f = _factorise(data, config.truth_model, config.truth_factors, seed)
        true_users, true_items = users_f[shoppers], items_f
        raw = true_users @ true_items.T
        # Scale: a shopper's best item sits `sharpness` logits above their median item, on average.
        median = np.median(raw, axis=1)
        centre = float(median.mean())
        spread = float(np.mean(raw.max(axis=1) - median)) or 1.0

        # New items: a random share of the items with some history, arriving in batches.
        pop_all = data.item_popularity()
        known_enough = np.flatnonzero(pop_all >= 5)
        n_new = round(config.new_item_fraction * len(known_enough))
        new = rng.choice(known_enough, size=n_new, replace=False) if n_new else np.zeros(0, np.int64)
        arrival = np.zeros(data.n_items, np.int64)
        arrival[new] = config.new_item_every * (1 + rng.permutation(n_new) % config.new_item_batches)

        logits0 = config.sharpness * (raw[:, arrival == 0] - centre) / spread
        best = logits0.max(axis=1)
        lo, hi = -50.0, 50.0
        for _ in range(100):  # bisection: mean best-item click probability = top_ctr
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(best + mid)))) < config.top_ctr else (lo, mid)
        bias = (lo + hi) / 2

        drifting = rng.random(len(shoppers)) < config.drift_fraction
        unit = normalise_rows(true_users)
        options = rng.integers(0, len(shoppers), size=(len(shoppers), 5))
        cos = np.einsum("nd,nkd->nk", unit, unit[options])
        target = true_users[options[np.arange(len(shoppers)), cos.argmin(axis=1)]]

        # The policy's model: a fraction of the events, without the new items.
        keep = (rng.random(len(data)) < config.model_data_fraction) & (arrival[data.item_idx] == 0)
        seen = data.subset(keep, f"{data.name}[policy]")
        p_users, p_items = _factorise(seen, config.truth_model, config.model_factors, seed + 1)
        content, source = _content_vectors(data, true_items, config, rng)
        known = (arrival == 0) & (seen.item_popularity() > 0)
        gram = content[known].T @ content[known]
        ridge = 1e-2 * np.trace(gram) / len(gram) + 1e-9
        mapping = np.linalg.solve(gram + ridge * np.eye(len(gram)), content[known].T @ p_items[known])
        p_items = p_items.copy()
        p_items[arrival > 0] = content[arrival > 0] @ mapping
        features, _, _ = project(p_items, config.feature_dim, fit_on=known)
        exploit_scores = p_users[shoppers] @ p_items.T

        hist = [seen.history(u) for u in shoppers]
        history_mean = np.stack([features[h].mean(axis=0) if len(h) else np.zeros(features.shape[1]) for h in hist])
        interests, interest_valid = history_interests(features, hist, config.max_interests,
                                                      method=config.interests, seed=seed)
        popularity = seen.item_popularity().astype(np.float64)
        store = cls(config, data.users.id_of(shoppers), true_users, target, drifting, true_items, centre, spread,
                    bias, arrival, exploit_scores, features, popularity,
                    np.array([len(h) for h in hist], np.float64), history_mean, interests, interest_valid, source)
        known_pop = popularity[arrival == 0]
        store.tail = (popularity <= np.quantile(known_pop, 0.8)) & (arrival == 0)
        return store

    def users_at(self, round_: int) -> np.ndarray:
        """True user vectors at a round: drifting shoppers turn towards their target's direction,
        keeping their own norm (how strongly they respond to anything)."""
        a = self.config.drift_strength * min(1.0, round_ / self.config.drift_rounds)
        norm = np.linalg.norm(self.true_users, axis=1, keepdims=True)
        mixed = (1 - a) * normalise_rows(self.true_users) + a * normalise_rows(self.drift_target)
        return np.where(self.drifting[:, None], normalise_rows(mixed) * norm, self.true_users)

    def logits(self, round_: int) -> np.ndarray:
        """(shoppers, items) click logits before fatigue (float32)."""
        scale = np.float32(self.config.sharpness / self.spread)
        if self._static is None:
            self._static = (self.true_users @ self.true_items.T - self.centre).astype(np.float32) * scale
        out = self._static.copy()
        if self.drifting.any() and round_ > 0:
            moved = self.users_at(round_)[self.drifting]
            out[self.drifting] = (moved @ self.true_items.T - self.centre).astype(np.float32) * scale
        return out + np.float32(self.bias)

    def click_probability(self, round_: int, exposure: np.ndarray | None = None) -> np.ndarray:
        """(shoppers, items): click probability at an examined slot, fatigue included; 0 for items
        not yet arrived."""
        p = 1.0 / (1.0 + np.exp(-self.logits(round_)))
        if exposure is not None and self.config.fatigue < 1.0:
            p = p * np.exp(exposure * np.log(max(self.config.fatigue, 1e-12)))
        return np.where(self.arrival[None, :] <= round_, p, 0.0)
