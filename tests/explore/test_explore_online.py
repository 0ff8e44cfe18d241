"""One request at a time with the shopper's state stored outside: what the service runs."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import DataError
from shoprec.explore.online import OnlineConfig, OnlineExplorer, pack_state, unpack_state
from shoprec.explore.policies import Policy
from shoprec.explore.pools import Candidates
from shoprec.explore.state import ShopperState

N_ITEMS = 60


@pytest.fixture
def catalogue():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((N_ITEMS, 8))
    popularity = rng.integers(1, 50, N_ITEMS).astype(float)
    popularity[-5:] = 0  # five new items
    return vectors, popularity


def explorer(catalogue, **config) -> OnlineExplorer:
    vectors, popularity = catalogue
    return OnlineExplorer(OnlineConfig(feature_dim=4, **config), vectors, popularity)


def test_a_slate_holds_only_allowed_items_with_propensities_and_the_weight_and_its_signals(catalogue):
    ex = explorer(catalogue)
    history = np.array([1, 2, 3])
    allowed = np.ones(N_ITEMS, bool)
    allowed[history] = False
    allowed[10:20] = False
    scores = np.linspace(1, 0, N_ITEMS)
    slate, z = ex.choose(ex.prior_state(history), history, scores, allowed, 10, np.random.default_rng(1))
    assert len(slate.items) == 10 and len(z) == 10
    assert allowed[slate.items].all() and len(set(slate.items.tolist())) == 10
    assert ((slate.propensities > 0) & (slate.propensities <= 1)).all()
    assert 0.0 <= slate.weight <= 1.0 and set(slate.weight_signals) >= {"history", "variance", "drift", "payoff"}
    assert not slate.explored[:2].any()  # the first two slots always exploit
    assert slate.policy == "dynamic-thompson"


def test_the_external_state_path_draws_what_a_policy_holding_the_shopper_draws(catalogue):
    ex = explorer(catalogue, explorer="linucb")
    history = np.array([4, 5])
    state = ex.prior_state(history)
    scores = np.linspace(1, 0, N_ITEMS)
    cand = ex.candidates(history, scores, np.ones(N_ITEMS, bool))
    cand_scores = np.where(cand.valid, scores[np.maximum(cand.items, 0)], -np.inf)
    inside = Policy(ex.config.policy_config(10), ex.features, 1)
    inside.shoppers.put([0], state.as_batch())
    a = inside.recommend(np.zeros(1, np.int64), cand, cand_scores, np.random.default_rng(5))
    b = ex._policy(10).recommend(np.zeros(1, np.int64), cand, cand_scores, np.random.default_rng(5),
                                 states=state.as_batch())
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.propensities, b.propensities)
    np.testing.assert_allclose(a.weight, b.weight)


def test_learning_is_a_pure_function_of_the_state_and_moves_it_towards_the_clicked_item(catalogue):
    ex = explorer(catalogue)
    state = ex.prior_state(np.array([1]))
    before = pack_state(state)
    after = ex.learn(state, item=7, slot=0, reward=1.0, explored=False, z=0.0)
    assert pack_state(state) == before  # the stored state is untouched until the new one is written
    assert after.n_feedback == 1 and after.n_positive == 1
    assert after.theta @ ex.features[7] > 0 == state.theta @ ex.features[7]
    skipped = ex.learn(after, item=8, slot=3, reward=0.0, explored=True, z=-1.0)
    assert skipped.n_positive == 1 and skipped.payoff[0] > 0  # exploratory exposure counted


def test_feedback_teaches_the_shared_item_statistics_every_shopper_sees(catalogue):
    ex = explorer(catalogue)
    mean_before = ex.shared_arrays()["items/mean"][7]
    for _ in range(20):
        ex.learn(ex.prior_state(np.array([1])), item=7, slot=0, reward=1.0, explored=False, z=0.0)
    shared = ex.shared_arrays()
    assert shared["items/mean"][7] > mean_before
    assert shared["trending"][7] > 0 and shared["payoff_total"][3] == pytest.approx(20.0)


def test_replaying_the_log_rebuilds_the_shared_statistics(catalogue):
    live, rebuilt = explorer(catalogue), explorer(catalogue)
    events = [(7, 0, 1.0, 0.0), (8, 1, 0.0, -0.7), (7, 2, 1.0, -1.1), (9, 0, 0.0, 0.0)]
    for item, slot, reward, z in events:
        live.learn(live.prior_state(np.array([1])), item, slot, reward, False, z)
    rebuilt.learn_shared(*map(np.array, zip(*events)))
    np.testing.assert_allclose(rebuilt.shared_arrays()["items/mean"], live.shared_arrays()["items/mean"], atol=0.05)
    np.testing.assert_allclose(rebuilt.shared_arrays()["trending"], live.shared_arrays()["trending"])


def test_a_fixed_weight_rule_is_epsilon_greedy_with_exact_propensities(catalogue):
    ex = explorer(catalogue, weight_rule="fixed", epsilon=0.3)
    history = np.array([1, 2])
    allowed = np.ones(N_ITEMS, bool)
    allowed[history] = False
    slate, _ = ex.choose(ex.prior_state(history), history, np.linspace(1, 0, N_ITEMS), allowed, 6,
                         np.random.default_rng(0))
    assert slate.policy == "egreedy:0.3" and slate.weight == pytest.approx(0.3)
    np.testing.assert_allclose(slate.propensities[:2], 1.0)


def test_the_fitted_weight_rule_explores_per_shopper_with_exact_propensities(catalogue):
    from shoprec.explore.weighting import WeightConfig

    rule = WeightConfig(base=-2.0, history=4.0, variance=0.0, drift=0.0, payoff=0.0)
    ex = explorer(catalogue, weight_rule="fitted", weighting=rule)
    allowed = np.ones(N_ITEMS, bool)
    weights = []
    for history in (np.array([1]), np.arange(1, 41)):  # a new shopper and a known one
        state = ex.prior_state(history)
        slate, _ = ex.choose(state, history, np.linspace(1, 0, N_ITEMS), allowed, 6, np.random.default_rng(0))
        assert slate.policy == "fitted"
        np.testing.assert_allclose(slate.propensities[:2], 1.0)  # the top two slots always exploit
        assert np.all((slate.propensities > 0) & (slate.propensities <= 1))
        weights.append(slate.weight)
    # h = 1 / (1 + n / 20): the weight is the rule's sigmoid of -2 + 4 h, and falls with the history.
    n = np.array([1.0, 40.0])
    expected = 1 / (1 + np.exp(-(-2 + 4 / (1 + n / 20))))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)


def test_states_round_trip_through_bytes_and_a_state_from_another_space_restarts_from_its_prior(catalogue):
    ex = explorer(catalogue)
    state = ex.learn(ex.prior_state(np.array([1, 2])), 7, 0, 1.0, False, 0.0)
    again = unpack_state(pack_state(state), ex.dim)
    for name in ("cov", "theta", "payoff", "n_feedback"):
        np.testing.assert_array_equal(getattr(again, name), getattr(state, name))
    with pytest.raises(DataError, match="4-d state has"):
        unpack_state(pack_state(state)[:-8], ex.dim)
    reset = ex.state_in_space(state, "another-space", np.array([1, 2]))
    np.testing.assert_array_equal(reset.theta, np.zeros(ex.dim))
    assert reset.n_feedback == 1 and reset.payoff[3] == state.payoff[3]
    assert ex.state_in_space(state, ex.space.id, np.array([1, 2])) is state


def test_new_items_reach_a_slate_through_their_embedding(catalogue):
    ex = explorer(catalogue)
    history = np.array([1, 2, 3, 4, 5, 6])
    cand = ex.candidates(history, np.linspace(1, 0, N_ITEMS), np.ones(N_ITEMS, bool))
    assert isinstance(cand, Candidates)
    new = set(range(N_ITEMS - 5, N_ITEMS))
    assert new & set(cand.items[cand.valid].tolist())


def test_mismatched_inputs_are_refused(catalogue):
    ex = explorer(catalogue)
    with pytest.raises(DataError, match="one entry per item"):
        ex.choose(ex.prior_state(np.array([1])), np.array([1]), np.ones(3), np.ones(3, bool), 5,
                  np.random.default_rng(0))
    with pytest.raises(DataError, match="inside the explorer"):
        ex.learn(ex.prior_state(np.array([1])), N_ITEMS + 3, 0, 1.0, False, 0.0)
    assert isinstance(ex.prior_state(np.array([], int)), ShopperState)
