"""The policy the HTTP service loads: it fits the service's seam and logs exact propensities."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError, DataError
from shoprec.explore import serving_policy


def test_serving_policy_plugs_into_the_service_seam():
    exploration = pytest.importorskip("shoprec.serve.exploration")
    policy = exploration.load_policy(seed=0)
    assert policy.name == "item-ucb"
    assert isinstance(policy, exploration.SlatePolicy)


def test_zero_exploration_shows_the_ranking():
    policy = serving_policy()
    ids = [f"i{j}" for j in range(30)]
    slate = policy.choose(ids, np.linspace(1, 0, 30), 10, 0.0, np.random.default_rng(0))
    assert slate.positions.tolist() == list(range(10))
    assert (slate.propensities == 1).all() and not slate.explored.any()
    assert slate.reasons == ["exploit"] * 10 and slate.weight == 0.0


def test_served_propensities_are_exact_frequencies():
    ids = [f"i{j}" for j in range(30)]
    scores = np.linspace(1, 0, 30)
    rng = np.random.default_rng(1)
    first = serving_policy().choose(ids, scores, 10, 0.5, rng)
    counts = np.zeros(10)
    draws = 3000
    for _ in range(draws):
        # A fresh policy each time, so that the item statistics (and the UCB order) stay the same.
        s = serving_policy().choose(ids, scores, 10, 0.5, rng)
        counts += s.positions == first.positions
    np.testing.assert_allclose(counts / draws, first.propensities, atol=0.04)
    assert len(set(first.positions.tolist())) == 10
    assert first.explored.sum() <= 3 and not first.explored[:2].any()


def test_feedback_moves_exploration_towards_clicked_items():
    policy = serving_policy()
    ids = [f"i{j}" for j in range(20)]
    for _ in range(30):
        policy.choose(ids, np.linspace(1, 0, 20), 10, 1.0, np.random.default_rng(2))
    policy.update("i19", 1.0)
    policy.update("i19", 1.0)
    slate = policy.choose(ids, np.linspace(1, 0, 20), 10, 1.0, np.random.default_rng(3))
    assert 19 in slate.positions[slate.explored].tolist()


def test_invalid_requests_are_rejected():
    policy = serving_policy()
    with pytest.raises(ConfigError, match="The 'exploration' parameter of ItemUCBPolicy.choose must be a number"):
        policy.choose(["a"], np.ones(1), 1, 1.5, np.random.default_rng(0))
    with pytest.raises(DataError, match="item_ids and scores must have the same length"):
        policy.choose(["a", "b"], np.ones(1), 1, 0.5, np.random.default_rng(0))
