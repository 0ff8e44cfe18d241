"""The baseline models: hand-worked checks per model (their conformance classes are in
test_conformance.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Interactions
from shoprec.errors import ConfigError
from shoprec.models import knn
from shoprec.models.ease import EASE
from shoprec.models.knn import ItemKNN, UserKNN, keep_top_per_row
from shoprec.models.mf import ALS, BPR
from shoprec.models.registry import make_model, model_names


# ---- helpers -----------------------------------------------------------------------------------
def shop(baskets: dict[str, str], events: dict[tuple[str, str], str] | None = None) -> Dataset:
    """A dataset from {'user': 'abc'}: one event per letter (an item), in that order."""
    rows = [
        (user, item, (events or {}).get((user, item), "purchase"), t)
        for user, items in baskets.items()
        for t, item in enumerate(items)
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    return Dataset.from_interactions(Interactions.from_frame(frame, "hand"))


THREE = {"u1": "ab", "u2": "bc", "u3": "abc"}  # X = [[1,1,0],[0,1,1],[1,1,1]]


def test_registry_holds_every_baseline():
    assert {"pop", "recent-pop", "random", "item-knn", "user-knn", "ease", "als", "bpr"} <= set(
        model_names()
    )
    model = make_model("ease", l2=3.0)
    assert isinstance(model, EASE) and model.l2 == 3.0


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            ItemKNN(neighbors=-3),
            "The 'neighbors' parameter of ItemKNN must be an int in [1, 100000]. Got -3 instead.",
        ),
        (
            ItemKNN(neighbors=2.5),
            "The 'neighbors' parameter of ItemKNN must be an int in [1, 100000]. Got 2.5 (float) instead.",
        ),
        (
            ItemKNN(shrink=-1),
            "The 'shrink' parameter of ItemKNN must be a number in [0.0, 1000000000.0]. Got -1.0 instead.",
        ),
        (
            ItemKNN(weighting="tfidf"),
            "The 'weighting' parameter of ItemKNN must be one of ['binary', 'events']. Got 'tfidf' instead.",
        ),
        (
            ItemKNN(weighting="events", event_weights={"click": 1}),
            "The 'event_weights' parameter of ItemKNN may only name the event types ['view', 'cart', 'favourite', 'purchase', 'rating']. Got ['click'] instead.",
        ),
        (
            ItemKNN(weighting="events", event_weights=3),
            "The 'event_weights' parameter of ItemKNN must be None, a dict or a string like 'view=1,purchase=5'. Got 3 instead.",
        ),
        (
            UserKNN(neighbors=0),
            "The 'neighbors' parameter of UserKNN must be an int in [1, 100000]. Got 0 instead.",
        ),
        (
            UserKNN(min_similarity=1.5),
            "The 'min_similarity' parameter of UserKNN must be a number in [0.0, 1.0]. Got 1.5 instead.",
        ),
        (EASE(l2=0), "The 'l2' parameter of EASE must be a number > 0. Got 0.0 instead."),
        (
            EASE(l2=-5),
            "The 'l2' parameter of EASE must be a number in [0.0, 1000000.0]. Got -5.0 instead.",
        ),
        (
            EASE(max_items=0),
            "The 'max_items' parameter of EASE must be an int in [1, 200000]. Got 0 instead.",
        ),
        (
            ALS(factors=0),
            "The 'factors' parameter of ALS must be an int in [1, 10000]. Got 0 instead.",
        ),
        (ALS(alpha=0), "The 'alpha' parameter of ALS must be a number > 0. Got 0.0 instead."),
        (
            ALS(regularization="high"),
            "The 'regularization' parameter of ALS must be a number in [0.0, 1000000.0]. Got 'high' (str) instead.",
        ),
        (
            ALS(iterations=0),
            "The 'iterations' parameter of ALS must be an int in [1, 10000]. Got 0 instead.",
        ),
        (
            ALS(seed=-1),
            "The 'seed' parameter of ALS must be an int in [0, 4294967295]. Got -1 instead.",
        ),
        (
            BPR(learning_rate=0.0),
            "The 'learning_rate' parameter of BPR must be a number > 0. Got 0.0 instead.",
        ),
        (
            BPR(iterations=True),
            "The 'iterations' parameter of BPR must be an int in [1, 100000]. Got True (bool) instead.",
        ),
        (
            BPR(num_threads=-1),
            "The 'num_threads' parameter of BPR must be an int in [0, 1024]. Got -1 instead.",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_invalid_hyperparameters_raise_config_error_at_fit_with_the_house_message(
    tiny_shop, model, message
):
    with pytest.raises(ConfigError) as info:
        model.fit(tiny_shop)
    assert str(info.value) == message


# ---- keep_top_per_row --------------------------------------------------------------------------
def test_keep_top_per_row_keeps_the_largest_entries_and_breaks_ties_by_column():
    m = sp.csr_matrix(
        np.array([[0.1, 0.5, 0.5, 0.2], [0.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    )
    kept = keep_top_per_row(m, 2).toarray()
    np.testing.assert_array_equal(
        kept, [[0.0, 0.5, 0.5, 0.0], [0.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )
    ties = keep_top_per_row(sp.csr_matrix(np.array([[0.75, 0.75, 0.75]], np.float32)), 1).toarray()
    np.testing.assert_array_equal(ties, [[0.75, 0.0, 0.0]])


# ---- ItemKNN -----------------------------------------------------------------------------------
def test_item_knn_similarity_is_shrunk_cosine_with_zero_diagonal():
    # Columns a, b, c have 2, 3, 2 users; a.b = 2, a.c = 1, b.c = 2; shrink 1.
    model = ItemKNN(neighbors=5, shrink=1.0).fit(shop(THREE))
    s6 = np.sqrt(6.0)
    expected = np.array(
        [[0.0, 2 / (s6 + 1), 1 / 3], [2 / (s6 + 1), 0.0, 2 / (s6 + 1)], [1 / 3, 2 / (s6 + 1), 0.0]]
    )
    np.testing.assert_allclose(model.similarity_.toarray(), expected, rtol=1e-6)
    np.testing.assert_allclose(model.score_history(["a"]), expected[0], rtol=1e-6)
    np.testing.assert_allclose(
        model.score_history(["a", "c"]), expected[0] + expected[2], rtol=1e-6
    )


def test_item_knn_keeps_only_the_top_neighbours_of_each_item():
    model = ItemKNN(neighbors=1, shrink=1.0).fit(shop(THREE))
    sim = model.similarity_.toarray()  # column j: the items that vote for j
    assert (sim > 0).sum(axis=0).tolist() == [1, 1, 1]
    # a's and c's best neighbour is b; b's two are tied and the lower index (a) wins.
    assert sim.argmax(axis=0).tolist() == [1, 0, 1]
    # So b votes for both a and c, while c votes for nobody (b's single neighbour is a).
    s = 2 / (np.sqrt(6) + 1)
    np.testing.assert_allclose(model.score_history(["b"]), [s, 0.0, s], rtol=1e-6)
    np.testing.assert_array_equal(model.score_history(["c"]), [0.0, 0.0, 0.0])


def test_item_knn_with_event_weights_follows_the_purchased_item():
    data = shop({"u1": "ac", "u2": "bd", "u3": "ac", "u4": "bd"})
    binary = ItemKNN(shrink=0.0).fit(data)
    weighted = ItemKNN(shrink=0.0, weighting="events").fit(data)
    history, events = ["a", "b"], ["view", "purchase"]
    b_scores = binary.score_history(history, events)
    w_scores = weighted.score_history(history, events)
    c, d = data.items.index(["c", "d"])
    assert b_scores[c] == pytest.approx(b_scores[d])
    assert w_scores[d] == pytest.approx(5 * w_scores[c])  # purchase weight 5, view weight 1


def test_item_knn_blockwise_similarity_matches_a_dense_computation(monkeypatch):
    rng = np.random.default_rng(0)
    x = sp.random(200, 60, density=0.08, format="csr", random_state=rng, dtype=np.float32)
    x.data[:] = 1.0
    monkeypatch.setattr(knn, "_BLOCK_NNZ", 50)  # force many blocks
    blocked = knn.item_similarity(x, neighbors=7, shrink=2.0).toarray()
    dense = x.toarray().astype(np.float64)
    gram = dense.T @ dense
    norms = np.sqrt(np.diag(gram))
    full = gram / (np.outer(norms, norms) + 2.0)
    np.fill_diagonal(full, 0.0)
    for i in range(60):
        row = blocked[i]
        assert (row > 0).sum() <= 7
        kept = np.flatnonzero(row)
        np.testing.assert_allclose(row[kept], full[i, kept], rtol=1e-5)
        if len(kept):  # nothing left out is larger than what was kept
            assert np.delete(full[i], kept).max(initial=0.0) <= row[kept].min() + 1e-6


# ---- UserKNN -----------------------------------------------------------------------------------
def test_user_knn_min_similarity_excludes_a_weak_neighbour():
    # History {a, b}: cos with v1 {a, b, c} = 2/sqrt(6) = 0.816, with v2 {b, d} = 1/2, v3 {e} = 0.
    data = shop({"v1": "abc", "v2": "bd", "v3": "e"})
    c, d = data.items.index(["c", "d"])
    loose = UserKNN(min_similarity=0.4).fit(data).score_history(["a", "b"])
    strict = UserKNN(min_similarity=0.6).fit(data).score_history(["a", "b"])
    assert loose[c] == pytest.approx(2 / np.sqrt(6), rel=1e-6)
    assert loose[d] == pytest.approx(0.5, rel=1e-6)
    assert strict[c] == pytest.approx(2 / np.sqrt(6), rel=1e-6)
    assert strict[d] == 0.0


def test_user_knn_keeps_only_the_most_similar_neighbours():
    data = shop({"v1": "abc", "v2": "bd", "v3": "e"})
    scores = UserKNN(neighbors=1).fit(data).score_history(["a", "b"])
    np.testing.assert_allclose(scores, [2 / np.sqrt(6)] * 3 + [0.0, 0.0], rtol=1e-6)


def test_user_knn_does_not_count_a_known_user_as_their_own_neighbour():
    data = shop({"u1": "ab", "u2": "ac"})  # cos(u1, u2) = 1/2
    scores = UserKNN().fit(data).score_users(data.users.index(["u1"]))[0]
    np.testing.assert_allclose(scores, [0.5, 0.0, 0.5], rtol=1e-6)


def test_user_knn_scores_the_same_whatever_the_block_size(synthetic_shop, monkeypatch):
    model = UserKNN(neighbors=10).fit(synthetic_shop)
    users = np.arange(synthetic_shop.n_users)
    known, given = model.score_users(users), model.score_users(users, history=synthetic_shop)
    monkeypatch.setattr(knn, "_BLOCK_NNZ", 500)  # a block per user or so
    np.testing.assert_array_equal(model.score_users(users), known)
    np.testing.assert_array_equal(model.score_users(users, history=synthetic_shop), given)


# ---- EASE --------------------------------------------------------------------------------------
def test_ease_weights_match_the_hand_computed_closed_form():
    # G + I = [[3,2,1],[2,4,2],[1,2,3]], P = inverse = [[.5,-.25,0],[-.25,.5,-.25],[0,-.25,.5]],
    # B = I - P / diag(P) = [[0,.5,0],[.5,0,.5],[0,.5,0]].
    model = EASE(l2=1.0).fit(shop(THREE))
    expected = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])
    np.testing.assert_allclose(model.weights_, expected, atol=1e-6)
    np.testing.assert_allclose(model.score_history(["a"]), [0.0, 0.5, 0.0], atol=1e-6)


def test_ease_has_a_zero_diagonal(synthetic_shop):
    weights = EASE(l2=50.0).fit(synthetic_shop).weights_
    assert weights.shape == (synthetic_shop.n_items,) * 2
    assert np.all(np.diag(weights) == 0.0)
    assert np.abs(weights).sum() > 0


def test_ease_refuses_a_catalogue_above_max_items(tiny_shop):
    with pytest.raises(
        ConfigError, match=r"dense 8 x 8 item matrix.*'max_items' limit of 5.*item-knn"
    ):
        EASE(max_items=5).fit(tiny_shop)


# ---- ALS and BPR -------------------------------------------------------------------------------
def test_bpr_item_factors_carry_a_bias_column_that_known_user_scores_use(tiny_shop):
    model = BPR(factors=4, iterations=5, seed=0).fit(tiny_shop)
    assert model.item_factors_.shape == (tiny_shop.n_items, 5)
    assert model.user_factors_.shape == (tiny_shop.n_users, 5)
    np.testing.assert_allclose(model.user_factors_[:, -1], 1.0)
    np.testing.assert_allclose(
        model.score_users(np.arange(tiny_shop.n_users)),
        model.user_factors_ @ model.item_factors_.T,
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "model", [ALS(factors=8, iterations=5, seed=0), BPR(factors=8, iterations=5, seed=0)]
)
def test_factor_models_with_different_seeds_differ(tiny_shop, model):
    other = type(model)(**{**model.get_params(), "seed": 1}).fit(tiny_shop)
    model.fit(tiny_shop)
    assert not np.allclose(model.item_factors_, other.item_factors_)


def test_als_folds_a_training_history_back_to_its_user_factors(synthetic_shop):
    # After many sweeps the user step is at its fixed point: re-solving a training user's history
    # against the item factors gives back (nearly) the learned user factors.
    model = ALS(factors=8, iterations=50, seed=0).fit(synthetic_shop)
    users = np.arange(20)
    folded = model.score_users(users, history=synthetic_shop)
    known = model.score_users(users)
    np.testing.assert_allclose(folded, known, atol=2e-2)
