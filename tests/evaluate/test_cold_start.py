"""The item cold-start protocol: which items are held out, who is evaluated, what is ranked."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import ConfigError
from shoprec.evaluate.cold_start import ColdStartSplit, cold_start_evaluate, hold_out_items
from shoprec.models.popularity import RandomRecommender


def test_hold_out_items_removes_every_event_of_a_seeded_tenth_of_the_items(synthetic_shop):
    split = hold_out_items(synthetic_shop, fraction=0.1, seed=3)
    assert isinstance(split, ColdStartSplit)
    train, held, targets = split
    active = np.unique(synthetic_shop.item_idx)
    assert len(held) == round(0.1 * len(active))
    assert not np.isin(train.item_idx, held).any()
    assert len(train) == (~np.isin(synthetic_shop.item_idx, held)).sum()
    assert train.items == synthetic_shop.items and train.users == synthetic_shop.users
    # Targets: exactly the (user, held-out item) pairs of users who keep a training history.
    cold = np.isin(synthetic_shop.item_idx, held)
    pairs = set(zip(synthetic_shop.user_idx[cold].tolist(), synthetic_shop.item_idx[cold].tolist()))
    assert set(zip(*targets.nonzero())) == pairs
    np.testing.assert_array_equal(hold_out_items(synthetic_shop, 0.1, seed=3).held_out, held)
    assert not np.array_equal(hold_out_items(synthetic_shop, 0.1, seed=4).held_out, held)


def test_users_without_a_training_history_are_not_targets(tiny_shop):
    # u4 touched only i5..i8; holding out all of them leaves u4 (and u5, u6) nothing to start from.
    split = hold_out_items(tiny_shop, fraction=0.5, seed=0)
    no_history = np.bincount(split.train.user_idx, minlength=tiny_shop.n_users) == 0
    assert split.targets[np.flatnonzero(no_history)].nnz == 0


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.95, "a tenth"])
def test_hold_out_items_rejects_a_bad_fraction(tiny_shop, fraction):
    with pytest.raises(ConfigError, match="'fraction'"):
        hold_out_items(tiny_shop, fraction=fraction)


def test_cold_start_recall_of_an_oracle_is_one_and_held_out_ranking_stays_in_the_held_out_items(
    synthetic_shop,
):
    split = hold_out_items(synthetic_shop, 0.1, seed=0)

    def oracle(users):
        return split.targets[users].toarray() + 0.0

    result = cold_start_evaluate(oracle, split, k=(20,))
    assert result.metrics["Recall@20"] == pytest.approx(1.0)
    assert result.n_users == int((np.diff(split.targets.indptr) > 0).sum())
    rand = RandomRecommender(seed=0).fit(split.train)
    among = cold_start_evaluate(lambda u: rand.score_users(u), split, k=(5,), candidates="held_out")
    listed = among.topk[among.topk >= 0]
    assert np.isin(listed, split.held_out).all()
    with pytest.raises(ConfigError, match="'candidates'"):
        cold_start_evaluate(oracle, split, candidates="warm")
