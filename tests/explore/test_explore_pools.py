"""Candidate pools: where candidates come from, and that each appears once."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError, DataError
from shoprec.explore import SOURCES, PoolConfig, build_candidates, history_interests
from shoprec.explore.pools import top_n
from shoprec.explore.state import normalise_rows


def shop(seed: int = 0, n_items: int = 120, d: int = 4):
    rng = np.random.default_rng(seed)
    features = normalise_rows(rng.normal(size=(n_items, d)))
    popularity = rng.pareto(1.5, size=n_items) * 10
    return rng, features, popularity


def test_top_n_orders_best_first_and_pads_with_minus_one():
    scores = np.array([[0.1, 0.5, 0.3, 0.5], [1.0, 2.0, 3.0, 4.0]])
    allowed = np.array([[True, True, True, True], [False, False, True, False]])
    assert top_n(scores, 3, allowed).tolist() == [[1, 3, 2], [2, -1, -1]]


@pytest.mark.parametrize("seed", range(6))
def test_top_n_over_a_large_catalogue_equals_the_exact_masked_selection(seed):
    # The partial-selection path must give exactly what a full stable sort of the allowed columns
    # gives, with ties (rounded scores, many zeros), -inf, NaN (never chosen), sparse and dense
    # masks, 1-d or 2-d masks, and non-contiguous score arrays.
    def by_full_sort(scores, n, mask):
        masked = np.where(mask if mask is not None else True, scores, -np.inf)
        order = np.argsort(-masked, axis=1, kind="stable")[:, :n]
        return np.where(np.isfinite(np.take_along_axis(masked, order, axis=1)), order, -1)

    rng = np.random.default_rng(seed)
    rows, cols = 5, 3000
    scores = np.round(rng.normal(size=(rows, cols)), 1 if seed % 2 else 3)
    scores[:, rng.integers(cols, size=500)] = 0.0
    scores[0, :2990] = -np.inf  # a row with only 10 finite scores
    scores[1, rng.integers(cols, size=50)] = np.nan
    for density in (1.0, 0.9, 0.02, 0.0):
        for mask in (rng.random(cols) < density, rng.random((rows, cols)) < density):
            for n in (1, 7, 50):
                np.testing.assert_array_equal(top_n(scores, n, mask), by_full_sort(scores, n, mask))
        np.testing.assert_array_equal(top_n(scores.astype(np.float32), 20), by_full_sort(scores, 20, None))
        np.testing.assert_array_equal(top_n(scores[:, :100], 20, mask[:, :100]), by_full_sort(scores[:, :100], 20, mask[:, :100]))
        np.testing.assert_array_equal(top_n(scores[:, ::-1], 7), by_full_sort(scores[:, ::-1], 7, None))


def test_candidates_come_from_four_pools_without_repeats():
    rng, features, popularity = shop()
    n = 6
    scores = rng.normal(size=(n, len(features)))
    interests = normalise_rows(rng.normal(size=(n, 2, features.shape[1])))
    new_items = np.arange(110, 120)
    recent = np.zeros(len(features))
    recent[[3, 50, 111]] = [5, 2, 1]
    cand = build_candidates(scores, features, interests, np.ones((n, 2), bool), popularity, new_items, recent,
                            PoolConfig(n_exploit=10, n_per_interest=4, n_new=3, n_trending=3))
    for i in range(n):
        items = cand.items[i][cand.valid[i]]
        assert len(items) == len(set(items.tolist()))
        assert {SOURCES[s] for s in cand.source[i][cand.valid[i]]} <= set(SOURCES)
    # Exploit pool: the model's top 10 (new items are not excluded from it when they score well).
    np.testing.assert_array_equal(cand.items[:, :10], top_n(scores, 10))
    # Interest pool: long-tail items only, tagged with their interest.
    interest = cand.source == SOURCES.index("interest")
    cut = np.quantile(popularity[:110], 0.8)
    assert (popularity[cand.items[interest]] <= cut).all()
    assert set(cand.interest[interest].tolist()) == {0, 1}
    # New items come only from the new pool; trending shows the recently engaged items.
    new = cand.source == SOURCES.index("new")
    assert np.isin(cand.items[new], new_items).all()
    trending = cand.items[cand.source == SOURCES.index("trending")]
    assert set(trending.tolist()) <= {3, 50, 111}


def test_unavailable_items_are_never_candidates():
    rng, features, popularity = shop(1)
    available = np.ones(len(features), bool)
    available[:60] = False
    cand = build_candidates(rng.normal(size=(3, len(features))), features, normalise_rows(rng.normal(size=(3, 1, 4))),
                            np.ones((3, 1), bool), popularity, np.arange(100, 120), np.ones(len(features)),
                            available=available)
    assert (cand.items[cand.valid] >= 60).all()


def test_history_interests_separate_two_clusters():
    features = normalise_rows(np.array([[1, 0.1], [1, -0.1], [1, 0.0], [-0.1, 1], [0.1, 1], [0, 1.0]]))
    centres, valid = history_interests(features, [np.arange(6), np.array([0, 1]), np.array([], int)], max_interests=3)
    assert valid.tolist() == [[True, True, False], [True, False, False], [False, False, False]]
    found = centres[0, :2] @ np.array([[1.0, 0.0], [0.0, 1.0]]).T
    assert sorted(found.argmax(axis=1).tolist()) == [0, 1]


def test_pool_config_and_shapes_are_checked():
    with pytest.raises(ConfigError) as info:
        PoolConfig(tail_quantile=2.0)
    assert str(info.value) == "The 'tail_quantile' parameter of PoolConfig must be a number in [0.0, 1.0]. Got 2.0 instead."
    _, features, popularity = shop()
    with pytest.raises(DataError, match="exploit_scores has 120 items but item_features has 119"):
        build_candidates(np.zeros((1, 120)), features[:119], np.zeros((1, 1, 4)), np.ones((1, 1), bool),
                         popularity, np.array([], int), np.zeros(120))


@pytest.mark.parametrize("method, expected", [("kmeans", 3), ("mixture", 2)])
def test_both_interest_methods_cover_two_separate_tastes(method, expected):
    # k-means uses as many centres as the history allows (20 items // 3 = 6, at most 3); the
    # Gaussian mixture chooses their number by BIC and finds the two tastes.
    rng = np.random.default_rng(0)
    tea, garden = np.eye(8)[0], np.eye(8)[1]
    features = np.vstack([tea + 0.05 * rng.standard_normal((10, 8)), garden + 0.05 * rng.standard_normal((10, 8))])
    centres, valid = history_interests(features, [np.arange(20)], max_interests=3, method=method)
    assert valid[0].sum() == expected
    found = centres[0][valid[0]]
    assert {int(np.argmax(c)) for c in found} == {0, 1}
    np.testing.assert_allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-6)


def test_an_unknown_interest_method_is_refused():
    with pytest.raises(ConfigError, match="'method'"):
        history_interests(np.eye(3), [np.arange(3)], method="spectral")
