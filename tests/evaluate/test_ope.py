"""Off-policy estimators: they recover a known policy value on synthetic logs, and reject bad input."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError, DataError, EmptyDataError
from shoprec.evaluate.ope import (
    RewardModel,
    direct_method,
    doubly_robust,
    ips,
    replay,
    snips,
)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def synthetic_log(seed: int, n: int = 4000, n_actions: int = 6, uniform: bool = False):
    """One-slot log with known truth: contexts with true reward probabilities q (n, A), a logging
    policy (softmax or uniform) that acts, and a different target policy."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.05, 0.6, size=(n, n_actions))
    logging = np.full((n, n_actions), 1.0 / n_actions) if uniform else _softmax(rng.normal(size=(n, n_actions)))
    target = _softmax(4.0 * q + rng.normal(scale=0.3, size=(n, n_actions)))
    actions = (rng.random(n)[:, None] > np.cumsum(logging, axis=1)).sum(axis=1)
    rewards = (rng.random(n) < q[np.arange(n), actions]).astype(float)
    truth = float((target * q).sum(axis=1).mean())
    rows = np.arange(n)
    return {"q": q, "logging": logging, "target": target, "actions": actions, "rewards": rewards,
            "truth": truth, "p0": logging[rows, actions], "pe": target[rows, actions]}


@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_estimator_recovers_known_value_within_its_interval(estimator):
    log = synthetic_log(seed=1)
    # A deliberately wrong reward model: DR must still be unbiased through its IPS correction.
    wrong = np.full_like(log["q"], 0.3)
    if estimator == "ips":
        est = ips(log["rewards"], log["p0"], log["pe"], seed=0)
    elif estimator == "snips":
        est = snips(log["rewards"], log["p0"], log["pe"], seed=0)
    else:
        est = doubly_robust(log["rewards"], log["actions"], log["p0"], log["target"], wrong, seed=0)
    assert est.covers(log["truth"]), (est, log["truth"])
    assert est.relative_error(log["truth"]) < 0.1
    assert est.ci[0] < est.value < est.ci[1]


def test_intervals_cover_the_truth_about_95_percent_of_the_time():
    covered = {"ips": 0, "snips": 0}
    errors = []
    for seed in range(20):
        log = synthetic_log(seed=100 + seed, n=1500)
        a = ips(log["rewards"], log["p0"], log["pe"], n_bootstrap=300, seed=seed)
        b = snips(log["rewards"], log["p0"], log["pe"], n_bootstrap=300, seed=seed)
        covered["ips"] += a.covers(log["truth"])
        covered["snips"] += b.covers(log["truth"])
        errors.append(a.value - log["truth"])
    # 95% intervals over 20 logs: at least 16 should cover (P(<16) < 2% for a true 95% interval).
    assert covered["ips"] >= 16 and covered["snips"] >= 16, covered
    # Unbiased: the mean error is small compared with its standard error.
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(len(errors))


def test_direct_method_with_the_true_reward_model_is_exact():
    log = synthetic_log(seed=2)
    est = direct_method(log["target"], log["q"])
    assert est.value == pytest.approx(log["truth"], rel=1e-12)


def test_slate_estimates_sum_over_slots():
    rng = np.random.default_rng(3)
    n, k, c = 3000, 3, 5
    q = rng.uniform(0.05, 0.5, size=(n, k, c))
    p0 = np.full((n, k, c), 1.0 / c)
    target = _softmax(3.0 * q)
    actions = rng.integers(0, c, size=(n, k))
    rewards = (rng.random((n, k)) < np.take_along_axis(q, actions[..., None], axis=2)[..., 0]).astype(float)
    pe = np.take_along_axis(target, actions[..., None], axis=2)[..., 0]
    truth = float((target * q).sum(axis=(1, 2)).mean())
    for est in (ips(rewards, np.full((n, k), 1.0 / c), pe, seed=1),
                snips(rewards, np.full((n, k), 1.0 / c), pe, seed=1),
                doubly_robust(rewards, actions, np.full((n, k), 1.0 / c), target, np.full_like(q, 0.2), seed=1)):
        assert est.covers(truth), (est, truth)
    assert p0.shape == q.shape


def test_replay_recovers_a_deterministic_policy_on_a_uniform_log():
    log = synthetic_log(seed=4, n=6000, uniform=True)
    best = log["q"].argmax(axis=1)
    truth = float(log["q"][np.arange(len(best)), best].mean())
    est = replay(log["rewards"], log["actions"], best, seed=0)
    assert est.covers(truth), (est, truth)
    weighted = replay(log["rewards"], log["actions"], best, log["p0"], seed=0)
    assert weighted.value == pytest.approx(est.value)


def test_reward_model_learns_slot_effects():
    rng = np.random.default_rng(5)
    n = 4000
    x = rng.normal(size=(n, 2))
    slots = rng.integers(0, 2, size=n)
    p = 1 / (1 + np.exp(-(x[:, 0] - 1.0 - slots)))
    y = (rng.random(n) < p).astype(float)
    model = RewardModel().fit(x, slots, y, n_slots=2)
    pred = model.predict(np.array([[2.0, 0.0], [-2.0, 0.0]]))
    assert pred.shape == (2, 2)
    assert pred[0, 0] > pred[1, 0] and pred[0, 0] > pred[0, 1]


