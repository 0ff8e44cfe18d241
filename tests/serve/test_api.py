"""The /v1 API on SQLite and PostgreSQL: ingestion, catalogue, recommendations, real time,
explanations, impressions, export and erasure, model reload, health and metrics."""

from __future__ import annotations

import logging

import pytest
from serve_helpers import ADMIN, SCHEMA_HEAD, event, recommend
from sqlalchemy import create_engine, text

from shoprec.errors import ConfigError
from shoprec.models.popularity import Popularity
from shoprec.privacy.pseudonym import Pseudonymizer


def _ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def _export(client, shopper: str) -> dict:
    r = client.post("/v1/shoppers/export", json={"shopper_id": shopper}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


# ---- health and metrics ------------------------------------------------------------------------
def test_health_needs_no_key_and_reports_database_model_and_schema(client):
    r = client.get("/v1/health")
    assert r.status_code == 200
    assert r.json() | {"version": "x"} == {"status": "ok", "database": True, "model_loaded": True,
                                           "schema_revision": SCHEMA_HEAD, "version": "x"}


def test_metrics_need_a_key_and_count_requests_by_route_template(client):
    assert client.get("/v1/metrics").status_code == 401
    client.get("/v1/items/i1", headers=ADMIN)
    r = client.get("/v1/metrics", headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'shoprec_http_requests_total{method="GET",route="/v1/items/{item_id}",status="200"} 1.0' in r.text
    assert "shoprec_catalogue_items 8.0" in r.text


# ---- events ------------------------------------------------------------------------------------
def test_retried_event_batch_is_counted_once(client):
    batch = {"events": [event(f"e{i}", "alice", f"i{i}") for i in range(1, 4)]}
    counted = {"unknown_items": 0, "unknown_item_ids": [], "not_stored": 0}
    assert client.post("/v1/events/batch", json=batch, headers=ADMIN).json() == {"accepted": 3, "duplicates": 0, **counted}
    assert client.post("/v1/events/batch", json=batch, headers=ADMIN).json() == {"accepted": 0, "duplicates": 3, **counted}
    assert client.post("/v1/events", json=event("e1", "alice", "i1"), headers=ADMIN).json() == {
        "accepted": 0, "duplicates": 1, **counted}
    assert [e["event_id"] for e in _export(client, "alice")["events"]] == ["e1", "e2", "e3"]


def test_rejected_batch_stores_nothing_and_loses_nothing_accepted(make_client):
    client = make_client(with_catalogue=False, max_batch=3)
    assert client.post("/v1/events/batch", json={"events": [event("ok1", "bob", "i1")]}, headers=ADMIN).status_code == 200
    invalid = {"events": [event("bad1", "bob", "i2"), event("bad2", "bob", "i3", kind="teleport")]}
    assert client.post("/v1/events/batch", json=invalid, headers=ADMIN).status_code == 422
    too_many = {"events": [event(f"big{i}", "bob", "i2") for i in range(4)]}
    r = client.post("/v1/events/batch", json=too_many, headers=ADMIN)
    assert r.status_code == 413
    assert r.json()["error"] == {"code": "batch_too_large", "message": "A batch may hold at most 3 events. Got 4."}
    assert [e["event_id"] for e in _export(client, "bob")["events"]] == ["ok1"]


def test_event_timestamp_and_value_are_kept(client):
    client.post("/v1/events", json=event("r1", "carol", "i3", kind="rating", timestamp=1_700_000_000, value=4.5),
                headers=ADMIN)
    (stored,) = _export(client, "carol")["events"]
    assert stored["ts"] == 1_700_000_000 and stored["value"] == 4.5 and stored["event"] == "rating"


# ---- real time ---------------------------------------------------------------------------------
def test_an_event_changes_that_shoppers_next_recommendations_at_once(client):
    client.post("/v1/events", json=event("a1", "dora", "i5"), headers=ADMIN)  # garden
    before = recommend(client, shopper_id="dora")
    assert {i["category"] for i in before["items"]} == {"garden"}
    for n, item in enumerate(["i1", "i2", "i3"]):  # now kitchen, and bought
        client.post("/v1/events", json=event(f"a{n + 2}", "dora", item, kind="purchase"), headers=ADMIN)
    after = recommend(client, shopper_id="dora")
    assert _ids(after) != _ids(before)
    assert "i4" in _ids(after)  # the kitchen item nobody in her history has: next to what she bought
    assert not {"i1", "i2", "i3", "i5"} & set(_ids(after))  # nothing she already has


def test_anonymous_session_is_recommended_from_the_request_and_stores_no_events(client):
    body = recommend(client, session=[{"item_id": "i6", "event": "cart"}])
    assert body["items"] and "i6" not in _ids(body)
    assert body["items"][0]["explanation"]["text"].startswith("Because you put “watering can” in your cart")
    assert client.get("/v1/stats", headers=ADMIN).json()["series"][0]["events"] == 0


# ---- filters and overrides ---------------------------------------------------------------------
def test_category_and_price_filters(client):
    body = recommend(client, session=[{"item_id": "i1"}], k=8,
                     filters={"categories": ["garden"], "min_price": 10, "max_price": 15})
    assert sorted(_ids(body)) == ["i5", "i7", "i8"]


def test_k_caps_the_slate_and_ranks_are_consecutive(client):
    body = recommend(client, session=[], k=5)
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]


def test_diversity_override_spreads_categories(client):
    plain = recommend(client, session=[{"item_id": "i1"}, {"item_id": "i2"}], k=2, diversity=0.0)
    diverse = recommend(client, session=[{"item_id": "i1"}, {"item_id": "i2"}], k=2, diversity=1.0)
    assert len({i["category"] for i in plain["items"]}) == 1
    assert len({i["category"] for i in diverse["items"]}) == 2


# ---- explanations ------------------------------------------------------------------------------
def test_history_explanation_names_the_anchor_item_and_what_was_done(client):
    client.post("/v1/events", json=event("x1", "erin", "i3", kind="purchase"), headers=ADMIN)
    first = recommend(client, shopper_id="erin")["items"][0]["explanation"]
    assert first == {"code": "history", "text": "Because you bought “tea pot”", "anchor_item_id": "i3",
                     "basis": "similarity"}


def test_cold_start_explains_popularity(client):
    items = recommend(client, shopper_id="nobody-yet")["items"]
    assert items and all(i["explanation"]["code"] == "popular" for i in items)
    assert items[0]["explanation"]["text"].startswith("Popular in ")


def test_new_item_in_a_liked_category_gets_a_slot_and_says_why(client):
    client.put("/v1/items/i9", json={"title": "milk jug", "category": "kitchen", "price": 7.0}, headers=ADMIN)
    client.post("/v1/events", json=event("n1", "fay", "i1"), headers=ADMIN)
    items = recommend(client, shopper_id="fay", k=3)["items"]
    assert items[-1]["item_id"] == "i9"
    assert items[-1]["explanation"] == {"code": "new_in_category", "text": "New in kitchen, a category you like",
                                        "anchor_item_id": None, "basis": None}


def test_exploration_is_badged_logged_with_propensity_and_learned_once_per_click(make_client):
    # Epsilon-greedy at 1: the one exploration slot of a 3-slate (slot 3) always explores, and
    # shows one of the five candidates outside the exploit top 3, each with propensity 1/5.
    c = make_client(weight_rule="fixed", epsilon=1.0, exploration=None)
    body = recommend(c, shopper_id="gus", k=3)
    assert body["policy"] == "egreedy:1" and body["exploration"]["weight"] == 1.0
    last = body["items"][-1]
    assert last["explored"] and last["propensity"] == pytest.approx(0.2)
    assert last["explanation"]["code"] == "exploring"
    logged = _export(c, "gus")["impressions"]
    assert [(i["position"], round(i["propensity"], 6), i["explored"]) for i in logged] == [
        (0, 1.0, False), (1, 1.0, False), (2, 0.2, True)]
    assert {i["impression_id"] for i in logged} == {body["impression_id"]}
    click = event("c1", "gus", last["item_id"], impression_id=body["impression_id"])
    c.post("/v1/events", json=click, headers=ADMIN)
    c.post("/v1/events", json=click, headers=ADMIN)  # a retry is not a second reward
    states = _export(c, "gus")["exploration_states"]
    assert len(states) == 1 and states[0]["n_feedback"] == 1
    recommend(c, shopper_id="gus", k=3)  # the first slate is over: its two unclicked items were skips
    assert _export(c, "gus")["exploration_states"][0]["n_feedback"] == 3


@pytest.mark.parametrize("rule,policy", [("fitted", "fitted"), ("dynamic", "dynamic-thompson")])
def test_each_slate_carries_its_exploration_weight_and_the_signals_behind_it(make_client, rule, policy):
    c = make_client(exploration=None, weight_rule=rule)
    body = recommend(c, shopper_id="ivy", k=4)
    assert body["policy"] == policy and body["exploration"]["rule"] == rule
    assert 0.0 <= body["exploration"]["weight"] <= 1.0 and not body["exploration"]["overridden"]
    assert set(body["exploration"]["signals"]) >= {"history", "variance", "drift", "payoff"}
    assert body["exploration"]["signals"]["history"] == 1.0  # a shopper the shop knows nothing of
    assert body["path"] == "popularity" and body["degraded"] is False
    fixed = recommend(c, shopper_id="ivy", k=4, exploration=0.0)
    assert fixed["exploration"]["weight"] == 0.0 and fixed["exploration"]["overridden"]
    assert not any(item["explored"] for item in fixed["items"])


def test_the_fitted_weight_rule_is_served_with_its_weight_signals_and_exact_propensities(make_client):
    # Coefficients that make every shopper explore fully: the one exploration slot of a
    # 3-slate shows one of the five candidates outside the exploit top 3, each with 1/5.
    c = make_client(weight_rule="fitted", weight_coefficients="40,0,0,0,0", exploration=None)
    body = recommend(c, shopper_id="kim", k=3)
    assert body["policy"] == "fitted" and body["exploration"]["rule"] == "fitted"
    assert body["exploration"]["weight"] == pytest.approx(1.0)
    assert set(body["exploration"]["signals"]) >= {"history", "variance", "drift", "payoff"}
    last = body["items"][-1]
    assert last["explored"] and last["propensity"] == pytest.approx(0.2)


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d,e", "0,0,0,0,99"])
def test_malformed_weight_coefficients_are_refused_by_name(settings, bad):
    with pytest.raises(ConfigError, match="'weight_coefficients' parameter of ServeSettings must be five numbers"):
        settings.with_(weight_coefficients=bad)


def test_the_exploration_state_survives_a_restart_of_the_service(make_client, settings):
    c = make_client(exploration=None)
    c.post("/v1/events", json=event("r0", "joe", "i1"), headers=ADMIN)
    body = recommend(c, shopper_id="joe", k=3)
    c.post("/v1/events", json=event("r1", "joe", body["items"][0]["item_id"], impression_id=body["impression_id"]),
           headers=ADMIN)
    before = _export(c, "joe")["exploration_states"]
    again = make_client(with_catalogue=False, exploration=None)  # a new process on the same database
    assert _export(again, "joe")["exploration_states"] == before
    status = again.get("/v1/model", headers=ADMIN).json()
    assert status["exploration"]["feature_space"] == before[0]["space"]


# ---- impressions and stats ---------------------------------------------------------------------
def test_click_through_and_coverage_in_stats(client):
    body = recommend(client, shopper_id="hal", k=4)
    shown = body["items"][0]["item_id"]
    client.post("/v1/events", json=event("h1", "hal", shown, impression_id=body["impression_id"]), headers=ADMIN)
    stats = client.get("/v1/stats?hours=1&bucket_minutes=5", headers=ADMIN).json()
    assert stats["click_through"] == pytest.approx(1 / 4)
    assert stats["catalogue_coverage"] == pytest.approx(4 / 8)
    assert stats["exploration_share"] == 0.0
    assert sum(p["slates"] for p in stats["series"]) == 1


# ---- similar items -----------------------------------------------------------------------------
def test_similar_items_come_from_the_same_taste_cluster(client):
    r = client.get("/v1/items/i1/similar?k=3", headers=ADMIN)
    assert r.status_code == 200
    items = r.json()["items"]
    assert items and "i1" not in [i["item_id"] for i in items]
    assert {i["category"] for i in items} == {"kitchen"}
    assert items[0]["explanation"]["text"] == "Similar to “red mug”"


def test_similar_for_an_item_the_model_has_not_learned_is_popular_in_its_category(client):
    client.put("/v1/items/new1", json={"title": "shears", "category": "garden"}, headers=ADMIN)
    items = client.get("/v1/items/new1/similar?k=2", headers=ADMIN).json()["items"]
    assert {i["category"] for i in items} == {"garden"}
    assert items[0]["explanation"]["code"] == "popular"


def test_similar_for_an_unknown_item_is_404(client):
    r = client.get("/v1/items/nope/similar", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# ---- catalogue ---------------------------------------------------------------------------------
def test_catalogue_put_patch_get_and_list(client):
    assert client.put("/v1/items/i1", json={"title": "big red mug", "category": "kitchen", "price": 4.0},
                      headers=ADMIN).json() == {"created": 0, "updated": 1}
    r = client.patch("/v1/items/i1", json={"price": 4.5}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["price"] == 4.5 and r.json()["title"] == "big red mug"
    assert client.patch("/v1/items/zzz", json={"price": 1.0}, headers=ADMIN).status_code == 404
    page = client.get("/v1/items?category=garden&limit=2&offset=1", headers=ADMIN).json()
    assert page["total"] == 4 and [i["item_id"] for i in page["items"]] == ["i6", "i7"]


def test_inactive_items_are_never_recommended(client):
    client.patch("/v1/items/i4", json={"active": False}, headers=ADMIN)
    ids = _ids(recommend(client, session=[{"item_id": "i1"}], k=8))
    assert "i4" not in ids and len(ids) == 6


# ---- export, erasure, privacy ------------------------------------------------------------------
def test_export_then_erase_a_shopper(client):
    client.post("/v1/events", json=event("z1", "ivy", "i2"), headers=ADMIN)
    recommend(client, shopper_id="ivy")
    data = _export(client, "ivy")
    assert len(data["events"]) == 1 and len(data["impressions"]) == 3
    assert data["pseudonyms"][0].startswith("test.")
    r = client.post("/v1/shoppers/erase", json={"shopper_id": "ivy"}, headers=ADMIN)
    assert r.json() == {"events_deleted": 1, "impressions_deleted": 3, "model_files_changed": 0}
    assert _export(client, "ivy")["events"] == []
    assert recommend(client, shopper_id="ivy")["items"][0]["explanation"]["code"] == "popular"


def test_data_under_a_rotated_key_is_still_exported_and_erased(make_client):
    old = Pseudonymizer([("old", b"o" * 32)])
    first = make_client(pseudonymizer=old)
    first.post("/v1/events", json=event("r1", "jo", "i1"), headers=ADMIN)
    rotated = Pseudonymizer([("new", b"n" * 32), ("old", b"o" * 32)])
    second = make_client(with_catalogue=False, pseudonymizer=rotated)
    second.post("/v1/events", json=event("r2", "jo", "i2"), headers=ADMIN)
    assert len(_export(second, "jo")["events"]) == 2
    assert "i1" not in _ids(recommend(second, shopper_id="jo", k=8))  # history spans both keys
    assert second.post("/v1/shoppers/erase", json={"shopper_id": "jo"}, headers=ADMIN).json()["events_deleted"] == 2


def test_raw_shopper_ids_are_never_stored_or_logged(client, settings, caplog):
    raw = "jane.doe@example.com"
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/events", json=event("p1", raw, "i1"), headers=ADMIN)
        recommend(client, shopper_id=raw)
        client.post("/v1/shoppers/export", json={"shopper_id": raw}, headers=ADMIN)
        client.post("/v1/recommendations", json={"shopper_id": raw, "k": "3"}, headers=ADMIN)  # a 422
    assert raw not in caplog.text
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        for table in ("events", "impressions", "items", "api_keys"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            assert raw not in repr(rows)
    engine.dispose()


def test_validation_errors_do_not_echo_the_values_sent(client):
    r = client.post("/v1/recommendations", json={"shopper_id": "secret-id", "k": "3"}, headers=ADMIN)
    assert r.status_code == 422 and "secret-id" not in r.text


# ---- model status and reload -------------------------------------------------------------------
def test_model_status_and_hot_reload(make_client, tiny_shop, tmp_path):
    Popularity().fit(tiny_shop).save(tmp_path / "pop.npz")
    (tmp_path / "pop.json").write_text('{"metrics": {"NDCG@10": 0.25}, "privacy": {"epsilon": 3.0}}')
    client = make_client(model_dir=str(tmp_path))
    assert client.get("/v1/model", headers=ADMIN).json()["name"] == "item-knn"
    r = client.post("/v1/model/reload", json={"path": "pop.npz"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["name"] == "pop" and status["offline_metrics"] == {"NDCG@10": 0.25}
    assert status["privacy"] == {"epsilon": 3.0} and status["path"] == "pop.npz"
    assert recommend(client, shopper_id="kim")["model"] == "pop"


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("../outside.npz", 422, "The model path must lie inside the model directory. Got '../outside.npz'."),
        ("missing.npz", 404, "No model file 'missing.npz' in the model directory."),
        ("broken.npz", 422, "not a shoprec model file"),
    ],
)
def test_a_bad_reload_is_refused_and_the_old_model_keeps_serving(make_client, tmp_path, path, status, message):
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    client = make_client(model_dir=str(tmp_path))
    r = client.post("/v1/model/reload", json={"path": path}, headers=ADMIN)
    assert r.status_code == status and message in r.json()["error"]["message"]
    assert client.get("/v1/model", headers=ADMIN).json()["name"] == "item-knn"


def test_without_a_model_recommendations_are_503_with_what_to_do(make_client):
    client = make_client(model=None)
    r = client.post("/v1/recommendations", json={"session": []}, headers=ADMIN)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "model_not_ready" and "POST /v1/model/reload" in r.json()["error"]["message"]
    assert client.get("/v1/health").json()["status"] == "degraded"


def test_the_service_serves_a_trained_transformer_and_follows_live_events(make_client, tiny_shop, tmp_path):
    from shoprec.models.base import Recommender
    from shoprec.models.registry import make_model

    model = make_model("transformer", d=16, n_layers=1, max_len=8, epochs=3, device="cpu", seed=0).fit(tiny_shop)
    loaded = Recommender.load(model.save(tmp_path / "transformer.npz"))  # as `shoprec train` writes it
    client = make_client(model=loaded)
    first = recommend(client, session=[{"item_id": "i1", "event": "view"}])
    second = recommend(client, session=[{"item_id": "i1", "event": "view"}, {"item_id": "i5", "event": "purchase"}])
    assert first["items"] and second["items"]
    assert "i5" not in _ids(second) and "i1" not in _ids(second)
    expected = [i for i, _ in loaded.recommend_history(["i1", "i5"], events=["view", "purchase"], k=3)]
    assert _ids(second)[:3] == expected  # the slate is the model's own ranking (exploration is off)
