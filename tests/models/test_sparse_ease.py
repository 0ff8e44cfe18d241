"""Sparse EASE: EASE's per-item ridge regressions restricted to each item's nearest items.

What must hold: with every other item as a regressor it is EASE exactly; otherwise each column
has at most `neighbors` entries, on the items that co-occur with it the most, and never on the
item itself; blocking changes nothing; settings that cannot work are refused by name. Its
accuracy against dense EASE is measured in benchmarks/, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_baselines import THREE, shop

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Interactions
from shoprec.errors import ConfigError
from shoprec.models import ease
from shoprec.models.base import Recommender
from shoprec.models.ease import EASE, SparseEASE
from shoprec.models.registry import make_model


def test_with_every_other_item_as_regressor_it_is_ease():
    # Every pair of THREE's items co-occurs (u3 has all three), so two neighbours are all of them.
    sparse = SparseEASE(l2=1.0, neighbors=2).fit(shop(THREE)).weights_.toarray()
    expected = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])  # by hand, see test_baselines
    np.testing.assert_allclose(sparse, expected, atol=1e-6)


def test_on_a_fully_co_occurring_catalogue_it_matches_dense_ease():
    rng = np.random.default_rng(0)
    baskets = [np.flatnonzero(rng.random(25) < 0.3) for _ in range(150)] + [np.arange(25)]  # one has all
    frame = pd.DataFrame(
        [(f"u{u}", f"i{i}", "view", t) for u, basket in enumerate(baskets) for t, i in enumerate(basket)],
        columns=["user", "item", "event", "timestamp"],
    )
    data = Dataset.from_interactions(Interactions.from_frame(frame))
    dense = EASE(l2=5.0).fit(data).weights_
    sparse = SparseEASE(l2=5.0, neighbors=24).fit(data).weights_.toarray()
    np.testing.assert_allclose(sparse, dense, atol=1e-5)
    fewer = SparseEASE(l2=5.0, neighbors=6).fit(data).weights_.toarray()
    assert not np.allclose(fewer, dense, atol=1e-3)  # fewer regressors: an approximation


def test_each_column_keeps_at_most_its_neighbours_and_never_the_item_itself(synthetic_shop):
    k = 7
    model = SparseEASE(l2=20.0, neighbors=k).fit(synthetic_shop)
    w = model.weights_.tocsc()
    assert w.shape == (synthetic_shop.n_items,) * 2
    assert np.all(np.diff(w.indptr) <= k) and np.all(w.diagonal() == 0.0)
    # The regressors of item j are k of its nearest items by cosine (any of a tie).
    x = synthetic_shop.matrix(binary=True).toarray().astype(np.float64)
    gram = x.T @ x
    cosine = gram / np.sqrt(np.outer(np.diag(gram), np.diag(gram)))
    np.fill_diagonal(cosine, -np.inf)
    for j in range(synthetic_shop.n_items):
        chosen = w.indices[w.indptr[j]:w.indptr[j + 1]]
        others = np.setdiff1d(np.arange(len(cosine)), np.append(chosen, j))
        assert len(chosen) == k
        assert cosine[chosen, j].min() >= cosine[others, j].max() - 1e-6


def test_blocking_changes_nothing(synthetic_shop, monkeypatch):
    whole = SparseEASE(l2=20.0, neighbors=10).fit(synthetic_shop).weights_.toarray()
    monkeypatch.setattr(ease, "_SOLVE_ENTRIES", 150)  # one item's system per block
    monkeypatch.setattr(ease, "_GRAM_BLOCK_NNZ", 50)  # about one Gram row per block
    np.testing.assert_allclose(SparseEASE(l2=20.0, neighbors=10).fit(synthetic_shop).weights_.toarray(), whole,
                               rtol=1e-5, atol=1e-7)


def test_it_is_registered_saves_and_loads(synthetic_shop, tmp_path):
    model = make_model("sparse-ease", l2=20.0, neighbors=10).fit(synthetic_shop)
    loaded = Recommender.load(model.save(tmp_path / "m.npz"))
    users = np.arange(synthetic_shop.n_users)
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    np.testing.assert_allclose(model.score_users(users[:5], history=synthetic_shop), model.score_users(users[:5]))


@pytest.mark.parametrize("params, message", [
    ({"l2": 0}, "The 'l2' parameter of SparseEASE must be a number > 0"),
    ({"neighbors": 0}, "The 'neighbors' parameter of SparseEASE must be an int in [1, 2000]"),
])
def test_settings_that_cannot_work_are_refused_by_name(tiny_shop, params, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SparseEASE(**params).fit(tiny_shop)


def test_dense_ease_refusing_a_large_catalogue_points_to_sparse_ease(tiny_shop):
    with pytest.raises(ConfigError, match="sparse-ease"):
        EASE(max_items=5).fit(tiny_shop)
