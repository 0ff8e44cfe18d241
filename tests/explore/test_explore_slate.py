"""Slates: budget, positions, re-ranking, propensities, and what each slate reports."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError
from shoprec.explore import (
    POLICY_KINDS,
    Candidates,
    Policy,
    PolicyConfig,
    SlateConfig,
    calibrated_rerank,
    mmr_rerank,
)
from shoprec.explore.slate import assemble, explore_positions


def random_requests(seed: int = 0, n: int = 40, n_items: int = 200, c: int = 60, d: int = 8):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_items, d))
    items = np.stack([rng.choice(n_items, size=c, replace=False) for _ in range(n)])
    items[:, -3:] = -1  # a few empty columns, as pools leave them
    source = rng.integers(0, 4, size=items.shape).astype(np.int8)
    interest = np.where(source == 1, rng.integers(0, 3, size=items.shape), -1).astype(np.int16)
    cand = Candidates(items, np.where(items >= 0, source, -1).astype(np.int8), interest)
    scores = np.where(items >= 0, rng.normal(size=items.shape), np.nan)
    return features, cand, scores


def make_policy(kind: str, features, n: int, **kw) -> Policy:
    slate = kw.pop("slate", SlateConfig(k=10, explore_budget=3, propensity_samples=50))
    return Policy(PolicyConfig(kind=kind, slate=slate, **kw), features, n, history_length=np.arange(n))


def test_mmr_with_lambda_one_is_the_relevance_order():
    rng = np.random.default_rng(1)
    rel = rng.normal(size=(5, 30))
    valid = np.ones_like(rel, bool)
    valid[:, -4:] = False
    feats = rng.normal(size=(5, 30, 4))
    order = mmr_rerank(rel, feats, valid, 10, 1.0)
    expected = np.argsort(-np.where(valid, rel, -np.inf), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(order, expected)


def test_mmr_with_low_lambda_avoids_near_duplicates():
    # Two near-identical top items and a different third: diversity swaps the twin out of slot 2.
    rel = np.array([[1.0, 0.99, 0.5]])
    feats = np.array([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]]])
    assert mmr_rerank(rel, feats, np.ones((1, 3), bool), 2, 1.0).tolist() == [[0, 1]]
    assert mmr_rerank(rel, feats, np.ones((1, 3), bool), 2, 0.3).tolist() == [[0, 2]]


def test_calibrated_rerank_follows_the_shoppers_category_mix():
    rel = np.array([[1.0, 0.9, 0.8, 0.7, 0.2, 0.1]])
    cats = np.array([[0, 0, 0, 0, 1, 1]])
    target = np.array([[0.5, 0.5]])
    plain = calibrated_rerank(rel, cats, target, np.ones((1, 6), bool), 4, 0.0)
    calibrated = calibrated_rerank(rel, cats, target, np.ones((1, 6), bool), 4, 0.9)
    assert plain.tolist() == [[0, 1, 2, 3]]
    assert (cats[0, calibrated[0]] == 1).sum() == 2


def test_exploration_slots_spread_down_the_slate_and_never_touch_the_top():
    assert explore_positions(10, 8, 2).tolist() == [2, 5, 8, 3, 6, 9, 4, 7]
    assert explore_positions(10, 3, 2).tolist() == [2, 5, 8]
    slots, explored = assemble(np.arange(10)[None], np.array([[50, 51, 52]]), np.array([2]),
                               explore_positions(10, 3, 2), 10)
    assert slots.tolist() == [[0, 1, 50, 2, 3, 51, 4, 5, 6, 7]]
    assert explored[0].nonzero()[0].tolist() == [2, 5]


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_slates_have_no_duplicates_respect_the_budget_and_have_probabilities(kind):
    features, cand, scores = random_requests()
    n = len(cand)
    policy = make_policy(kind, features, n)
    rng = np.random.default_rng(2)
    for _ in range(3):
        slates = policy.recommend(np.arange(n), cand, scores, rng)
        for i in range(n):
            shown = slates.items[i][slates.items[i] >= 0]
            assert len(shown) == 10 and len(set(shown.tolist())) == 10
            assert set(shown.tolist()) <= set(cand.items[i].tolist())
        assert (slates.explored.sum(axis=1) <= 3).all()
        assert not slates.explored[:, :2].any()
        p = slates.propensities
        assert ((p > 0) & (p <= 1)).all()
        policy.feedback(slates, (rng.random(slates.items.shape) < 0.2).astype(float))


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_action_distribution_is_a_distribution_per_slot(kind):
    features, cand, scores = random_requests(seed=3, n=10)
    policy = make_policy(kind, features, 10)
    dist = policy.action_distribution(np.arange(10), cand, scores, np.random.default_rng(0), n_samples=100)
    assert dist.shape == (10, 10, cand.items.shape[1])
    np.testing.assert_allclose(dist.sum(axis=2), 1.0)
    assert (dist[~np.broadcast_to(cand.valid[:, None, :], dist.shape)] == 0).all()
    # No item is shown twice in one slate, so its probabilities over the slots add up to at most 1.
    assert (dist.sum(axis=1) <= 1 + 1e-9).all()


def test_epsilon_greedy_propensities_are_exact():
    features, cand, scores = random_requests(seed=4, n=1)
    policy = make_policy("egreedy", features, 1, epsilon=0.4)
    dist = policy.action_distribution(np.arange(1), cand, scores, np.random.default_rng(0))[0]
    # 8,000 draws of the same request, as one batch.
    draws = 8000
    many = Candidates(np.repeat(cand.items, draws, 0), np.repeat(cand.source, draws, 0), np.repeat(cand.interest, draws, 0))
    slates = policy.recommend(np.zeros(draws, np.int64), many, np.repeat(scores, draws, 0), np.random.default_rng(1))
    freq = np.zeros_like(dist)
    np.add.at(freq, (np.broadcast_to(np.arange(10), (draws, 10)), slates.columns), 1.0 / draws)
    # Binomial standard error at most 0.0056 per cell: 5 sigma is a generous margin.
    np.testing.assert_allclose(freq, dist, atol=0.028)
    np.testing.assert_allclose(slates.propensities, dist[np.arange(10)[None, :], slates.columns])


def test_thompson_propensities_estimate_the_frequency_of_each_choice():
    features, cand, scores = random_requests(seed=5, n=1)
    policy = make_policy("thompson", features, 1, slate=SlateConfig(propensity_samples=400))
    rng = np.random.default_rng(0)
    s = policy.recommend(np.arange(1), cand, scores, rng)
    dist = policy.action_distribution(np.arange(1), cand, scores, rng, n_samples=4000)
    np.testing.assert_allclose(s.propensities[0], dist[0, np.arange(10), s.columns[0]], atol=0.06)


def test_every_slate_reports_its_weight_reasons_and_scores():
    features, cand, scores = random_requests(seed=6, n=5)
    policy = make_policy("dynamic", features, 5)
    slates = policy.recommend(np.arange(5), cand, scores, np.random.default_rng(0), override=[np.nan, 0.9, np.nan, 0.0, 1.0])
    assert slates.weight[1] == 0.9 and slates.weight[3] == 0.0 and 0 < slates.weight[0] < 1
    assert set(slates.weight_signals) == {"history", "variance", "drift", "payoff", "logit"}
    slate = slates.slate(1)
    assert slate.weight == 0.9 and slate.policy == "dynamic" and len(slate.reasons) == 10
    allowed = {"exploit", "exploring: uncertain", "new item", "trending"}
    for reason, explored in zip(slate.reasons, slate.explored):
        assert (reason == "exploit") != bool(explored)
        assert reason in allowed or reason.startswith("exploring: near interest ")
    assert ((slate.scores > 0) & (slate.scores < 1)).all()


def test_same_seed_gives_the_same_slates():
    features, cand, scores = random_requests(seed=7)
    for kind in ("egreedy", "thompson", "softmax"):
        a = make_policy(kind, features, len(cand)).recommend(np.arange(len(cand)), cand, scores, np.random.default_rng(9))
        b = make_policy(kind, features, len(cand)).recommend(np.arange(len(cand)), cand, scores, np.random.default_rng(9))
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.propensities, b.propensities)


def test_greedy_shows_the_model_ranking_before_any_feedback():
    features, cand, scores = random_requests(seed=8, n=3)
    slates = make_policy("greedy", features, 3).recommend(np.arange(3), cand, scores, np.random.default_rng(0))
    order = np.argsort(-np.where(cand.valid, scores, -np.inf), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(slates.columns, order)
    assert (slates.propensities == 1).all() and not slates.explored.any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "The 'k' parameter of SlateConfig must be an int in [1, 1000]. Got 0 instead."),
        ({"explore_budget": 9}, "The 'explore_budget' parameter of SlateConfig must be an int in [0, 8]. Got 9 instead."),
        ({"mmr_lambda": 1.5}, "The 'mmr_lambda' parameter of SlateConfig must be a number in [0.0, 1.0]. Got 1.5 instead."),
    ],
)
def test_slate_config_is_validated(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SlateConfig(**kwargs)
    assert str(info.value) == message
