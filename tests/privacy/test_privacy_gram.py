"""The private Gram release and the models on it: the contribution bound, the calibrated noise,
the exact non-private counterparts, saved privacy records and refused budgets (their conformance
classes are in tests/models/test_conformance.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Interactions
from shoprec.errors import ConfigError
from shoprec.models.base import Recommender
from shoprec.models.ease import EASE
from shoprec.models.knn import ItemKNN
from shoprec.privacy.dp_counts import gaussian_sigma
from shoprec.privacy.dpease import DPEASE
from shoprec.privacy.dpknn import DPItemKNN
from shoprec.privacy.gram import (
    denoise_gram,
    gram_sensitivity,
    noise_edge,
    private_gram,
    recent_items_matrix,
    symmetric_noise,
)


def _shop(n_users=120, n_items=60, max_len=40, seed=0) -> Dataset:
    """Random histories of random lengths, with repeated items (a shopper views an item twice)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.integers(0, n_items, rng.integers(1, max_len))):
            rows.append((f"u{u}", f"i{i}", "view", 1_700_000_000 + 60 * t))
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    return Dataset.from_interactions(Interactions.from_frame(frame))


def _released_vector(x_row: np.ndarray, diag_weight: float) -> np.ndarray:
    """One shopper's contribution to what is released: the upper triangle of x x^T, the
    diagonal times diag_weight."""
    outer = np.outer(x_row, x_row)
    outer[np.diag_indices_from(outer)] *= diag_weight
    return outer[np.triu_indices_from(outer)]


# ---- the contribution bound ----------------------------------------------------------------------
def test_each_shopper_keeps_their_m_most_recent_distinct_items():
    frame = pd.DataFrame(
        {"user": ["a"] * 6 + ["b"], "item": ["i1", "i2", "i1", "i3", "i4", "i2", "i5"],
         "event": "view", "timestamp": [1, 2, 3, 4, 5, 6, 1]}
    )
    data = Dataset.from_interactions(Interactions.from_frame(frame))
    x = recent_items_matrix(data, 3)
    kept = set(data.items.id_of(x[data.users.index(["a"])[0]].indices))
    assert kept == {"i2", "i4", "i3"}  # i1 was last seen at t=3, before i3, i4 and i2
    assert set(data.items.id_of(x[data.users.index(["b"])[0]].indices)) == {"i5"}
    assert (x.data == 1).all()
    assert (recent_items_matrix(data, None) != data.matrix(binary=True)).nnz == 0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("m", "diag_weight"), [(1, 1.0), (5, 1.0), (12, 3.0), (30, 0.5)])
def test_a_shoppers_contribution_after_capping_is_within_the_sensitivity_bound(seed, m, diag_weight):
    data = _shop(seed=seed)
    x = recent_items_matrix(data, m).toarray()
    bound = gram_sensitivity(m, diag_weight)
    norms = np.array([np.linalg.norm(_released_vector(row, diag_weight)) for row in x])
    assert (x.sum(axis=1) <= m).all()
    assert norms.max() <= bound + 1e-9
    full = x.sum(axis=1) == m  # a shopper with m items or more reaches the bound exactly
    np.testing.assert_allclose(norms[full], bound)


def test_removing_a_shopper_changes_the_gram_by_their_own_capped_outer_product_only():
    data = _shop(seed=3)
    x = recent_items_matrix(data, 10)
    u = 7
    others = data.subset(data.user_idx != u)
    x_without = recent_items_matrix(others, 10)
    change = (x.T @ x - x_without.T @ x_without).toarray()
    row = x[u].toarray().ravel()
    np.testing.assert_array_equal(change, np.outer(row, row))


# ---- the noise -----------------------------------------------------------------------------------
def test_noise_is_symmetric_and_seeded():
    a = symmetric_noise(1500, 2.0, np.random.default_rng(1))
    np.testing.assert_array_equal(a, a.T)
    np.testing.assert_array_equal(a, symmetric_noise(1500, 2.0, np.random.default_rng(1)))
    assert np.std(a[np.triu_indices(1500)]) == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(("epsilon", "delta", "m", "diag_weight"), [(8.0, 1e-6, 50, 1.0), (2.0, 1e-5, 10, 4.0)])
