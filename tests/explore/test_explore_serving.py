"""The per-request slate policies the service runs: one Slate type, exact propensities."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError, DataError
from shoprec.explore import GreedyPolicy, Slate, SlatePolicy, serving_policy

IDS = [f"i{j}" for j in range(30)]
ITEMS = np.arange(100, 130)  # item indices of the candidates, best first


def choose(policy, exploration, rng, n=30, k=10):
    return policy.choose(ITEMS[:n], IDS[:n], np.linspace(1, 0, n), k, exploration, rng)


def test_the_service_policies_meet_the_slate_policy_protocol():
    for policy in (serving_policy(), GreedyPolicy()):
        assert isinstance(policy, SlatePolicy)
    assert serving_policy().name == "item-ucb"


def test_zero_exploration_shows_the_ranking():
    slate = choose(serving_policy(), 0.0, np.random.default_rng(0))
    assert isinstance(slate, Slate)
    assert slate.columns.tolist() == list(range(10))
    assert slate.items.tolist() == ITEMS[:10].tolist()
    assert (slate.propensities == 1).all() and not slate.explored.any()
    assert slate.reasons == ["exploit"] * 10 and slate.weight == 0.0


def test_greedy_shows_the_top_k_with_propensity_one():
    slate = choose(GreedyPolicy(), 1.0, np.random.default_rng(0), n=5, k=10)
    assert slate.items.tolist() == ITEMS[:5].tolist() and (slate.propensities == 1).all()


def test_served_propensities_are_exact_frequencies():
    rng = np.random.default_rng(1)
    first = choose(serving_policy(), 0.5, rng)
    counts = np.zeros(10)
    draws = 3000
    for _ in range(draws):
        # A fresh policy each time, so that the item statistics (and the UCB order) stay the same.
        counts += choose(serving_policy(), 0.5, rng).columns == first.columns
    np.testing.assert_allclose(counts / draws, first.propensities, atol=0.04)
    assert len(set(first.columns.tolist())) == 10
    assert first.explored.sum() <= 3 and not first.explored[:2].any()


def test_feedback_moves_exploration_towards_clicked_items():
    policy = serving_policy()
    for _ in range(30):
        choose(policy, 1.0, np.random.default_rng(2), n=20)
    policy.update("i19", 1.0)
    policy.update("i19", 1.0)
    slate = choose(policy, 1.0, np.random.default_rng(3), n=20)
    assert 19 in slate.columns[slate.explored].tolist()


def test_invalid_requests_are_rejected():
    policy = serving_policy()
    with pytest.raises(ConfigError, match="The 'exploration' parameter of ItemUCBPolicy.choose must be a number"):
        policy.choose(ITEMS[:1], IDS[:1], np.ones(1), 1, 1.5, np.random.default_rng(0))
    with pytest.raises(DataError, match="items, item_ids and scores must have the same length"):
        policy.choose(ITEMS[:2], IDS[:2], np.ones(1), 1, 0.5, np.random.default_rng(0))
    with pytest.raises(DataError, match="no candidates"):
        policy.choose(ITEMS[:0], [], np.ones(0), 1, 0.5, np.random.default_rng(0))
