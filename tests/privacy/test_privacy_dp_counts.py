"""DP counts: the contribution bound holds and the noise has the calibrated scale."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Interactions
from shoprec.errors import ConfigError
from shoprec.privacy.dp_counts import (
    bounded_pairs,
    dp_item_counts,
    dp_recent_counts,
    gaussian_sigma,
)


def _shop(n_users=200, n_items=400, per_user=30, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = [
        (f"u{u}", f"i{i}", "view", 1_700_000_000 + t * 86_400)
        for u in range(n_users)
        for t, i in enumerate(rng.choice(n_items, per_user, replace=False))
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    return Dataset.from_interactions(Interactions.from_frame(frame))


def test_each_shopper_contributes_at_most_c_distinct_items():
    data = _shop()
    users, items = bounded_pairs(data, 5, seed=1)
    assert np.bincount(users).max() == 5
    assert len(set(zip(users.tolist(), items.tolist()))) == len(users)


def test_adding_a_shopper_changes_no_other_shoppers_kept_items():
    # The sensitivity c holds only if each shopper's kept subset depends on their own data: a
    # newcomer (sorted first, so every index shifts) must leave everyone else's subset as it was.
    data = _shop()
    frame = pd.DataFrame(
        [("a-newcomer", f"i{i}", "view", 1_700_000_000 + i) for i in range(30)]
        + [(u, i, "view", t) for u, i, t in zip(data.users.ids[data.user_idx], data.items.ids[data.item_idx],
                                                data.timestamp)],
        columns=["user", "item", "event", "timestamp"])
    bigger = Dataset.from_interactions(Interactions.from_frame(frame))

    def kept(d):
        users, items = bounded_pairs(d, 5, seed=0)
        return {(str(d.users.ids[u]), str(d.items.ids[i])) for u, i in zip(users, items)}

    before, after = kept(data), kept(bigger)
    assert {p for p in after if p[0] != "a-newcomer"} == before
    assert sum(p[0] == "a-newcomer" for p in after) == 5


def test_laplace_noise_has_scale_c_over_epsilon():
    data = _shop()
    exact = np.bincount(bounded_pairs(data, 10, seed=0)[1], minlength=data.n_items).astype(float)
    noise = np.concatenate(
        [dp_item_counts(data, 2.0, max_items_per_user=10, seed=s).counts - exact for s in range(20)]
    )
    # Clipping at zero hides part of the negative tail: compare the spread of the upper half.
    upper = noise[noise > 0]
    assert upper.mean() == pytest.approx(10 / 2.0, rel=0.1)  # E|Laplace(b)| given > 0 is b


def test_gaussian_sigma_matches_the_analytic_mechanism():
    sigma = gaussian_sigma(1.0, 1e-5, 1.0)
    assert sigma == pytest.approx(3.7306, rel=1e-3)  # Balle & Wang 2018, epsilon=1, delta=1e-5
    a, b = 1 / (2 * sigma), sigma
    assert norm.cdf(a - b) - math.e * norm.cdf(-a - b) <= 1e-5
    assert gaussian_sigma(1.0, 1e-5, 4.0) == pytest.approx(4 * sigma, rel=1e-3)


def test_gaussian_counts_report_epsilon_and_delta():
    result = dp_item_counts(_shop(), 1.0, mechanism="gaussian", max_items_per_user=4)
    assert result.report.mechanism == "gaussian"
    assert result.report.epsilon == 1.0 and 0 < result.report.delta < 1 / 200
    assert result.report.extra["l2_sensitivity"] == 2.0
    assert (result.counts >= 0).all()


def test_recent_counts_only_count_the_window():
    data = _shop(per_user=30)
    exact = dp_recent_counts(data, None, window_days=3)
    # 3 days of one event per day per shopper: 3 items each.
    assert exact.counts.sum() == 3 * data.n_users


@pytest.mark.parametrize("epsilon", [0, -1.0, float("nan")])
def test_a_non_positive_budget_is_refused(epsilon):
    with pytest.raises(ConfigError, match="epsilon"):
        dp_item_counts(_shop(n_users=5), epsilon)


def test_an_unknown_mechanism_is_refused():
    with pytest.raises(ConfigError, match="'mechanism'"):
        dp_item_counts(_shop(n_users=5), 1.0, mechanism="exponential")
