"""Policies learn: bandits beat random where the best arm is known, and regret grows slowly."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError, DataError
from shoprec.explore import BanditConfig, Candidates, Policy, PolicyConfig, SlateConfig
from shoprec.explore.state import sigmoid

N_SHOPPERS, N_ARMS, DIM = 40, 25, 5


def toy_problem(seed: int = 0):
    """Shoppers with hidden tastes over arms with known embeddings; the model knows nothing (all
    scores equal), so everything must be learned from clicks."""
    rng = np.random.default_rng(seed)
    arms = rng.normal(size=(N_ARMS, DIM))
    arms /= np.linalg.norm(arms, axis=1, keepdims=True)
    tastes = rng.normal(size=(N_SHOPPERS, DIM))
    tastes /= np.linalg.norm(tastes, axis=1, keepdims=True)
    probs = sigmoid(3.0 * tastes @ arms.T - 1.5)
    return arms, probs


def run(spec: str, rounds: int, seed: int = 0, **config) -> np.ndarray:
    """Expected reward per round of a one-slot policy on the toy problem.

    Arms here have no quality of their own, only a fit to each shopper's taste, so the per-item
    offsets are switched off (a tiny prior): the shoppers' posteriors must do all the learning.
    """
    arms, probs = toy_problem()
    config.setdefault("bandit", BanditConfig(item_prior_sd=1e-6))
    cfg = PolicyConfig.parse(spec, score_scaling="given",
                             slate=SlateConfig(k=1, explore_budget=1, first_explore_slot=0), **config)
    policy = Policy(cfg, arms, N_SHOPPERS)
    rng = np.random.default_rng(seed)
    rows = np.arange(N_SHOPPERS)
    cand = Candidates.from_items(np.tile(np.arange(N_ARMS), (N_SHOPPERS, 1)))
    scores = np.zeros((N_SHOPPERS, N_ARMS))
    out = np.zeros(rounds)
    for t in range(rounds):
        slates = policy.recommend(rows, cand, scores, rng, propensities=False)
        p = probs[rows, slates.items[:, 0]]
        out[t] = p.mean()
        policy.feedback(slates, (rng.random(N_SHOPPERS) < p).astype(float)[:, None])
    return out


def test_bandits_beat_random_choice_where_the_best_arm_is_known():
    best = toy_problem()[1].max(axis=1).mean()
    random_value = toy_problem()[1].mean()
    for spec in ("linucb:1.0", "thompson"):
        reward = run(spec, 150)
        late = reward[-50:].mean()
        assert late > random_value + 0.5 * (best - random_value), (spec, late, random_value, best)
    always_explore = run("egreedy:1.0", 150)
    assert abs(always_explore[-50:].mean() - random_value) < 0.05


def test_ucb_and_thompson_regret_grows_slower_than_epsilon_greedy():
    best = toy_problem()[1].max(axis=1).mean()
    regret = {spec: np.cumsum(best - run(spec, 200)) for spec in ("linucb:1.0", "thompson", "egreedy:0.5")}
    for spec in ("linucb:1.0", "thompson"):
        # Sublinear-ish: the second half of the run costs clearly less than the first ...
        first, second = regret[spec][99], regret[spec][-1] - regret[spec][99]
        assert second < 0.7 * first, (spec, first, second)
        # ... and the total is below that of a fixed, generous epsilon.
        assert regret[spec][-1] < regret["egreedy:0.5"][-1], regret


def test_greedy_learns_from_feedback_too():
    reward = run("greedy", 150)
    assert reward[-30:].mean() > reward[:10].mean()


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: PolicyConfig(kind="nope"), ConfigError,
         ("The 'kind' parameter of PolicyConfig must be one of ['greedy', 'egreedy', 'ucb', 'softmax', "
          "'linucb', 'thompson', 'dynamic', 'learned']. Got 'nope' instead.")),
        (lambda: PolicyConfig(kind="egreedy", epsilon=1.5), ConfigError,
         "The 'epsilon' parameter of PolicyConfig must be a number in [0.0, 1.0]. Got 1.5 instead."),
        (lambda: PolicyConfig.parse("egreedy:lots"), ConfigError,
         "The parameter in policy 'egreedy:lots' must be a number. Got 'lots' instead."),
        (lambda: PolicyConfig.parse("greedy:1"), ConfigError,
         "The greedy policy takes no parameter. Got 'greedy:1' instead."),
    ],
)
def test_policy_config_is_validated_with_exact_messages(build, error, message):
    with pytest.raises(error) as info:
        build()
    assert str(info.value) == message


def test_parse_sets_the_main_parameter_and_label():
    cfg = PolicyConfig.parse("egreedy:0.05")
    assert cfg.kind == "egreedy" and cfg.epsilon == 0.05 and cfg.name == "egreedy:0.05"
    assert PolicyConfig.parse("linucb:2").alpha == 2.0
    assert PolicyConfig.parse("dynamic", explorer="thompson").monte_carlo


def test_requests_must_match_their_candidates():
    arms, _ = toy_problem()
    policy = Policy(PolicyConfig(kind="greedy"), arms, 3)
    cand = Candidates.from_items(np.tile(np.arange(N_ARMS), (3, 1)))
    with pytest.raises(DataError, match="must describe the same requests"):
        policy.recommend(np.arange(2), cand, np.zeros((3, N_ARMS)), np.random.default_rng(0))
    with pytest.raises(DataError, match=r"Shopper indices must be in \[0, 3\)"):
        policy.recommend(np.array([0, 1, 5]), cand, np.zeros((3, N_ARMS)), np.random.default_rng(0))
    slates = policy.recommend(np.arange(3), cand, np.zeros((3, N_ARMS)), np.random.default_rng(0))
    with pytest.raises(DataError, match=r"rewards must be numbers in \[0, 1\]"):
        policy.feedback(slates, np.full(slates.items.shape, 2.0))


def test_policy_state_round_trips_through_plain_arrays(tmp_path):
    arms, _ = toy_problem()
    policy = Policy(PolicyConfig(kind="thompson"), arms, N_SHOPPERS)
    cand = Candidates.from_items(np.tile(np.arange(N_ARMS), (N_SHOPPERS, 1)))
    rng = np.random.default_rng(0)
    for _ in range(3):
        slates = policy.recommend(np.arange(N_SHOPPERS), cand, np.zeros((N_SHOPPERS, N_ARMS)), rng, propensities=False)
        policy.feedback(slates, (rng.random(slates.items.shape) < 0.3).astype(float))
    arrays = policy.to_arrays()
    np.savez(tmp_path / "state.npz", **arrays)
    with np.load(tmp_path / "state.npz", allow_pickle=False) as npz:
        restored = Policy.from_arrays(policy.config, {k: npz[k] for k in npz.files})
    a = policy.recommend(np.arange(N_SHOPPERS), cand, np.zeros((N_SHOPPERS, N_ARMS)), np.random.default_rng(5))
    b = restored.recommend(np.arange(N_SHOPPERS), cand, np.zeros((N_SHOPPERS, N_ARMS)), np.random.default_rng(5))
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores)


def test_new_items_can_be_added():
    arms, _ = toy_problem()
    policy = Policy(PolicyConfig(kind="linucb"), arms, 2)
    policy.add_items(np.ones((3, DIM)))
    assert policy.features.shape == (N_ARMS + 3, DIM) and len(policy.items) == N_ARMS + 3
    with pytest.raises(DataError, match="must have 5 dimensions"):
        policy.add_items(np.ones((1, 4)))
