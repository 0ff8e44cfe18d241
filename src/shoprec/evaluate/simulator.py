"""A semi-synthetic store calibrated on a real log, for comparing exploration policies.

The store (`Store.build`) takes a real behaviour log and makes:

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

`simulate` runs a policy for some rounds (every shopper gets a slate each round), draws clicks
and purchases with common random numbers (the same uniforms for every policy with one seed), and
returns per-round metrics and, optionally, an impression log with propensities for off-policy
evaluation. Same seed, same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

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
from shoprec.explore.policies import Policy, PolicyConfig, examination
from shoprec.explore.pools import (
    Candidates,
    PoolConfig,
    history_interests,
    interest_pool,
    long_tail,
    merge_pools,
    new_item_pool,
    top_n,
    trending_pool,
)
from shoprec.explore.state import log_rank, normalise_rows, project

__all__ = [
    "Experiment", "ImpressionLog", "SimulationResult", "Store", "StoreConfig", "fresh_policy", "run_experiment",
    "simulate",
]


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
class Store:
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
    def build(cls, data: Dataset, config: StoreConfig | None = None, seed: int = 0) -> Store:
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
        interests, interest_valid = history_interests(features, hist, config.max_interests)
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


@dataclass
class ImpressionLog:
    """Every request of a run: the candidates and what was shown, for off-policy evaluation.

    Arrays have one row per request (n_rounds x n_shoppers): round, shopper; candidates (C
    columns, -1 empty) with their model scores and true click probabilities at an examined slot
    (q_true); the shown columns (k), their propensities and rewards (clicks); repeat: the
    candidates' recent exposure to the shopper, which the policies see.
    """

    round: np.ndarray
    shopper: np.ndarray
    candidates: Candidates
    scores: np.ndarray
    repeat: np.ndarray
    q_true: np.ndarray
    columns: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    exam: np.ndarray

    def __len__(self) -> int:
        return len(self.round)


@dataclass
class SimulationResult:
    """Per-round series (length n_rounds) and run totals of one policy in one store."""

    policy: str
    clicks: np.ndarray
    purchases: np.ndarray
    expected: np.ndarray
    oracle: np.ndarray
    explore_share: np.ndarray
    new_share: np.ndarray
    tail_share: np.ndarray
    diversity: np.ndarray
    coverage: float
    new_item_coverage: float
    n_shoppers: int
    seconds: float
    log: ImpressionLog | None = None
    learned: Policy | None = field(default=None, repr=False)  # the policy at the end of the run

    def summary(self) -> dict[str, float]:
        """Totals per shopper and shares over the run. reward: clicks; expected_reward: the sum of
        the click probabilities of what was shown (the same quantity without the coin flips);
        regret: the oracle's expected clicks minus the policy's, round by round."""
        n = self.n_shoppers
        early = max(1, len(self.clicks) // 10)
        return {
            "reward": float(self.clicks.sum() / n),
            "expected_reward": float(self.expected.sum() / n),
            "purchases": float(self.purchases.sum() / n),
            "regret": float((self.oracle - self.expected).sum() / n),
            "early_reward": float(self.expected[:early].sum() / n),
            "early_regret": float((self.oracle - self.expected)[:early].sum() / n),
            "coverage": self.coverage,
            "new_item_exposure": float(self.new_share.mean()),
            "new_item_coverage": self.new_item_coverage,
            "tail_exposure": float(self.tail_share.mean()),
            "diversity": float(self.diversity.mean()),
            "explore_share": float(self.explore_share.mean()),
        }


def simulate(
    store: Store,
    policy: PolicyConfig | Policy,
    rounds: int,
    seed: int = 0,
    pools: PoolConfig | None = None,
    record_log: bool = False,
    propensities: bool | None = None,
) -> SimulationResult:
    """Run one policy for `rounds` rounds; every shopper gets one slate per round.

    record_log keeps the impression log (with propensities); propensities (default: record_log)
    computes Monte-Carlo propensities of randomised policies, the costly part.
    """
    rounds = check_int("rounds", rounds, 1, 1_000_000, "simulate")
    from threadpoolctl import threadpool_limits

    # Many small matrix products: one BLAS thread is faster, and fair to a shared machine.
    with threadpool_limits(limits=1, user_api="blas"):
        return _simulate(store, policy, rounds, seed, pools or PoolConfig(), record_log, propensities)


def _simulate(store, policy, rounds, seed, pools, record_log, propensities) -> SimulationResult:
    t0 = time.perf_counter()
    pol = fresh_policy(store, policy) if isinstance(policy, PolicyConfig) else policy
    k = pol.config.slate.k
    exam = examination(k)
    responses = np.random.default_rng([seed, 1])
    rng = np.random.default_rng([seed, 2])
    n, n_items = store.n_shoppers, store.n_items
    rows = np.arange(n)
    exposure = np.zeros((n, n_items), np.float32)
    trending = np.zeros(n_items)
    shown_ever = np.zeros(n_items, bool)
    true_unit = normalise_rows(store.true_items)
    series = {key: np.zeros(rounds) for key in ("clicks", "purchases", "expected", "oracle", "explore", "new", "tail", "div")}
    log_parts: list[tuple] = []
    want_prop = record_log if propensities is None else propensities
    cached_available = None
    n_int = store.interests.shape[1]
    for t in range(rounds):
        available = store.arrival <= t
        u_click, u_buy = responses.random((n, k)), responses.random((n, k))
        probs = store.click_probability(t, exposure)
        if cached_available is None or (available != cached_available).any():
            # Pools that change only when items arrive: the exploit top-N, the long tail near
            # the shoppers' long-term interests, and the new items near them.
            cached_available = available
            exploit = top_n(store.exploit_scores, pools.n_exploit, available)
            known_now = np.flatnonzero(available & (store.arrival == 0))
            tail = long_tail(store.popularity, pools.tail_quantile, available & (store.arrival == 0))
            long_items, long_idx = interest_pool(store.interests, store.interest_valid, store.features, tail,
                                                 pools.n_per_interest)
            new_now = np.flatnonzero(available & (store.arrival > 0))
            new_pool = new_item_pool(store.interests, store.interest_valid, store.features, new_now, pools.n_new)
        # The recent-interest centre follows the shopper's engagement, so it is recomputed each
        # round; it draws from every known item, popular ones included, to follow drift.
        recent_valid = (pol.shoppers.n_positive > 0)[:, None]
        recent_items, _ = interest_pool(normalise_rows(pol.shoppers.recent)[:, None, :], recent_valid,
                                        store.features, known_now, pools.n_per_interest)
        cand = merge_pools(exploit, np.concatenate([long_items, recent_items], axis=1),
                           np.concatenate([long_idx, np.where(recent_items >= 0, n_int, -1).astype(np.int16)], axis=1),
                           new_pool, trending_pool(trending, pools.n_trending, available, n))
        scores = np.take_along_axis(store.exploit_z, np.maximum(cand.items, 0), axis=1)
        repeat = np.take_along_axis(exposure, np.maximum(cand.items, 0), axis=1)
        slates = pol.recommend(rows, cand, scores, rng, propensities=want_prop, repeat=repeat)
        shown = slates.items >= 0
        items = np.maximum(slates.items, 0)
        p = np.where(shown, exam[None, :] * probs[rows[:, None], items], 0.0)
        clicks = u_click < p
        buys = clicks & (u_buy < store.config.purchase_rate)
        oracle = -np.sort(-np.partition(probs, n_items - k, axis=1)[:, n_items - k:], axis=1)
        series["oracle"][t] = (oracle * exam[None, :]).sum()
        series["expected"][t] = p.sum()
        series["clicks"][t] = clicks.sum()
        series["purchases"][t] = buys.sum()
        series["explore"][t] = slates.explored[shown].mean() if shown.any() else 0.0
        series["new"][t] = (store.arrival[items][shown] > 0).mean() if shown.any() else 0.0
        series["tail"][t] = store.tail[items][shown].mean() if shown.any() else 0.0
        v = true_unit[items] * shown[:, :, None]
        m = shown.sum(axis=1)
        pair = (np.einsum("nkd,nld->n", v, v) - m) / np.maximum(m * (m - 1), 1)
        series["div"][t] = float(np.mean(1.0 - pair))
        shown_ever[items[shown]] = True
        if record_log:
            q = np.where(cand.valid, np.take_along_axis(probs, np.maximum(cand.items, 0), axis=1), 0.0)
            log_parts.append((np.full(n, t), rows.copy(), cand, scores, repeat, q, slates.columns,
                              slates.propensities, clicks.astype(np.float64)))
        pol.feedback(slates, clicks.astype(np.float64))
        exposure *= store.config.fatigue_recovery
        np.add.at(exposure, (np.repeat(rows, k)[shown.ravel()], items[shown]), np.broadcast_to(exam, (n, k))[shown])
        trending = store.config.trending_decay * trending + np.bincount(items[clicks], minlength=n_items)
    arrived = store.new_items[store.arrival[store.new_items] < rounds]
    log = None
    if record_log:
        log = ImpressionLog(
            np.concatenate([p[0] for p in log_parts]), np.concatenate([p[1] for p in log_parts]),
            _stack_candidates([p[2] for p in log_parts]), _stack_padded([p[3] for p in log_parts], 0.0),
            _stack_padded([p[4] for p in log_parts], 0.0), _stack_padded([p[5] for p in log_parts], 0.0),
            np.concatenate([p[6] for p in log_parts]), np.concatenate([p[7] for p in log_parts]),
            np.concatenate([p[8] for p in log_parts]), exam)
    return SimulationResult(
        pol.name, series["clicks"], series["purchases"], series["expected"], series["oracle"], series["explore"],
        series["new"], series["tail"], series["div"],
        float(shown_ever[store.arrival < rounds].mean()),
        float(shown_ever[arrived].mean()) if len(arrived) else 0.0,
        n, time.perf_counter() - t0, log, pol)


def _stack_padded(parts: list[np.ndarray], fill: float) -> np.ndarray:
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=fill) for p in parts])


def _stack_candidates(parts: list[Candidates]) -> Candidates:
    return Candidates(_stack_padded([p.items for p in parts], -1).astype(np.int64),
                      _stack_padded([p.source for p in parts], -1).astype(np.int8),
                      _stack_padded([p.interest for p in parts], -1).astype(np.int16))


def fresh_policy(store: Store, config: PolicyConfig) -> Policy:
    """A new policy for the store: prior state from the shoppers' histories, and the store's
    catalogue-wide score feature (`Store.exploit_z`)."""
    return Policy(replace(config, score_scaling="given"), store.features, store.n_shoppers,
                  store.history_length, store.history_mean)


def _mean_ci(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95% t-interval over seeds."""
    from scipy.stats import t

    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float(v.mean()), [float(v.mean()), float(v.mean())]
    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return float(v.mean()), [float(v.mean() - half), float(v.mean() + half)]


