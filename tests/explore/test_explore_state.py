"""Per-shopper posteriors, item statistics, the calibrator and the dynamic weight."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError, DataError
from shoprec.explore import (
    BanditConfig,
    Calibrator,
    ItemStats,
    ShopperState,
    ShopperStates,
    WeightConfig,
    exploration_weight,
    update_shopper,
)
from shoprec.explore.state import log_rank, logistic_step, sigmoid


def test_sherman_morrison_updates_match_the_direct_posterior():
    rng = np.random.default_rng(0)
    cfg = BanditConfig(prior_sd=0.7)
    states = ShopperStates.new(2, 4, cfg)
    precision = [np.eye(4) / cfg.prior_sd**2 for _ in range(2)]
    for _ in range(30):
        rows = rng.integers(0, 2, size=3)  # repeats: events of one shopper apply in order
        x = rng.normal(size=(3, 4))
        offset, exam = rng.normal(size=3) - 2, rng.uniform(0.3, 1, size=3)
        reward = (rng.random(3) < 0.3).astype(float)
        for r, xi, o, e, y in zip(rows, x, offset, exam, reward):
            eta = o + xi @ states.theta[r]
            _, info = logistic_step(np.array([eta]), np.array([e]), np.array([y]))
            precision[r] += info[0] * np.outer(xi, xi)
            states.observe(np.array([r]), xi[None], np.array([o]), np.array([e]), np.array([y]),
                           np.array([False]), cfg)
    for r in range(2):
        np.testing.assert_allclose(states.cov[r], np.linalg.inv(precision[r]), rtol=1e-8, atol=1e-12)


def test_batched_updates_with_repeated_shoppers_equal_sequential_ones():
    rng = np.random.default_rng(1)
    cfg = BanditConfig()
    rows = np.array([0, 1, 0, 2, 0, 1])
    x, offset = rng.normal(size=(6, 3)), rng.normal(size=6) - 3
    exam, reward, explored = np.full(6, 0.8), np.array([1.0, 0, 0, 1, 1, 0]), np.array([1, 0, 0, 1, 0, 1], bool)
    batch, seq = ShopperStates.new(3, 3, cfg), ShopperStates.new(3, 3, cfg)
    batch.observe(rows, x, offset, exam, reward, explored, cfg)
    for i in range(6):
        seq.observe(rows[i:i + 1], x[i:i + 1], offset[i:i + 1], exam[i:i + 1], reward[i:i + 1], explored[i:i + 1], cfg)
    for name, value in batch.to_arrays().items():
        np.testing.assert_allclose(value, seq.to_arrays()[name], err_msg=name)
    assert batch.n_positive.tolist() == [2, 0, 1] and batch.n_feedback.tolist() == [3, 2, 1]


def test_update_shopper_is_a_pure_function_over_plain_arrays():
    state = ShopperState.new(4, history_length=12)
    before = {k: v.copy() for k, v in state.to_arrays().items()}
    after = update_shopper(state, np.array([1.0, 0, 0, 0]), 1.0, offset=-3.0)
    for k, v in state.to_arrays().items():
        np.testing.assert_array_equal(v, before[k])
    assert after.theta[0] > 0 and after.cov[0, 0] < state.cov[0, 0] and after.n_positive == 1
    again = ShopperState.from_arrays(after.to_arrays())
    np.testing.assert_array_equal(again.theta, after.theta)
    with pytest.raises(DataError, match="item_embedding must have 4 values. Got 3 instead."):
        update_shopper(state, np.ones(3), 1.0)
    with pytest.raises(DataError, match=r"reward must be a number in \[0, 1\]. Got nan instead."):
        update_shopper(state, np.ones(4), float("nan"))
    with pytest.raises(DataError, match=r"missing arrays \['theta'\]"):
        ShopperState.from_arrays({k: v for k, v in after.to_arrays().items() if k != "theta"})


def test_item_offsets_learn_which_items_are_clicked_more():
    stats = ItemStats.new(3)
    rng = np.random.default_rng(2)
    for _ in range(50):
        items = rng.integers(0, 3, size=200)
        truth = np.array([0.02, 0.05, 0.10])[items]
        stats.observe(items, np.full(200, np.log(0.05 / 0.95)), np.ones(200), (rng.random(200) < truth).astype(float))
    assert stats.mean[0] < stats.mean[1] < stats.mean[2]
    assert (stats.var(np.arange(3)) < 0.5**2).all()


def test_calibrator_recovers_a_click_curve_and_a_repeat_penalty():
    rng = np.random.default_rng(3)
    cal = Calibrator.new(BanditConfig(base_ctr=0.05))
    for _ in range(5):
        z = -np.log1p(rng.integers(0, 50, size=4000))
        rep = rng.exponential(1.0, size=4000)
        p = sigmoid(0.8 * z - 1.0 - 0.5 * rep)
        cal.observe(z, rep, np.zeros(4000), np.ones(4000), (rng.random(4000) < p).astype(float))
    slope, intercept, repeat = cal.coefficients()
    # Standard errors are about 0.03-0.05 with 20,000 events at these rates.
    assert slope == pytest.approx(0.8, abs=0.15)
    assert intercept == pytest.approx(-1.0, abs=0.25)
    assert repeat == pytest.approx(-0.5, abs=0.2)


def test_log_rank_is_minus_log_one_plus_rank_among_valid_candidates():
    scores = np.array([[0.1, 0.9, 0.5, 7.0]])
    valid = np.array([[True, True, True, False]])
    np.testing.assert_allclose(log_rank(scores, valid), [[-np.log(3), 0.0, -np.log(2), 0.0]])


def _weight(**kw):
    base = {"n_events": np.array([100.0]), "variance_ratio": np.array([0.5]), "recent": np.array([[1.0, 0.0]]),
            "longterm": np.array([[1.0, 0.0]]), "payoff": np.zeros((1, 4))}
    base.update(kw)
    return exploration_weight(**base)[0][0]


def test_dynamic_weight_rises_with_uncertainty_drift_and_payoff():
    w = _weight()
    assert _weight(n_events=np.array([0.0])) > w  # short history
    assert _weight(variance_ratio=np.array([1.0])) > w  # wide posterior
    assert _weight(recent=np.array([[0.0, 1.0]])) > w  # recent interest drifted away
    assert _weight(payoff=np.array([[10.0, 2.0, 100.0, 2.0]])) > w  # exploring paid off
    assert _weight(payoff=np.array([[10.0, 0.0, 100.0, 10.0]])) < w  # exploring did not
    _, signals = exploration_weight(np.array([20.0]), np.array([0.5]), np.array([[1.0, 0.0]]),
                                    np.array([[-1.0, 0.0]]), np.zeros((1, 4)))
    assert signals["history"][0] == pytest.approx(0.5) and signals["drift"][0] == pytest.approx(1.0)


def test_override_replaces_the_rule_and_is_validated():
    assert _weight() != 0.7
    w, _ = exploration_weight(np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.ones((2, 2)), np.ones((2, 2)),
                              np.zeros((2, 4)), override=np.array([0.7, np.nan]))
    assert w[0] == 0.7 and w[1] != 0.7
    with pytest.raises(ConfigError) as info:
        exploration_weight(np.array([1.0]), np.array([1.0]), np.ones((1, 2)), np.ones((1, 2)), np.zeros((1, 4)),
                           override=1.5)
    assert str(info.value) == "The 'override' parameter of exploration_weight must be a number in [0, 1]. Got 1.5 instead."


def test_weight_config_is_validated():
    with pytest.raises(ConfigError) as info:
        WeightConfig(min_weight=0.8, max_weight=0.2)
    assert str(info.value) == "The 'min_weight' parameter of WeightConfig must be <= max_weight (0.2). Got 0.8 instead."
    w, _ = exploration_weight(np.array([0.0]), np.array([1.0]), np.ones((1, 2)), -np.ones((1, 2)),
                              np.zeros((1, 4)), WeightConfig(max_weight=0.3))
    assert w[0] == 0.3


def test_a_joint_update_of_several_events_agrees_with_updating_one_event_after_another():
    from shoprec.explore.state import BanditConfig, ShopperStates, observe_jointly

    rng = np.random.default_rng(0)
    config = BanditConfig()
    x = rng.standard_normal((6, 4)) * 0.3
    offset, exam = np.full(6, -3.0), np.full(6, 0.8)
    reward = np.array([0, 1, 0, 0, 1, 0], float)
    explored = np.array([0, 1, 0, 1, 0, 0], bool)
    one_by_one, joint = ShopperStates.new(1, 4, config), ShopperStates.new(1, 4, config)
    one_by_one.observe(np.zeros(6, np.int64), x, offset, exam, reward, explored, config)
    observe_jointly(joint, 0, x, offset, exam, reward, explored, config)
    np.testing.assert_allclose(joint.theta, one_by_one.theta, atol=0.02)
    np.testing.assert_allclose(joint.cov, one_by_one.cov, atol=0.01)
    for name in ("n_feedback", "n_positive", "recent", "longterm", "payoff"):
        np.testing.assert_allclose(getattr(joint, name), getattr(one_by_one, name), err_msg=name)