def test_release_noise_has_the_analytic_gaussian_sigma_for_the_sensitivity(epsilon, delta, m, diag_weight):
    data = _shop(n_users=300, n_items=400, max_len=80, seed=5)
    x = recent_items_matrix(data, m)
    exact = (x.T @ x).toarray()
    release = private_gram(x, epsilon, delta, max_items=m, diag_weight=diag_weight, seed=2)
    sens = gram_sensitivity(m, diag_weight)
    assert release.sensitivity == pytest.approx(sens)
    assert release.sigma == pytest.approx(gaussian_sigma(epsilon, delta, sens))
    # The sigma is the smallest with the (epsilon, delta) privacy profile of the Gaussian mechanism.
    a, b = sens / (2 * release.sigma), epsilon * release.sigma / sens
    assert norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b) == pytest.approx(delta, rel=1e-3)
    noise = release.gram - exact
    off = noise[np.triu_indices(len(noise), 1)]
    assert np.std(off) == pytest.approx(release.sigma, rel=0.02)
    assert abs(np.mean(off)) < 0.02 * release.sigma
    assert np.std(np.diag(noise)) == pytest.approx(release.sigma / diag_weight, rel=0.15)
    np.testing.assert_allclose(release.counts, np.diag(release.gram))
    report = release.report
    assert (report.epsilon, report.delta, report.unit) == (epsilon, delta, "user")
    assert report.mechanism == "gaussian-gram" and report.max_items_per_user == m
    assert report.noise_multiplier == pytest.approx(release.sigma / sens)


def test_the_psd_projection_removes_negative_eigenvalues_and_lowrank_keeps_those_above_the_edge():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((200, 3)) * 10
    gram = (signal @ signal.T + symmetric_noise(200, 1.0, rng)).astype(np.float32)
    psd = denoise_gram(gram.copy(), "psd")
    assert np.linalg.eigvalsh(psd.astype(np.float64)).min() > -1e-3
    low = denoise_gram(gram.copy(), "lowrank", noise_edge(200, 1.0))
    assert np.linalg.matrix_rank(low.astype(np.float64), tol=1e-2 * np.abs(low).max()) == 3


# ---- the models at epsilon = inf are the non-private models ----------------------------------------
def test_dp_ease_without_privacy_gives_exactly_the_scores_of_ease(synthetic_shop):
    ours = DPEASE(l2=10.0, max_items_per_user=None, max_modelled=None).fit(synthetic_shop)
    theirs = EASE(l2=10.0).fit(synthetic_shop)
    users = np.arange(synthetic_shop.n_users)
    np.testing.assert_array_equal(ours.score_users(users), theirs.score_users(users))
    assert not ours.privacy.private and ours.privacy.epsilon == math.inf


def test_dp_item_knn_without_privacy_gives_exactly_the_scores_of_item_knn(synthetic_shop):
    ours = DPItemKNN(neighbors=20, shrink=1.0, max_items_per_user=None, max_modelled=None).fit(synthetic_shop)
    theirs = ItemKNN(neighbors=20, shrink=1.0).fit(synthetic_shop)
    users = np.arange(synthetic_shop.n_users)
    np.testing.assert_array_equal(ours.score_users(users), theirs.score_users(users))


def test_dp_ease_with_a_cap_and_no_noise_is_ease_on_the_capped_histories(synthetic_shop):
    ours = DPEASE(l2=10.0, max_items_per_user=5).fit(synthetic_shop)
    x = recent_items_matrix(synthetic_shop, 5)
    capped = synthetic_shop.subset(np.asarray(x[synthetic_shop.user_idx, synthetic_shop.item_idx]).ravel() > 0)
    theirs = EASE(l2=10.0).fit(capped)
    np.testing.assert_allclose(ours.weights_, theirs.weights_, rtol=1e-5, atol=1e-6)


# ---- private models: their record, saved and loaded ----------------------------------------------
@pytest.mark.parametrize("klass", [DPEASE, DPItemKNN])
def test_a_private_model_keeps_its_privacy_record_when_saved(klass, synthetic_shop, tmp_path):
    model = klass(target_epsilon=4.0, target_delta=1e-4, max_items_per_user=10, denoise="psd").fit(synthetic_shop)
    report = model.privacy
    assert (report.epsilon, report.delta, report.unit, report.mechanism) == (4.0, 1e-4, "user", "gaussian-gram")
    assert report.extra["sigma"] > 0 and report.accountant == "analytic-gaussian"
    loaded = Recommender.load(model.save(tmp_path / "m.npz"))
    assert loaded.privacy == model.privacy
    np.testing.assert_allclose(loaded.score_history(["i1", "i2"]), model.score_history(["i1", "i2"]), rtol=1e-6)


