"""The serving engine without HTTP or a database: filters, diversity, explanations, ANN search."""

from __future__ import annotations

import numpy as np
import pytest

from shoprec.errors import NotFittedError, UnknownIdError
from shoprec.explore.online import OnlineConfig
from shoprec.explore.slate import diversify_by_category
from shoprec.models.knn import ItemKNN
from shoprec.serve.ann import ItemIndex, item_vectors
from shoprec.serve.engine import ServingEngine


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
    assert list(diversify_by_category(scores, cats, 2, 0.0)) == [0, 1, 2, 3]
    assert list(diversify_by_category(scores, cats, 2, 1.0))[:2] == [0, 3]


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


def test_one_encoding_pass_scores_and_explains_as_separate_passes_do(tiny_shop):
    # The service encodes the history and its removal variants in one forward pass; the scores
    # and the cited events must be those of scoring each history on its own.
    from shoprec.models.transformer import TransformerRecommender
    from shoprec.serve.explain import anchor_by_removal, removal_histories

    model = TransformerRecommender(d=8, n_layers=1, max_len=6, epochs=2, batch_size=4, device="cpu", seed=0)
    model.fit(tiny_shop)
    e = ServingEngine()
    e.set_model(model)
    view = e.model_view
    hist_idx = model.items_.index(["i1", "i2", "i5", "i3"])
    codes = np.array([0, 1, 0, 3], np.int8)
    _, histories, events = removal_histories(hist_idx, codes)
    encoded = model.encode_histories(histories, events)
    np.testing.assert_allclose(model.score_encoded(encoded), model.score_histories(histories, events), rtol=1e-5)
    chosen = np.array([0, 3, 6, 7])
    np.testing.assert_array_equal(anchor_by_removal(view, hist_idx, codes, chosen, encoded=encoded)[0],
                                  anchor_by_removal(view, hist_idx, codes, chosen)[0])
    scores, path = e.scores(view, hist_idx, ["view", "cart", "view", "purchase"])
    one_pass, _, kept = e._scored(view, hist_idx, ["view", "cart", "view", "purchase"], False, explain=True)
    assert path == "model" and kept is not None and len(kept) == len(histories)
    np.testing.assert_allclose(one_pass, scores, rtol=1e-6)


class FakeClocks:
    """Wall and CPU clocks a test moves by hand: the gauge's decisions without timing anything."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0


def gauge_with(clocks: FakeClocks, probe_every_s: float = 1.0):
    from shoprec.serve.load import LoadGauge

    return LoadGauge(smoothing=1.0, probe_every_s=probe_every_s, clock=lambda: clocks.wall,
                     cpu_clock=lambda: clocks.cpu)


def served_request(gauge, clocks: FakeClocks, budget_ms: float, cost_ms: float) -> bool:
    """One request that costs cost_ms of CPU on whichever path the gauge picks; returns whether
    it was degraded (the cheap path then costs a tenth)."""
    with gauge.request(budget_ms) as ticket:
        path = "embedding" if ticket.degrade else "model"
        clocks.cpu += cost_ms / 1000 / (10 if ticket.degrade else 1)
        gauge.served_by(path, ticket)
    return ticket.degrade


def test_the_latency_budget_degrades_a_request_whose_expected_time_is_over_it():
    clocks = FakeClocks()
    gauge = gauge_with(clocks)
    assert served_request(gauge, clocks, budget_ms=50, cost_ms=80) is False  # nothing measured yet
    assert served_request(gauge, clocks, budget_ms=50, cost_ms=80) is True
    assert gauge.request_ms == pytest.approx(80)  # the degraded request did not teach the model cost
    assert served_request(gauge, clocks, budget_ms=0, cost_ms=80) is False  # budget 0: never degrade


def test_requests_in_flight_multiply_the_expected_time():
    clocks = FakeClocks()
    gauge = gauge_with(clocks)
    served_request(gauge, clocks, budget_ms=50, cost_ms=20)
    assert served_request(gauge, clocks, budget_ms=50, cost_ms=20) is False  # 20 ms alone
    with gauge.request(50), gauge.request(50):  # two more in flight: 3 x 20 ms > 50 ms
        assert served_request(gauge, clocks, budget_ms=50, cost_ms=20) is True


def test_time_spent_waiting_for_a_slate_thread_counts_against_the_budget():
    clocks = FakeClocks()
    gauge = gauge_with(clocks)
    served_request(gauge, clocks, budget_ms=50, cost_ms=20)
    arrived = gauge.now()
    clocks.wall += 0.040  # queued 40 ms behind other slates: 40 + 20 ms > 50 ms
    with gauge.request(50, arrived=arrived) as ticket:
        assert ticket.degrade
    with gauge.request(50, arrived=gauge.now()) as ticket:  # no wait: 20 ms fits
        assert not ticket.degrade


def test_a_request_late_on_either_path_keeps_the_accurate_one():
    clocks = FakeClocks()
    gauge = gauge_with(clocks)
    served_request(gauge, clocks, budget_ms=50, cost_ms=30)
    assert served_request(gauge, clocks, budget_ms=20, cost_ms=30) is True  # teaches the quick path: 3 ms
    assert gauge.quick_ms == pytest.approx(3)
    arrived = gauge.now()
    clocks.wall += 0.060  # queued 60 ms: past 50 ms on the quick path too
    with gauge.request(50, arrived=arrived) as ticket:
        assert not ticket.degrade


def test_a_degraded_gauge_probes_the_model_path_and_recovers_when_it_is_cheap_again():
    # A slow spell (a cold first request, a noisy neighbour) must not send every later request
    # down the cheap path: once a second one request re-measures the model path.
    clocks = FakeClocks()
    gauge = gauge_with(clocks, probe_every_s=1.0)
    served_request(gauge, clocks, budget_ms=50, cost_ms=200)
    degraded = [served_request(gauge, clocks, budget_ms=50, cost_ms=10) for _ in range(5)]
    assert degraded == [True] * 5  # within the second: the stale 200 ms estimate holds
    clocks.wall += 1.0
    assert served_request(gauge, clocks, budget_ms=50, cost_ms=10) is False  # the probe
    assert gauge.request_ms == pytest.approx(10)
    assert [served_request(gauge, clocks, budget_ms=50, cost_ms=10) for _ in range(3)] == [False] * 3


def test_the_engine_serves_the_embedding_path_under_its_latency_budget(tiny_shop):
    from shoprec.serve.engine import ServingEngine as Engine

    eng = Engine(latency_budget_ms=50)
    eng.set_model(ItemKNN(neighbors=10, shrink=0.0).fit(tiny_shop))
    history = ["i5", "i6"]
    assert eng.recommend(history, ["view", "view"], 3).path == "model"
    eng.load.request_ms = 1e6  # as if the model path had just been very slow
    eng.load._last_model_path = float("inf")  # and no probe is due
    served = eng.recommend(history, ["view", "view"], 3)
    assert served.path == "embedding" and served.degraded
    assert eng.load.served["embedding"] == 1
