"""The private models: their privacy reports and refused budgets (their conformance classes are
in tests/models/test_conformance.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shoprec.errors import ConfigError
from shoprec.models.base import Recommender
from shoprec.privacy.dp_counts import DPPopularity
from shoprec.privacy.dpmf import DPMF
from shoprec.privacy.dptransformer import DPTransformer


def test_dp_transformer_trains_privately_and_keeps_its_report_when_saved(tiny_shop, tmp_path):
    model = DPTransformer(d=8, n_layers=1, max_len=5, epochs=2, batch_size=3, target_epsilon=4.0).fit(tiny_shop)
    assert model.privacy.mechanism == "dp-sgd"
    assert 0 < model.privacy.epsilon <= 4.01
    assert model.privacy.max_items_per_user == 6
    assert not model.item_counts_.any()  # exact item counts are not kept in a private model
    loaded = Recommender.load(model.save(tmp_path / "t.npz"))
    assert loaded.privacy == model.privacy
    np.testing.assert_allclose(loaded.score_history(["i1", "i2"]), model.score_history(["i1", "i2"]), rtol=1e-5)
    losses = loaded.per_user_loss([np.array([0, 1, 2]), np.array([4])])
    assert np.isfinite(losses[0]) and np.isnan(losses[1])


def test_dp_transformer_refuses_partial_fit(tiny_shop):
    model = DPTransformer(d=8, n_layers=1, max_len=5, epochs=1).fit(tiny_shop)
    with pytest.raises(ConfigError, match="privacy budget"):
        model.partial_fit(tiny_shop)


def test_dp_mf_reports_epsilon_within_the_target_and_saves_it(tiny_shop, tmp_path):
    model = DPMF(factors=4, epochs=3, batch_size=2, target_epsilon=3.0).fit(tiny_shop)
    report = model.privacy
    assert report.unit == "user" and report.mechanism == "dp-sgd"
    assert 0 < report.epsilon <= 3.01
    assert report.delta == pytest.approx(6**-1.1)
    assert report.max_items_per_user == 20
    assert Recommender.load(model.save(tmp_path / "m.npz")).privacy == report


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_epsilon": 0.0}, "'target_epsilon' .* must be a number > 0"),
        ({"target_epsilon": -2}, "'target_epsilon' .* must be a number > 0"),
        ({"target_epsilon": 1.0, "target_delta": 0.5}, r"'target_delta' .* must be in \(0, 1/n\)"),
        ({"target_epsilon": 0.01, "epochs": 50, "max_noise_multiplier": 2.0}, "cannot be met"),
        ({"max_grad_norm": 0}, "'max_grad_norm'"),
        ({"accountant": "moments"}, "'accountant'"),
    ],
)
def test_impossible_or_malformed_budgets_fail_at_fit_with_a_clear_error(tiny_shop, params, message):
    with pytest.raises(ConfigError, match=message):
        DPMF(factors=4, epochs=params.pop("epochs", 2), **params).fit(tiny_shop)


def test_a_refused_budget_trains_nothing(tiny_shop):
    model = DPMF(factors=4, epochs=50, target_epsilon=0.01, max_noise_multiplier=2.0)
    with pytest.raises(ConfigError):
        model.fit(tiny_shop)
    assert not hasattr(model, "net_")


def test_private_runs_are_repeatable_for_a_seed(tiny_shop):
    a = DPMF(factors=4, epochs=2, batch_size=2, target_epsilon=2.0, seed=3).fit(tiny_shop)
    b = DPMF(factors=4, epochs=2, batch_size=2, target_epsilon=2.0, seed=3).fit(tiny_shop)
    np.testing.assert_array_equal(a.score_history(["i1"]), b.score_history(["i1"]))


def test_dp_popularity_records_its_budget_beside_the_counts(tiny_shop, tmp_path):
    model = DPPopularity(epsilon=1.0, max_items_per_user=2).fit(tiny_shop)
    assert model.privacy.mechanism == "laplace" and model.privacy.epsilon == 1.0
    loaded = Recommender.load(model.save(tmp_path / "p.npz"))
    assert loaded.privacy == model.privacy
    np.testing.assert_array_equal(loaded.counts_, model.counts_)
    exact = DPPopularity(epsilon=None).fit(tiny_shop)
    assert math.isinf(exact.privacy.epsilon)