def test_reward_model_predicts_rare_rewards_at_their_rate():
    # Clicks at about 1 in 1,500 slots: the unpenalised intercept keeps the mean prediction at the
    # observed rate (penalised per-slot intercepts nearly doubled it).
    rng = np.random.default_rng(0)
    n = 120_000
    x = rng.normal(size=(n, 5))
    slots = rng.integers(0, 10, size=n)
    y = (rng.random(n) < 0.0005 * np.exp(0.3 * x[:, 0])).astype(float)
    pred = RewardModel().fit(x, slots, y, n_slots=10).predict(x)[np.arange(n), slots]
    assert pred.mean() == pytest.approx(y.mean(), rel=0.1)


GOOD = {"rewards": [1.0, 0.0, 1.0], "logging_propensity": [0.5, 0.25, 0.5], "target_propensity": [1.0, 0.0, 0.5]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"logging_propensity": [0.5, 0.25, 0.0]},
         "logging_propensity must be probabilities in (0, 1]; 1 values are not (first: 0.0 at row 2)."),
        ({"logging_propensity": [1.5, 0.25, 0.5]},
         "logging_propensity must be probabilities in (0, 1]; 1 values are not (first: 1.5 at row 0)."),
        ({"logging_propensity": [0.5, np.nan, np.nan]},
         "logging_propensity must be probabilities in (0, 1] (not NaN); 2 values are not (first: nan at row 1)."),
        ({"target_propensity": [1.0, -0.1, 0.5]},
         "target_propensity must be probabilities in [0, 1]; 1 values are not (first: -0.1 at row 1)."),
        ({"rewards": [1.0, np.inf, 0.0]},
         "rewards must be finite numbers; 1 values are not (first: inf at row 1)."),
        ({"logging_propensity": [0.5, 0.25]},
         "rewards, logging_propensity and target_propensity must have the same shape; got (3,), (2,) and (3,)."),
    ],
)
@pytest.mark.parametrize("estimator", [ips, snips])
def test_invalid_inputs_raise_data_errors_naming_the_problem(estimator, change, message):
    with pytest.raises(DataError) as info:
        estimator(**{**GOOD, **change})
    assert str(info.value) == message


def test_one_request_per_group_resamples_exactly_like_requests():
    log = synthetic_log(seed=3, n=500)
    plain = ips(log["rewards"], log["p0"], log["pe"], n_bootstrap=200, seed=4)
    grouped = ips(log["rewards"], log["p0"], log["pe"], n_bootstrap=200, seed=4, groups=np.arange(500))
    assert grouped.ci == plain.ci and grouped.value == plain.value


def test_resampling_shoppers_covers_when_a_shoppers_requests_are_correlated_and_requests_do_not():
    # 100 shoppers with 20 slates each and their own click rate (Beta(2, 8)): the slates of one
    # shopper are correlated (design effect about 2.7), so an interval that resamples slates one
    # by one is too narrow by about 1.65x; resampling shoppers is what keeps 95%.
    covered = {"slates": 0, "shoppers": 0}
    reps, n_shoppers, each = 200, 100, 20
    shopper = np.repeat(np.arange(n_shoppers), each)
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        rate = rng.beta(2.0, 8.0, n_shoppers)
        rewards = (rng.random(n_shoppers * each) < rate[shopper]).astype(float)
        ones = np.ones_like(rewards)
        for resample, groups in (("slates", None), ("shoppers", shopper)):
            est = ips(rewards, ones, ones, n_bootstrap=200, seed=rep, groups=groups)
            covered[resample] += est.covers(0.2)  # the population's mean rate, 2 / (2 + 8)
    assert covered["shoppers"] / reps >= 0.9, covered
    assert covered["slates"] / reps <= 0.85, covered


def test_groups_must_label_every_request():
    with pytest.raises(DataError, match=r"groups must have one label per request, shape \(3,\)"):
        ips([1.0, 0.0, 1.0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], groups=[1, 2])


def test_empty_logs_and_bad_bootstrap_settings_are_rejected():
    with pytest.raises(EmptyDataError, match="at least one logged request"):
        ips([], [], [])
    with pytest.raises(ConfigError) as info:
        ips(**GOOD, n_bootstrap=5)
    assert str(info.value) == (
        "The 'n_bootstrap' parameter of off-policy estimation must be an int in [10, 1000000]. Got 5 instead."
    )


def test_doubly_robust_checks_actions_and_distributions():
    dist = np.full((2, 1, 3), 1 / 3)
    hat = np.zeros((2, 1, 3))
    with pytest.raises(DataError, match=r"actions must be candidate columns, integers in \[0, 3\)"):
        doubly_robust([[1.0], [0.0]], [[0], [3]], [[0.5], [0.5]], dist, hat)
    with pytest.raises(DataError, match="target_dist must sum to at most 1"):
        direct_method(np.full((2, 1, 3), 0.5), hat)
    with pytest.raises(DataError, match="target_dist and reward_hat must have the same shape"):
        direct_method(dist, np.zeros((2, 1, 4)))


def test_replay_needs_matching_events():
    with pytest.raises(DataError, match="no logged event matches the target policy in slot 0"):
        replay([1.0, 0.0], [0, 1], [2, 2])
