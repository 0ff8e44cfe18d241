"""The text content model and its cold-start scoring (fake encoder)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Catalogue
from shoprec.errors import ConfigError, DataError, UnknownIdError
from shoprec.evaluate.cold_start import cold_start_evaluate, hold_out_items
from shoprec.models.base import Recommender
from shoprec.models.content import TextContentRecommender, cold_start_scores
from shoprec.models.popularity import Popularity, RandomRecommender
from shoprec.models.registry import make_model
from shoprec.text.encoder import TextEncoder, hashed_bag_of_words

DIM = 256


def bow_encoder(cache_dir) -> TextEncoder:
    """Bag-of-words vectors: titles that share words are close. No model, no download."""
    return TextEncoder(
        cache_dir, model_name="hashed-bow", encode_fn=hashed_bag_of_words(DIM), dim=DIM
    )


def model(tmp_path, **params) -> TextContentRecommender:
    return TextContentRecommender(encoder=bow_encoder(tmp_path), **params)


# ---- content-based scoring ----------------------------------------------------------------------
def test_recommends_the_items_whose_text_resembles_the_history(tiny_shop, tmp_path):
    fitted = model(tmp_path).fit(tiny_shop)
    # "red mug. kitchen" shares "mug" and "kitchen" with "blue mug. kitchen" only.
    assert fitted.recommend_history(["i1"], k=1)[0][0] == "i2"
    garden = [item for item, _ in fitted.recommend_history(["i5", "i6"], k=2)]
    assert set(garden) == {"i7", "i8"}


def test_scores_are_cosines_to_the_recency_weighted_history(tiny_shop, tmp_path):
    fitted = model(tmp_path, recent=2, decay=0.5).fit(tiny_shop)
    v = fitted.item_vectors_
    idx = tiny_shop.items.index(["i5", "i1", "i2"])
    query = 0.5 * v[idx[1]] + 1.0 * v[idx[2]]  # i5 falls outside the last two
    expected = v @ (query / np.linalg.norm(query))
    np.testing.assert_allclose(
        fitted.score_history(["i5", "i1", "i2"]), expected, rtol=1e-5, atol=1e-6
    )


def test_the_most_recent_interest_leads_the_list(tiny_shop, tmp_path):
    fitted = model(tmp_path, decay=0.3).fit(tiny_shop)
    kitchen_last = fitted.recommend_history(["i5", "i6", "i1"], k=1)[0][0]
    garden_last = fitted.recommend_history(["i1", "i2", "i5"], k=1)[0][0]
    assert tiny_shop.catalogue.lookup([kitchen_last], "category") == ["kitchen"]
    assert tiny_shop.catalogue.lookup([garden_last], "category") == ["garden"]


def test_known_users_are_scored_from_their_training_history_in_order(tiny_shop, tmp_path):
    fitted = model(tmp_path, recent=2).fit(tiny_shop)
    u = tiny_shop.users.index(["u3"])[0]
    history = tiny_shop.items.id_of(tiny_shop.history(u))
    np.testing.assert_array_equal(
        fitted.score_users(np.array([u]))[0], fitted.score_history(history)
    )


def test_a_history_without_text_falls_back_to_popularity(tiny_shop, tmp_path):
    fitted = model(tmp_path).fit(tiny_shop)
    scores = fitted.score_history([])
    pop = tiny_shop.item_popularity()
    assert np.argmax(scores) in np.flatnonzero(pop == pop.max())
    assert (scores >= 0).all() and (scores < 1).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"recent": 0}, "'recent'"),
        ({"recent": 2.5}, "'recent'"),
        ({"decay": 1.5}, "'decay'"),
        ({"decay": "x"}, "'decay'"),
    ],
)
def test_invalid_parameters_raise_config_error_at_fit(tiny_shop, tmp_path, params, message):
    with pytest.raises(ConfigError, match=message):
        model(tmp_path, **params).fit(tiny_shop)


def test_fit_needs_a_catalogue_with_some_text(tiny_shop, tmp_path):
    bare = Dataset.from_arrays(
        tiny_shop.users, tiny_shop.items, tiny_shop.user_idx, tiny_shop.item_idx
    )
    with pytest.raises(DataError, match="catalogue"):
        model(tmp_path).fit(bare)
    blank = Catalogue.from_frame(pd.DataFrame({"item": tiny_shop.items.ids, "title": ""}))
    untitled = Dataset.from_arrays(
        tiny_shop.users, tiny_shop.items, tiny_shop.user_idx, tiny_shop.item_idx, catalogue=blank
    )
    with pytest.raises(DataError, match="title"):
        model(tmp_path).fit(untitled)


def test_get_params_leaves_out_the_encoder_and_the_model_is_registered_as_text(tmp_path):
    m = model(tmp_path, recent=5, decay=0.5, cache_dir=tmp_path)
    assert m.get_params() == {"recent": 5, "decay": 0.5, "cache_dir": str(tmp_path)}
    assert isinstance(make_model("text"), TextContentRecommender)


def test_a_saved_model_scores_without_an_encoder(tiny_shop, tmp_path):
    fitted = model(tmp_path).fit(tiny_shop)
    loaded = Recommender.load(fitted.save(tmp_path / "text.npz"))
    assert loaded.encoder is None
    np.testing.assert_array_equal(loaded.item_vectors_, fitted.item_vectors_)
    assert loaded.recommend("u3", k=3) == fitted.recommend("u3", k=3)


# ---- cold start -------------------------------------------------------------------------------
def test_items_that_never_appeared_in_training_are_scored_and_recommended(tiny_shop, tmp_path):
    never = ~np.isin(tiny_shop.item_idx, tiny_shop.items.index(["i2"]))
    train = tiny_shop.subset(never)  # "blue mug" is in the catalogue but nobody touched it
    fitted = model(tmp_path).fit(train)
    assert train.item_popularity()[tiny_shop.items.index(["i2"])[0]] == 0
    assert fitted.recommend_history(["i1"], k=1)[0][0] == "i2"


def test_cold_start_scores_embed_products_added_after_fitting(tiny_shop, tmp_path):
    fitted = model(tmp_path).fit(tiny_shop)
    new = Catalogue.from_frame(
        pd.DataFrame(
            {
                "item": ["n1", "n2"],
                "title": ["green mug", "lawn mower"],
                "category": ["kitchen", "garden"],
            }
        )
    )
    scores = cold_start_scores(fitted, ["i1", "i2"], ["n1", "n2", "i3"], catalogue=new)
    assert scores.shape == (3,)
    assert scores[0] > scores[1]
    expected_known = fitted.score_history(["i1", "i2"])[tiny_shop.items.index(["i3"])[0]]
    assert scores[2] == pytest.approx(expected_known, rel=1e-5)
    with pytest.raises(UnknownIdError, match="catalogue"):
        cold_start_scores(fitted, ["i1"], ["n1"])


def test_cold_start_scores_are_zero_without_a_usable_history(tiny_shop, tmp_path):
    fitted = model(tmp_path).fit(tiny_shop)
    np.testing.assert_array_equal(cold_start_scores(fitted, ["unknown"], ["i1", "i5"]), [0.0, 0.0])


# ---- text under the item cold-start protocol --------------------------------------------------
def test_text_beats_popularity_and_random_on_held_out_items(synthetic_shop, tmp_path):
    # Titles name the product line, and shoppers stay within a line: text can place new items,
    # popularity knows nothing about them (they have no training events).
    split = hold_out_items(synthetic_shop, 0.1, seed=0)
    text = model(tmp_path).fit(split.train)
    pop = Popularity().fit(split.train)
    rand = RandomRecommender(seed=0).fit(split.train)
    recall = {
        name: cold_start_evaluate(lambda u, m=m: m.score_users(u), split, k=(20,)).metrics[
            "Recall@20"
        ]
        for name, m in [("text", text), ("pop", pop), ("random", rand)]
    }
    assert recall["text"] > recall["random"] + 0.2, recall
    assert recall["text"] > recall["pop"] + 0.2, recall
    assert recall["pop"] == 0.0  # held-out items have no popularity: never in a top 20
