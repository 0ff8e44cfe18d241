"""The learned exploration weight: a level bandit that learns from feedback and logs exact
propensities."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError
from shoprec.explore import Candidates, Policy, PolicyConfig, SlateConfig
from shoprec.explore.learned import LevelBandit, LevelConfig

N, C, DIM = 6, 30, 4


def _signals(n: int, level: np.ndarray | None = None, history: float = 0.5) -> dict[str, np.ndarray]:
    out = {"history": np.full(n, history), "variance": np.ones(n), "drift": np.zeros(n), "payoff": np.zeros(n)}
    if level is not None:
        out["level"] = level.astype(np.float64)
    return out


def test_a_fresh_bandit_starts_at_the_lowest_level():
    bandit = LevelBandit()
    x = LevelBandit.context(_signals(3))
    np.testing.assert_array_equal(bandit.choose(x), [0, 0, 0])


def test_the_bandit_learns_which_level_pays_in_each_context():
    # Level 2 pays for new shoppers (history 1), level 0 for known ones (history 0).
    rng = np.random.default_rng(0)
    bandit = LevelBandit(LevelConfig(levels=(0.0, 0.1, 0.4), alpha=2.0))
    payoff = {1.0: np.array([0.1, 0.2, 0.4]), 0.0: np.array([0.4, 0.2, 0.1])}
    for _ in range(400):
        h = rng.choice([0.0, 1.0], size=20)
        sig = {"history": h, "variance": np.ones(20), "drift": np.zeros(20), "payoff": np.zeros(20)}
        arm = bandit.choose(LevelBandit.context(sig))
        mean = np.where(h == 1.0, payoff[1.0][arm], payoff[0.0][arm])
        bandit.update({**sig, "level": arm.astype(float)}, (rng.random(20) < mean).astype(float))
    new = bandit.choose(LevelBandit.context(_signals(1, history=1.0)))
    known = bandit.choose(LevelBandit.context(_signals(1, history=0.0)))
    assert (new[0], known[0]) == (2, 0)


def test_overridden_requests_are_not_learned_from():
    bandit = LevelBandit()
    w, sig = bandit.weight(np.zeros(2), np.ones(2), np.ones((2, 3)), np.ones((2, 3)), np.zeros((2, 4)),
                           override=np.array([0.3, np.nan]))
    np.testing.assert_allclose(w, [0.3, 0.0])
    np.testing.assert_array_equal(sig["level"], [-1, 0])
    bandit.update(sig, np.array([1.0, 0.0]))
    assert bandit.moments[0] == 1


@pytest.mark.parametrize("levels", [(), (0.1, 0.05), (0.0, 1.5), (0.1, 0.1)])
def test_levels_must_be_distinct_increasing_probabilities(levels):
    with pytest.raises(ConfigError, match="The 'levels' parameter of LevelConfig must be distinct increasing"):
        LevelConfig(levels=levels)


def test_the_learned_policy_takes_no_parameter():
    with pytest.raises(ConfigError, match="The learned policy takes no parameter. Got 'learned:0.3' instead."):
        PolicyConfig.parse("learned:0.3")


def _trained(order: str, seed: int = 0, kind: str = "learned"):
    """A learned policy (or the weight rule with the egreedy explorer) after some feedback, on
    random candidates: a fixed state to sample from."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((C, DIM))
    cfg = PolicyConfig(kind=kind, explorer="egreedy", explore_order=order, slate=SlateConfig(k=5, explore_budget=2),
                       levels=LevelConfig(levels=(0.0, 0.3, 0.6), alpha=5.0))
    policy = Policy(cfg, features, N)
    cand = Candidates.from_items(np.stack([rng.permutation(C) for _ in range(N)]))
    scores = rng.standard_normal((N, C))
    for _ in range(5):
        slates = policy.recommend(np.arange(N), cand, scores, rng)
        policy.feedback(slates, (rng.random(slates.items.shape) < 0.3).astype(float))
    return policy, cand, scores


@pytest.mark.parametrize("kind", ["learned", "dynamic"])
@pytest.mark.parametrize("order", ["uniform", "ucb"])
def test_logged_propensities_of_the_learned_policy_are_the_frequencies_of_what_it_shows(order, kind):
    # "dynamic" with the egreedy explorer: epsilon-greedy at the weight rule's per-request weight.
    policy, cand, scores = _trained(order, kind=kind)
    state = policy.to_arrays()
    first = policy.recommend(np.arange(N), cand, scores, np.random.default_rng(1))
    assert (first.weight > 0).any()  # some requests explore, so the slates are random
    draws = 4000
    rng = np.random.default_rng(2)
    counts = np.zeros((N, 5, C))
    logged = np.full((N, 5, C), np.nan)
    for _ in range(draws):
        s = policy.recommend(np.arange(N), cand, scores, rng)
        ok = s.columns >= 0
        r, j = np.nonzero(ok)
        counts[r, j, s.columns[ok]] += 1
        logged[r, j, s.columns[ok]] = s.propensities[ok]
    for key in state:  # the state stayed fixed
        np.testing.assert_array_equal(policy.to_arrays()[key], state[key])
    seen = ~np.isnan(logged)
    freq = counts[seen] / draws
    se = np.sqrt(logged[seen] * (1 - logged[seen]) / draws)
    # Every (shopper, slot, item) cell is a test: a Bonferroni bound keeps the chance that any of
    # them strays by luck under 1e-4 (about 5 standard errors for the ~170 cells here).
    from scipy.stats import norm

    z = norm.isf(1e-4 / (2 * seen.sum()))
    assert np.all(np.abs(freq - logged[seen]) <= z * se + 1e-9)
    # And they are the policy's full action distribution, which sums to one per slot.
    dist = policy.action_distribution(np.arange(N), cand, scores, rng)
    np.testing.assert_allclose(dist[seen], logged[seen])
    np.testing.assert_allclose(dist.sum(axis=2), 1.0)


def test_learned_policy_state_round_trips_with_its_bandit():
    policy, cand, scores = _trained("ucb")
    again = Policy.from_arrays(policy.config, policy.to_arrays())
    a = policy.recommend(np.arange(N), cand, scores, np.random.default_rng(3))
    b = again.recommend(np.arange(N), cand, scores, np.random.default_rng(3))
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.weight, b.weight)


def test_the_online_explorer_serves_the_learned_rule_and_learns_its_weight():
    from shoprec.explore import OnlineConfig, OnlineExplorer

    rng = np.random.default_rng(0)
    explorer = OnlineExplorer(OnlineConfig(weight_rule="learned"), rng.standard_normal((80, 8)),
                              np.r_[np.arange(70) + 1.0, np.zeros(10)])
    history = np.arange(5)
    state = explorer.prior_state(history)
    allowed = np.ones(80, bool)
    allowed[history] = False
    slate, _ = explorer.choose(state, history, rng.standard_normal(80), allowed, 10, rng)
    assert slate.weight_signals["level"] == 0.0 and slate.weight == 0.0  # a fresh bandit starts greedy
    assert np.all((slate.propensities > 0) & (slate.propensities <= 1))
    before = explorer.shared_arrays()["levels/moments"].copy()
    explorer.learn_weight(slate.weight_signals, 1.0)
    assert explorer.shared_arrays()["levels/moments"][0] == before[0] + 1
