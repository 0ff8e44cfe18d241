"""Running exploration policies in a simulated store, round by round.

`simulate` runs a policy for some rounds (every shopper gets a slate each round), draws clicks
and purchases with common random numbers (the same uniforms for every policy with one seed), and
returns per-round metrics and, optionally, an impression log with propensities for off-policy
evaluation. Same seed, same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from shoprec.errors import check_int
from shoprec.explore.config import PolicyConfig, examination
from shoprec.explore.policies import Policy
from shoprec.explore.pools import (
    Candidates,
    PoolConfig,
    interest_pool,
    long_tail,
    merge_pools,
    new_item_pool,
    top_n,
    trending_pool,
)
from shoprec.explore.state import normalise_rows
from shoprec.simulation.store import SimulatedStore

__all__ = ["ImpressionLog", "SimulationResult", "fresh_policy", "simulate"]


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
    discovered: float = 0.0
    new_first_click: float = float("nan")
    log: ImpressionLog | None = None
    learned: Policy | None = field(default=None, repr=False)  # the policy at the end of the run

    def summary(self) -> dict[str, float]:
        """Totals per shopper and shares over the run. reward: clicks; late_reward: clicks in the
        last 20% of rounds; expected_reward: the sum of the click probabilities of what was shown
        (the same quantity without the coin flips); regret: the oracle's expected clicks minus the
        policy's, round by round (early_regret: over the first 10% of rounds); discovered: share of
        the items available during the run that earned at least one click (the discoverable
        corpus); new_first_click: rounds from an arriving item's arrival to its first click, mean
        over the items that arrived, censored at the end of the run (NaN when none arrived)."""
        n = self.n_shoppers
        early = max(1, len(self.clicks) // 10)
        late = max(1, len(self.clicks) // 5)
        return {
            "reward": float(self.clicks.sum() / n),
            "late_reward": float(self.clicks[-late:].sum() / n),
            "discovered": self.discovered,
            "new_first_click": self.new_first_click,
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
    store: SimulatedStore,
    policy: PolicyConfig | Policy,
    rounds: int,
    seed: int = 0,
    pools: PoolConfig | None = None,
    record_log: bool = False,
    propensities: bool | None = None,
    shadow: Callable[[int, Policy, np.ndarray, Candidates, np.ndarray, np.ndarray], None] | None = None,
) -> SimulationResult:
    """Run one policy for `rounds` rounds; every shopper gets one slate per round.

    record_log keeps the impression log (with propensities); propensities (default: record_log)
    computes Monte-Carlo propensities of randomised policies, the costly part. shadow, when
    given, is called every round as shadow(round, policy, shopper rows, candidates, scores,
    repeat) after the slates are drawn and before the policy learns from them: the policy's
    state at the time of the request, which off-policy validation uses to ask what another
    exploration weight would have shown on the same requests.
    """
    rounds = check_int("rounds", rounds, 1, 1_000_000, "simulate")
    from threadpoolctl import threadpool_limits

    # Many small matrix products: one BLAS thread is faster, and fair to a shared machine.
    with threadpool_limits(limits=1, user_api="blas"):
        return _simulate(store, policy, rounds, seed, pools or PoolConfig(), record_log, propensities, shadow)


def _simulate(store, policy, rounds, seed, pools, record_log, propensities, shadow) -> SimulationResult:
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
    first_click = np.full(n_items, rounds, np.int64)
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
        first_click[items[clicks]] = np.minimum(first_click[items[clicks]], t)
        if record_log:
            q = np.where(cand.valid, np.take_along_axis(probs, np.maximum(cand.items, 0), axis=1), 0.0)
            log_parts.append((np.full(n, t), rows.copy(), cand, scores, repeat, q, slates.columns,
                              slates.propensities, clicks.astype(np.float64)))
        if shadow is not None:
            shadow(t, pol, rows, cand, scores, repeat)
        pol.feedback(slates, clicks.astype(np.float64))
        exposure *= store.config.fatigue_recovery
        np.add.at(exposure, (np.repeat(rows, k)[shown.ravel()], items[shown]), np.broadcast_to(exam, (n, k))[shown])
        trending = store.config.trending_decay * trending + np.bincount(items[clicks], minlength=n_items)
    arrived = store.new_items[store.arrival[store.new_items] < rounds]
    present = store.arrival < rounds
    discovered = float((first_click[present] < rounds).mean())
    wait = float(np.mean(first_click[arrived] - store.arrival[arrived])) if len(arrived) else float("nan")
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
        n, time.perf_counter() - t0, discovered, wait, log, pol)


def _stack_padded(parts: list[np.ndarray], fill: float) -> np.ndarray:
    width = max(p.shape[1] for p in parts)
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=fill) for p in parts])


def _stack_candidates(parts: list[Candidates]) -> Candidates:
    return Candidates(_stack_padded([p.items for p in parts], -1).astype(np.int64),
                      _stack_padded([p.source for p in parts], -1).astype(np.int8),
                      _stack_padded([p.interest for p in parts], -1).astype(np.int16))


def fresh_policy(store: SimulatedStore, config: PolicyConfig) -> Policy:
    """A new policy for the store: prior state from the shoppers' histories, and the store's
    catalogue-wide score feature (`SimulatedStore.exploit_z`)."""
    return Policy(replace(config, score_scaling="given"), store.features, store.n_shoppers,
                  store.history_length, store.history_mean)
