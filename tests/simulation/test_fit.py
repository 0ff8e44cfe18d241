"""Fitting the weight rule's coefficients by policy search, and the egreedy explorer it drives."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cma")

from shoprec.errors import ConfigError
from shoprec.explore import Candidates, Policy, PolicyConfig, SlateConfig
from shoprec.explore.weighting import WeightConfig
from shoprec.simulation.fit import COEFFICIENTS, FitConfig, fit_weight_rule

TARGET = np.array([0.5, -1.0, 2.0, 0.0, 1.5])


def _distance_objective(calls: list[int]):
    def objective(configs: list[WeightConfig]) -> list[float]:
        calls.append(len(configs))
        return [-float(np.sum((np.array([getattr(c, k) for k in COEFFICIENTS]) - TARGET) ** 2)) for c in configs]
    return objective


def test_the_fit_finds_the_coefficients_that_maximise_a_known_objective():
    calls: list[int] = []
    fit = fit_weight_rule(_distance_objective(calls), config=FitConfig(generations=40, population=8, sigma=1.0))
    found = np.array([getattr(fit.best, k) for k in COEFFICIENTS])
    np.testing.assert_allclose(found, TARGET, atol=0.25)
    assert calls == [1] + [8] * 40  # the start alone, then one batch per generation
    assert len(fit.evaluated) == 1 + 8 * 40


def test_the_fit_starts_from_the_given_rule_and_never_returns_worse_than_it():
    start = WeightConfig(base=0.5, history=-1.0, variance=2.0, drift=0.0, payoff=1.5, history_scale=7.0)
    fit = fit_weight_rule(_distance_objective([]), start, FitConfig(generations=1, population=4))
    assert fit.evaluated[0] == (tuple(TARGET), 0.0)
    assert fit.start_value == 0.0 and fit.best_value == 0.0
    assert fit.best.history_scale == 7.0  # signal settings are not fitted


def test_the_same_search_seed_gives_the_same_fit():
    a = fit_weight_rule(_distance_objective([]), config=FitConfig(generations=2, seed=3))
    b = fit_weight_rule(_distance_objective([]), config=FitConfig(generations=2, seed=3))
    assert a.to_dict() == b.to_dict()


def test_coefficients_stay_inside_the_bound():
    fit = fit_weight_rule(lambda cs: [c.base for c in cs], config=FitConfig(generations=10, bound=2.0))
    assert all(abs(v) <= 2.0 + 1e-9 for x, _ in fit.evaluated for v in x)


@pytest.mark.parametrize("bad", [[float("nan")], [], [1.0, 2.0]])
def test_an_objective_that_does_not_return_one_finite_value_per_candidate_is_refused(bad):
    with pytest.raises(ConfigError, match="must return one finite value per candidate"):
        fit_weight_rule(lambda cs: bad, config=FitConfig(generations=1))


@pytest.mark.parametrize("field,value", [("generations", 0), ("population", 1), ("sigma", 0.0), ("seed", -1),
                                         ("generations", 2.5)])
def test_bad_fit_settings_are_refused_by_name(field, value):
    with pytest.raises(ConfigError, match=f"'{field}' parameter of FitConfig"):
        FitConfig(**{field: value})


def test_the_egreedy_explorer_explores_at_the_weight_rule_s_own_weight():
    rng = np.random.default_rng(0)
    n, c = 8, 30
    features = rng.standard_normal((c, 4))
    cand = Candidates.from_items(np.stack([rng.permutation(c) for _ in range(n)]))
    scores = rng.standard_normal((n, c))
    history = rng.integers(0, 60, n)
    slate = SlateConfig(k=5, explore_budget=2)
    weights = {}
    for explorer in ("thompson", "egreedy"):
        policy = Policy(PolicyConfig(kind="dynamic", explorer=explorer, slate=slate), features, n, history_length=history)
        weights[explorer] = policy.recommend(np.arange(n), cand, scores, np.random.default_rng(1)).weight
    np.testing.assert_allclose(weights["egreedy"], weights["thompson"])
    assert np.ptp(weights["egreedy"]) > 0  # per shopper: longer histories explore less
    assert PolicyConfig(kind="dynamic", explorer="egreedy").epsilon_greedy
    assert not PolicyConfig(kind="dynamic", explorer="egreedy").monte_carlo
