"""DP-ALS: private item factors with each shopper's factor from their own items (joint DP).

What the guarantee rests on is tested directly: one shopper moves an item step's release by no
more than the sensitivity the noise is calibrated to, the zCDP budget converts to the (epsilon,
delta) asked for, and a private fit spends exactly that budget.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from shoprec.errors import ConfigError
from shoprec.privacy.discrete import cdp_delta
from shoprec.privacy.dpals import (
    DPALS,
    als_sensitivity,
    item_statistics,
    shopper_factors,
    zcdp_rho_for,
)


def _capped_rows(n_users: int, n_items: int, m: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = [rng.choice(n_items, size=rng.integers(1, m + 1), replace=False) for _ in range(n_users)]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    return sp.csr_matrix((np.ones(indptr[-1]), np.concatenate(rows), indptr), shape=(n_users, n_items))


@pytest.mark.parametrize("released", [False, True])
def test_one_shopper_moves_an_item_steps_release_by_at_most_the_sensitivity(released):
    m, d = 6, 4
    x = _capped_rows(40, 15, m, seed=1)
    v = np.random.default_rng(2).standard_normal((15, d)) * 3  # large: the clip must bind
    u = shopper_factors(x, v, alpha=0.1, l2=0.01, clip=True)
    assert np.linalg.norm(u, axis=1).max() <= 1 + 1e-9
    full = item_statistics(x.T.tocsr(), u, released)
    upper = np.triu_indices(d)
    worst = 0.0
    for gone in range(x.shape[0]):
        # The others' factors come from their own items and v only: removing one keeps them.
        rest = np.delete(np.arange(x.shape[0]), gone)
        part = item_statistics(x[rest].T.tocsr(), u[rest], released)
        moved = np.sum((full[0] - part[0]) ** 2) + np.sum((full[1] - part[1])[upper] ** 2)
        if released:
            moved += np.sum((full[2] - part[2])[:, upper[0], upper[1]] ** 2)
        worst = max(worst, math.sqrt(moved))
    assert worst <= als_sensitivity(m, released) + 1e-9


@pytest.mark.parametrize("epsilon,delta", [(8.0, 1e-5), (2.0, 1e-6), (0.5, 1e-4)])
def test_the_zcdp_budget_implies_the_epsilon_and_delta_asked_for(epsilon, delta):
    rho = zcdp_rho_for(epsilon, delta)
    assert cdp_delta(rho, epsilon) <= delta
    assert cdp_delta(rho * 1.01, epsilon) > delta  # and it is the largest such rho


def test_a_private_fit_spends_its_budget_and_records_the_release(tiny_shop):
    model = DPALS(factors=4, iterations=3, l2=1.0, max_items_per_user=3, target_epsilon=4.0,
                  target_delta=1e-3, seed=0).fit(tiny_shop)
    report = model.privacy
    assert report.private and report.epsilon == 4.0 and report.unit == "user"
    assert report.extra["rho"] == pytest.approx(zcdp_rho_for(4.0, 1e-3))
    assert report.extra["delta_at_rho"] <= 1e-3 * (1 + 1e-9)
    assert report.extra["l2_sensitivity"] == pytest.approx(als_sensitivity(3, released_item_gramians=False))


def test_noise_depends_on_the_seed_only_when_private(tiny_shop):
    def factors(seed, eps):
        return DPALS(factors=4, iterations=2, l2=1.0, max_items_per_user=3, target_epsilon=eps,
                     target_delta=1e-3, seed=seed, max_modelled=None).fit(tiny_shop).item_factors_

    np.testing.assert_array_equal(factors(0, 8.0), factors(0, 8.0))
    assert not np.allclose(factors(0, 8.0), factors(1, 8.0))


def test_without_privacy_it_is_plain_implicit_als_on_every_item(tiny_shop):
    model = DPALS(factors=4, iterations=10, alpha=0.1, l2=0.1, max_items_per_user=None, max_modelled=None).fit(tiny_shop)
    assert not model.privacy.private and len(model.keep_) == tiny_shop.n_items
    # Each shopper's factor is the ridge solution against the final item factors.
    x = tiny_shop.matrix(binary=True)
    u = shopper_factors(x, model.item_factors_, 0.1, 0.1, clip=False)
    v = model.item_factors_.astype(np.float64)
    for row in range(x.shape[0]):
        seen = x[row].indices
        lhs = v[seen].T @ v[seen] + 0.1 * v.T @ v + 0.1 * np.eye(4)
        np.testing.assert_allclose(lhs @ u[row], v[seen].sum(axis=0), atol=1e-8)


def test_a_private_run_needs_a_contribution_bound(tiny_shop):
    with pytest.raises(ConfigError, match="max_items_per_user"):
        DPALS(target_epsilon=8.0, max_items_per_user=None).fit(tiny_shop)
    with pytest.raises(ConfigError, match="item_gramian"):
        DPALS(item_gramian="exact").fit(tiny_shop)


def test_norm_power_one_ranks_by_the_cosine_with_the_released_factors(tiny_shop):
    params = {"factors": 4, "iterations": 2, "l2": 1.0, "max_items_per_user": 3, "target_epsilon": 8.0,
              "target_delta": 1e-3, "max_modelled": None, "seed": 0}
    dot = DPALS(**params).fit(tiny_shop)
    cosine = DPALS(**params, norm_power=1.0).fit(tiny_shop)
    np.testing.assert_array_equal(dot.item_factors_, cosine.item_factors_)  # the same release
    history = tiny_shop.matrix(binary=True)[:1]
    u = shopper_factors(history, dot.item_factors_, dot.config_.alpha, dot.config_.l2, clip=True)
    v = dot.item_factors_.astype(np.float64)
    expected = (u @ (v / np.linalg.norm(v, axis=1, keepdims=True)).T)[0]
    got = cosine.score_users(np.array([0]))[0]
    np.testing.assert_array_equal(np.argsort(-got, kind="stable"), np.argsort(-expected, kind="stable"))


def test_text_init_starts_from_the_titles_principal_directions_and_costs_no_budget(tiny_shop, monkeypatch):
    import shoprec.models.transformer as transformer_module

    rng = np.random.default_rng(0)
    titles = rng.standard_normal((tiny_shop.n_items, 12)).astype(np.float32)
    monkeypatch.setattr(transformer_module, "item_text", lambda data, cache_dir: titles)
    params = {"factors": 3, "iterations": 1, "l2": 1.0, "max_items_per_user": 3, "target_epsilon": 8.0,
              "target_delta": 1e-3, "max_modelled": None, "seed": 0}
    text = DPALS(**params, init="text").fit(tiny_shop)
    plain = DPALS(**params).fit(tiny_shop)
    assert not np.allclose(text.item_factors_, plain.item_factors_)
    assert text.privacy.extra["rho"] == pytest.approx(plain.privacy.extra["rho"])  # same spend