def test_unmodelled_items_score_below_every_modelled_item_in_noisy_count_order(synthetic_shop):
    model = DPEASE(target_epsilon=8.0, max_items_per_user=10, min_count=15.0).fit(synthetic_shop)
    rest = np.setdiff1d(np.arange(synthetic_shop.n_items), model.keep_)
    assert 0 < len(model.keep_) < synthetic_shop.n_items
    scores = model.score_users(np.arange(20))
    assert np.isfinite(scores).all()
    assert (scores[:, rest].max(axis=1) < scores[:, model.keep_].min(axis=1)).all()
    order = rest[np.argsort(-scores[0, rest], kind="stable")]
    assert (np.diff(model.counts_[order]) <= 0).all()


def test_the_same_seed_gives_the_same_release_and_another_seed_another(synthetic_shop):
    def weights(seed):
        return DPEASE(target_epsilon=2.0, max_items_per_user=10, seed=seed).fit(synthetic_shop).weights_

    np.testing.assert_array_equal(weights(1), weights(1))
    assert not np.array_equal(weights(1), weights(2))


# ---- refused budgets -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target_epsilon": 0.0}, "'target_epsilon'.*> 0"),
        ({"target_epsilon": -1.0}, "'target_epsilon'.*> 0"),
        ({"target_epsilon": float("nan")}, "'target_epsilon'.*> 0"),
        ({"target_epsilon": "8"}, "'target_epsilon'.*number"),
        ({"target_epsilon": 8.0, "target_delta": 0.0}, r"'target_delta'.*\(0, 1\)"),
        ({"target_epsilon": 8.0, "target_delta": 1.0}, r"'target_delta'.*\(0, 1\)"),
        ({"target_epsilon": 8.0, "target_delta": 1.5}, "'target_delta'.*"),
        ({"target_epsilon": 8.0, "target_delta": -0.1}, "'target_delta'.*"),
        ({"target_epsilon": 8.0, "max_items_per_user": None}, "'max_items_per_user'.*bounds each shopper"),
        ({"max_items_per_user": 0}, "'max_items_per_user'.*int in"),
        ({"denoise": "svd"}, "'denoise'.*one of"),
        ({"l2": 0.0}, "'l2'.*> 0"),
    ],
)
def test_bad_privacy_settings_are_refused_with_a_message_naming_the_parameter(params, message, tiny_shop):
    with pytest.raises(ConfigError, match=message):
        DPEASE(**params).fit(tiny_shop)


def test_a_delta_of_one_over_n_or_more_is_refused_at_fit(tiny_shop):
    n = int(tiny_shop.active_users().size)
    for klass in (DPEASE, DPItemKNN):
        with pytest.raises(ConfigError, match=r"'target_delta'.*1/n"):
            klass(target_epsilon=8.0, target_delta=1.0 / n, max_items_per_user=5).fit(tiny_shop)


def test_a_release_refuses_rows_longer_than_the_bound_it_is_told():
    data = _shop(seed=1)
    with pytest.raises(ConfigError, match="at most max_items_per_user=3"):
        private_gram(recent_items_matrix(data, 10), 8.0, 1e-5, max_items=3)


def test_max_modelled_keeps_the_items_with_the_largest_noisy_counts(synthetic_shop):
    model = DPItemKNN(target_epsilon=8.0, max_items_per_user=10, max_modelled=30).fit(synthetic_shop)
    assert len(model.keep_) == 30
    rest = np.setdiff1d(np.arange(synthetic_shop.n_items), model.keep_)
    assert model.counts_[model.keep_].min() >= model.counts_[rest].max()
    assert np.isfinite(model.score_users(np.arange(5))).all()


def test_a_shopper_without_modelled_items_gets_the_noisy_popularity_order(synthetic_shop):
    model = DPEASE(target_epsilon=8.0, max_items_per_user=10, max_modelled=20).fit(synthetic_shop)
    rest = np.setdiff1d(np.arange(synthetic_shop.n_items), model.keep_)
    scores = model.score_histories([rest[:2]])[0]  # a history of unmodelled items only
    order = np.argsort(-scores, kind="stable")
    assert set(order[:20]) == set(model.keep_)
    assert (np.diff(model.counts_[order[:20]]) <= 0).all()
    assert (np.diff(model.counts_[order[20:]]) <= 0).all()
