"""The serving engine without HTTP or a database: filters, diversity, explanations, ANN search."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import NotFittedError, UnknownIdError
from shoprec.explore.online import OnlineConfig
from shoprec.models.knn import ItemKNN
from shoprec.serve.ann import ItemIndex, item_vectors
from shoprec.serve.engine import ServingEngine, _diversify_by_category


@pytest.fixture
def engine(tiny_shop) -> ServingEngine:
    e = ServingEngine(exploration=OnlineConfig(weight_rule="fixed", epsilon=0.0))
    e.set_model(ItemKNN(neighbors=10, shrink=0.0).fit(tiny_shop))
    cat = tiny_shop.catalogue.frame
    e.set_catalogue([(r.item, r.title, r.category, r.price, True, 0) for r in cat.itertuples()])
    return e


def test_recommendations_exclude_history_and_follow_the_model(engine):
    recs = engine.recommend(["i5", "i6"], ["view", "cart"], k=3).items
    ids = [r.item_id for r in recs]
    assert not {"i5", "i6"} & set(ids)
    assert set(ids[:2]) == {"i7", "i8"}  # the two garden items left come first


def test_scores_are_best_first_and_propensities_one_under_greedy(engine):
    recs = engine.recommend(["i1"], ["view"], k=5).items
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert all(r.propensity == 1.0 and not r.explored for r in recs)


def test_unknown_history_items_fall_back_to_popularity(engine):
    recs = engine.recommend(["never-seen"], ["view"], k=3).items
    assert [r.explanation.code for r in recs] == ["popular"] * 3


def test_price_filter_excludes_items_without_a_price(engine, tiny_shop):
    cat = tiny_shop.catalogue.frame
    engine.set_catalogue([(r.item, r.title, r.category, None if r.item == "i7" else r.price, True, 0)
                          for r in cat.itertuples()])
    ids = [r.item_id for r in engine.recommend([], [], k=8, min_price=0).items]
    assert "i7" not in ids and len(ids) == 7


def test_empty_filters_give_an_empty_slate(engine):
    assert engine.recommend(["i1"], ["view"], k=3, categories=["no such category"]).items == []


def test_diversify_weight_zero_keeps_score_order_and_one_alternates_categories():
    scores = np.array([0.9, 0.8, 0.7, 0.2])
    cats = np.array(["a", "a", "a", "b"], dtype=object)
    assert list(_diversify_by_category(scores, cats, 2, 0.0)) == [0, 1, 2, 3]
    assert list(_diversify_by_category(scores, cats, 2, 1.0))[:2] == [0, 3]


def test_without_a_model_the_engine_says_what_to_do():
    with pytest.raises(NotFittedError, match="No model is loaded yet"):
        ServingEngine().recommend([], [], k=3)


def test_similar_unknown_item_raises_unknown_id(engine):
    with pytest.raises(UnknownIdError, match="Unknown item id 'zzz'"):
        engine.similar("zzz", 3)


def test_item_vectors_are_unit_length_or_zero(tiny_shop):
    vectors = item_vectors(ItemKNN().fit(tiny_shop))
    norms = np.linalg.norm(vectors, axis=1)
    assert vectors.shape[0] == tiny_shop.n_items
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)


def test_hnsw_finds_what_exact_search_finds():
    pytest.importorskip("faiss", reason="faiss (the 'ann' extra) is not installed")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, hnsw = ItemIndex(vectors, threshold=10**9), ItemIndex(vectors, threshold=1)
    assert (exact.kind, hnsw.kind) == ("exact", "hnsw")
    recall = []
    for q in vectors[:50]:
        truth = set(exact.search(q, 10)[0])
        recall.append(len(truth & set(hnsw.search(q, 10)[0])) / 10)
    assert np.mean(recall) >= 0.95
    idx, sims = exact.search(vectors[7], 3)
    assert idx[0] == 7 and sims[0] == pytest.approx(1.0, abs=1e-5)



def test_a_sequence_models_explanation_cites_the_event_whose_removal_lowers_the_score(tiny_shop):
    from shoprec.models.transformer import TransformerRecommender

    model = TransformerRecommender(d=8, n_layers=1, max_len=6, epochs=3, batch_size=4, device="cpu", seed=0)
    e = ServingEngine(exploration=OnlineConfig(weight_rule="fixed", epsilon=0.0))
    e.set_model(model.fit(tiny_shop))
    cat = tiny_shop.catalogue.frame
    e.set_catalogue([(r.item, r.title, r.category, r.price, True, 0) for r in cat.itertuples()])
    history, events = ["i1", "i2", "i5", "i3"], ["view", "cart", "view", "purchase"]
    recs = e.recommend(history, events, k=3).items
    grounded = [r for r in recs if r.explanation.basis == "model"]
    assert grounded, [r.explanation for r in recs]
    full = model.score_history(history, events)
    for r in grounded:
        j = history.index(r.explanation.anchor_item_id)
        without = model.score_history(history[:j] + history[j + 1:], events[:j] + events[j + 1:])
        item = model.items_.index([r.item_id])[0]
        assert without[item] < full[item]
        assert r.explanation.text.startswith("Because ")
