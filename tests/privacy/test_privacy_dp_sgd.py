"""DP-SGD helpers: budgets are validated, impossible ones refused, spent epsilon reported."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shoprec.errors import ConfigError
from shoprec.privacy.accountant import (
    PrivacyReport,
    check_budget,
    default_delta,
    noise_multiplier_for,
    plan_dp_sgd,
)
from shoprec.privacy.dp import train_per_user


@pytest.mark.parametrize(
    ("epsilon", "delta", "message"),
    [
        (0.0, None, "must be a number > 0"),
        (-1.0, None, "must be a number > 0"),
        (float("nan"), None, "must be a number > 0"),
        ("8", None, "must be a number > 0"),
        (True, None, "must be a number > 0"),
        (1.0, 0.0, r"must be in \(0, 1/n\)"),
        (1.0, 0.01, r"must be in \(0, 1/n\) = \(0, 0.01\)"),
        (1.0, 0.5, "allows releasing a whole shopper's data"),
        (1.0, "small", "target_delta"),
    ],
)
def test_bad_budgets_are_refused_with_a_message_naming_the_parameter(epsilon, delta, message):
    with pytest.raises(ConfigError, match=message):
        check_budget(epsilon, delta, n_users=100)


def test_no_epsilon_or_infinity_means_no_privacy():
    assert check_budget(None, None, 100) == (math.inf, 0.0)
    assert check_budget(math.inf, None, 100) == (math.inf, 0.0)


def test_default_delta_is_below_one_over_n():
    for n in (2, 10, 6040, 10**6):
        assert default_delta(n) < 1.0 / n
    assert check_budget(1.0, None, 6040)[1] == pytest.approx(6040**-1.1)


def test_a_budget_needing_more_noise_than_allowed_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"cannot be met .* max_noise_multiplier=5, spends epsilon="):
        plan_dp_sgd(1000, batch_size=500, epochs=100, target_epsilon=0.05, max_noise_multiplier=5.0)


def test_a_budget_beyond_any_noise_is_refused():
    with pytest.raises(ConfigError, match="cannot be met"):
        noise_multiplier_for(1e-9, 1e-5, 1.0, 10_000, max_noise_multiplier=1e9)


def test_the_planned_noise_meets_the_budget_and_more_epsilon_needs_less_noise():
    strict = plan_dp_sgd(6040, 512, 10, 1.0)
    loose = plan_dp_sgd(6040, 512, 10, 8.0)
    assert strict.noise_multiplier > loose.noise_multiplier > 0
    assert strict.sample_rate == pytest.approx(1 / 12)
    assert strict.steps == 120


class _Mean(torch.nn.Module):
    """Per-example squared error of a learned vector against the example: a private mean."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 4, bias=False)

    def forward(self, x):
        pred = self.lin(torch.ones(len(x), 1))
        return ((pred - x) ** 2).sum(dim=1)


def test_private_training_reports_the_accountants_epsilon_at_most_the_target():
    x = torch.as_tensor(np.random.default_rng(0).normal(1.0, 0.1, (200, 4)), dtype=torch.float32)
    model = _Mean()
    report, log = train_per_user(
        model, (x,), target_epsilon=2.0, target_delta=None, max_grad_norm=1.0, batch_size=50,
        epochs=3, lr=0.1, seed=0,
    )
    assert report.mechanism == "dp-sgd" and report.unit == "user"
    assert 0 < report.epsilon <= 2.0 + 0.01
    assert report.delta == pytest.approx(default_delta(200))
    assert report.steps == 12 and report.sample_rate == pytest.approx(0.25)
    assert [e["epoch"] for e in log] == [1, 2, 3]
    assert log[-1]["epsilon"] == pytest.approx(report.epsilon)
    assert not hasattr(model.lin.weight, "grad_sample") or model.lin.weight.grad_sample is None


def test_non_private_training_reports_infinite_epsilon_and_learns():
    x = torch.full((64, 4), 2.0)
    model = _Mean()
    report, _ = train_per_user(
        model, (x,), target_epsilon=None, target_delta=None, max_grad_norm=1.0, batch_size=16,
        epochs=30, lr=0.1,
    )
    assert math.isinf(report.epsilon) and report.mechanism == "none" and report.delta == 0.0
    np.testing.assert_allclose(model.lin.weight.detach().numpy().ravel(), 2.0, atol=0.05)


def test_privacy_report_round_trips_through_saved_state():
    report = PrivacyReport("dp-sgd", 1.5, 1e-5, noise_multiplier=2.0, steps=10, extra={"a": 1})
    assert PrivacyReport.from_state(report.state()) == report
    none = PrivacyReport("none", math.inf, 0.0)
    assert PrivacyReport.from_state(none.state()) == none
    assert none.as_dict()["epsilon"] == "inf"