@dataclass
class Experiment:
    """Several policies over several seeds: summaries with 95% intervals over seeds, per-round
    series (mean over seeds) for plotting, and off-policy validation results."""

    summary: dict[str, dict]
    series: dict[str, dict[str, np.ndarray]]
    ope: dict[str, dict[str, dict]]
    settings: dict

    def to_json(self) -> dict:
        """{policy: {reward_mean, reward_ci95, regret_mean, ...}, "ope": {...}, "settings": {...}}."""
        return {**self.summary, "ope": self.ope, "settings": self.settings}


def run_experiment(
    data: Dataset,
    policies: list[PolicyConfig],
    rounds: int,
    seeds: list[int],
    store_config: StoreConfig | None = None,
    pools: PoolConfig | None = None,
    ope_rounds: int = 0,
    logger: PolicyConfig | None = None,
    n_samples: int = 100,
    n_bootstrap: int = 500,
    progress=None,
) -> Experiment:
    """Build one store per seed, run every policy in it, and (if ope_rounds) validate the
    off-policy estimators: each policy, as it stands at the end of its run, is evaluated from a
    fresh `ope_rounds`-round log of `logger` (default: greedy with 30% of slates uniformly
    random) and compared with its true value on those requests. progress: an optional callable
    taking a message string."""
    store_config = store_config or StoreConfig()
    logger = logger or PolicyConfig(kind="greedy", uniform_mix=0.3, label="greedy+30%uniform")
    names = [p.name for p in policies]
    if len(set(names)) != len(names) or {"ope", "settings"} & set(names):
        raise ConfigError(f"Policy names must be distinct and not 'ope' or 'settings'. Got {names}.")
    runs: dict[str, list[dict]] = {nm: [] for nm in names}
    curves: dict[str, dict[str, list[np.ndarray]]] = {nm: {"reward": [], "explore_share": []} for nm in names}
    ope_runs: dict[str, dict[str, list[dict]]] = {}
    for seed in seeds:
        store = Store.build(data, store_config, seed)
        learned = []
        for cfg in policies:
            res = simulate(store, cfg, rounds, seed, pools)
            learned.append(res.learned)
            runs[cfg.name].append(res.summary())
            curves[cfg.name]["reward"].append(np.cumsum(res.clicks) / res.n_shoppers)
            curves[cfg.name]["explore_share"].append(res.explore_share)
            if progress:
                progress(f"seed {seed} {cfg.name}: reward {runs[cfg.name][-1]['reward']:.3f} ({res.seconds:.1f}s)")
        if ope_rounds:
            from shoprec.evaluate.ope import off_policy_validation

            for target, estimates in off_policy_validation(store, logger, learned, ope_rounds, seed, n_samples,
                                                           n_bootstrap).items():
                for est, value in estimates.items():
                    ope_runs.setdefault(target, {}).setdefault(est, []).append(value)
            if progress:
                progress(f"seed {seed}: off-policy validation done")
    summary = {}
    for nm, rs in runs.items():
        row: dict = {}
        for key in ("reward", "expected_reward", "regret", "purchases"):
            mean, ci = _mean_ci([r[key] for r in rs])
            row[f"{key}_mean"], row[f"{key}_ci95"] = mean, ci
        for key in ("new_item_exposure", "new_item_coverage", "coverage", "tail_exposure", "diversity",
                    "explore_share", "early_reward", "early_regret"):
            row[key] = float(np.mean([r[key] for r in rs]))
        row["per_seed"] = rs
        summary[nm] = row
    ope: dict[str, dict[str, dict]] = {}
    for target, by_est in ope_runs.items():
        ope[target] = {}
        for est, all_vals in by_est.items():
            vals = [v for v in all_vals if "estimate" in v]
            if not vals:
                ope[target][est] = {"skipped": all_vals[0].get("skipped", ""), "seeds": 0}
                continue
            ope[target][est] = {
                "estimate": float(np.mean([v["estimate"] for v in vals])),
                "ci95": [float(np.mean([v["ci95"][0] for v in vals])), float(np.mean([v["ci95"][1] for v in vals]))],
                "truth": float(np.mean([v["truth"] for v in vals])),
                "relative_error": float(np.mean([v["relative_error"] for v in vals])),
                "covered": float(np.mean([v["covered"] for v in vals])),
                "seeds": len(vals),
                "per_seed": all_vals,
            }
    series = {nm: {key: np.mean(np.stack(v), axis=0) for key, v in c.items()} for nm, c in curves.items()}
    settings = {"rounds": rounds, "seeds": list(seeds), "store": store_config.__dict__.copy(),
                "content_source": store.content_source, "n_new_items": len(store.new_items),
                "policies": names, "ope_rounds": ope_rounds, "logger": logger.name,
                "n_shoppers": store_config.n_shoppers}
    return Experiment(summary, series, ope, settings)
