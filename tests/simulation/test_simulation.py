"""The simulated store: calibrated, reproducible, honest about what the policy may know."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shoprec.errors import ConfigError
from shoprec.explore import PolicyConfig, examination
from shoprec.simulation import (
    SimulatedStore,
    StoreConfig,
    off_policy_validation,
    run_experiment,
    simulate,
)

SMALL = StoreConfig(n_shoppers=40, truth_model="svd", truth_factors=8, model_factors=8, feature_dim=4,
                    content="synthetic", new_item_fraction=0.2, new_item_every=2, new_item_batches=3,
                    drift_rounds=6, top_ctr=0.2)


@pytest.fixture
def store(synthetic_shop) -> SimulatedStore:
    return SimulatedStore.build(synthetic_shop, SMALL, seed=0)


def test_same_seed_same_store_and_same_run(synthetic_shop, store):
    again = SimulatedStore.build(synthetic_shop, SMALL, seed=0)
    np.testing.assert_array_equal(store.exploit_scores, again.exploit_scores)
    np.testing.assert_array_equal(store.arrival, again.arrival)
    for spec in ("thompson", "egreedy:0.3", "dynamic"):
        a = simulate(store, PolicyConfig.parse(spec), 8, seed=3)
        b = simulate(again, PolicyConfig.parse(spec), 8, seed=3)
        np.testing.assert_array_equal(a.clicks, b.clicks)
        np.testing.assert_array_equal(a.explore_share, b.explore_share)
        assert a.summary() == b.summary()


def test_another_seed_gives_another_store(synthetic_shop, store):
    other = SimulatedStore.build(synthetic_shop, SMALL, seed=1)
    assert not np.array_equal(store.shopper_ids, other.shopper_ids) or not np.array_equal(store.arrival, other.arrival)


def test_the_best_item_of_a_shopper_has_the_configured_click_rate(store):
    p = store.click_probability(0)
    assert p.max(axis=1).mean() == pytest.approx(SMALL.top_ctr, rel=1e-3)
    assert (p[:, store.arrival > 0] == 0).all()  # new items are not there yet


def test_drift_turns_tastes_and_fatigue_lowers_click_rates(store):
    moved = store.users_at(SMALL.drift_rounds)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), np.linalg.norm(store.true_users, axis=1))
    changed = ~np.isclose(moved, store.true_users).all(axis=1)
    np.testing.assert_array_equal(changed, store.drifting & (SMALL.drift_strength > 0))
    exposure = np.zeros((store.n_shoppers, store.n_items), np.float32)
    exposure[:, 0] = 2.0
    tired = store.click_probability(0, exposure)
    np.testing.assert_allclose(tired[:, 0], store.click_probability(0)[:, 0] * SMALL.fatigue**2, rtol=1e-5)


def test_new_items_are_shown_only_after_they_arrive_and_the_oracle_is_never_beaten(store):
    res = simulate(store, PolicyConfig.parse("thompson"), 8, seed=0, record_log=True)
    log = res.log
    shown = np.take_along_axis(log.candidates.items, log.columns, axis=1)
    assert (store.arrival[shown] <= log.round[:, None]).all()
    assert (res.expected <= res.oracle + 1e-9).all()
    assert res.new_share[-1] > 0 and res.coverage > 0
    p = log.propensities
    assert ((p > 0) & (p <= 1)).all()
    np.testing.assert_allclose(log.exam, examination(10))


def test_summary_reports_every_metric(store):
    summary = simulate(store, PolicyConfig.parse("egreedy:0.2"), 5, seed=0).summary()
    assert set(summary) == {"reward", "expected_reward", "purchases", "regret", "early_reward", "early_regret", "coverage",
                            "new_item_exposure", "new_item_coverage", "tail_exposure", "diversity", "explore_share",
                            "late_reward", "discovered", "new_first_click"}
    assert summary["regret"] >= 0 and 0 < summary["explore_share"] < 0.3
    assert 0 <= summary["late_reward"] <= summary["reward"] and 0 <= summary["discovered"] <= summary["coverage"]


def test_discovered_corpus_and_first_click_wait_are_counted_from_the_clicks(store):
    res = simulate(store, PolicyConfig.parse("thompson"), 12, seed=1)
    assert 0 < res.discovered <= 1
    arrived = store.new_items[store.arrival[store.new_items] < 12]
    assert len(arrived) and 0 <= res.new_first_click <= 12 - store.arrival[arrived].min()


def test_off_policy_estimates_cover_the_truth_on_a_uniform_log(store):
    targets = [PolicyConfig.parse("greedy"), PolicyConfig.parse("egreedy:0.3")]
    logger = PolicyConfig(kind="greedy", uniform_mix=1.0)
    result = off_policy_validation(store, logger, targets, 12, seed=0, n_bootstrap=200)
    assert set(result) == {"greedy", "egreedy:0.3"}
    covered = []
    for by_est in result.values():
        assert set(by_est) == {"ips", "snips", "dm", "dr", "replay"}
        for name, v in by_est.items():
            assert v["truth"] > 0 and v["ci95"][0] <= v["estimate"] <= v["ci95"][1]
            if name != "dm":  # DM's interval ignores its model's bias
                covered.append(v["covered"])
    assert np.mean(covered) >= 0.75


def test_a_shadow_weight_equal_to_the_loggers_own_is_the_logger_itself(store):
    # Same model state, same weight: the target's probabilities of the logged slots are the
    # logged propensities, so every importance weight is 1 and IPS is the logged mean reward.
    logger = PolicyConfig.parse("egreedy:0.3")
    result = off_policy_validation(store, logger, [], 10, seed=4, n_bootstrap=50, shadow_weights=(0.3,))
    log = simulate(store, logger, 10, seed=4, record_log=True).log
    complete = (log.columns >= 0).all(axis=1)
    assert result["weight:0.3"]["ips"]["estimate"] == pytest.approx(log.rewards[complete].sum(axis=1).mean())
    assert result["weight:0.3"]["snips"]["estimate"] == pytest.approx(result["weight:0.3"]["ips"]["estimate"])


def test_shadow_weights_of_a_learning_dynamic_logger_are_estimated_without_deficient_support(store):
    # The served kind of logger: the dynamic rule with epsilon-greedy slots, learning online.
    # Asking what greedy or a fixed weight would have earned in its own state keeps every such
    # slot supported, so IPS and DR cover the truth.
    logger = PolicyConfig.parse("dynamic", explorer="egreedy")
    covered = []
    for seed in range(3):
        result = off_policy_validation(store, logger, [], 12, seed=seed, n_bootstrap=200, shadow_weights=(0.0, 0.2))
        assert set(result) == {"weight:0", "weight:0.2"}
        for by_est in result.values():
            covered += [by_est[e]["covered"] for e in ("ips", "dr")]
            assert by_est["dr"]["relative_error"] < 0.5
    assert np.mean(covered) >= 0.75


def test_shadow_weights_need_exact_logger_distributions(store):
    with pytest.raises(ConfigError, match="epsilon-greedy"):
        off_policy_validation(store, PolicyConfig.parse("thompson"), [], 2, shadow_weights=(0.0,))


def test_experiment_reports_what_the_cli_writes(synthetic_shop):
    exp = run_experiment(synthetic_shop, [PolicyConfig.parse("greedy"), PolicyConfig.parse("thompson")], 4, [0, 1],
                         SMALL, ope_rounds=3, n_bootstrap=50, n_samples=20)
    out = json.loads(json.dumps(exp.to_json()))
    for name in ("greedy", "thompson"):
        row = out[name]
        assert {"reward_mean", "reward_ci95", "regret_mean", "new_item_exposure", "coverage", "explore_share"} <= set(row)
        assert row["reward_ci95"][0] <= row["reward_mean"] <= row["reward_ci95"][1]
        for est in ("ips", "snips", "dm", "dr"):
            assert {"estimate", "ci95", "truth", "relative_error"} <= set(out["ope"][name][est])
    assert exp.series["greedy"]["reward"].shape == (4,)


def test_cli_prints_tables_and_writes_json_and_plot(tmp_path, synthetic_shop, capsys):
    from shoprec.cli import main

    d = synthetic_shop
    path = tmp_path / "log.csv"
    pd.DataFrame({"user": d.users.id_of(d.user_idx), "item": d.items.id_of(d.item_idx),
                  "timestamp": d.timestamp}).to_csv(path, index=False)
    code = main(["simulate", "--policies", "greedy,dynamic", "--rounds", "3", "--seeds", "2", "--data", str(path),
                 "--format", "csv", "--shoppers", "30", "--truth-model", "svd", "--content", "synthetic",
                 "--ope-rounds", "2", "--bootstrap", "50", "--propensity-samples", "20",
                 "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"), "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) >= {"greedy", "dynamic", "ope", "settings"}
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert "| dynamic |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"truth_model": "nmf"}, "The 'truth_model' parameter of StoreConfig must be one of ['als', 'svd']. Got 'nmf' instead."),
        ({"top_ctr": 0.0}, "The 'top_ctr' parameter of StoreConfig must be a number in [0.0001, 0.9]. Got 0.0 instead."),
    ],
)
def test_store_config_is_validated(kwargs, message):
    with pytest.raises(ConfigError) as info:
        StoreConfig(**kwargs)
    assert str(info.value) == message
