"""Shopper-scoped access: the shop's backend exchanges its key for a short-lived token bound to
one shopper (or an anonymous session); whoever holds the token reads and writes that shopper's
data only. Server-to-server read keys see no history in explanations without the history role."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from serve_helpers import ADMIN, api_key, event, export, recommend

from shoprec.serve.routers.recommend import HIDDEN_HISTORY


def _token(client, headers=ADMIN, **body) -> dict:
    r = client.post("/v1/tokens", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def _bearer(token: dict) -> dict:
    return {"Authorization": f"Bearer {token['token']}"}


@pytest.fixture
def two_shoppers(client):
    """alice viewed a mug; bob bought a tea pot. alice holds a token, the test plays her."""
    assert client.post("/v1/events", json=event("a1", "alice", "i1"), headers=ADMIN).status_code == 200
    assert client.post("/v1/events", json=event("b1", "bob", "i3", kind="purchase"), headers=ADMIN).status_code == 200
    recommend(client, shopper_id="bob")
    return _bearer(_token(client, shopper_id="alice"))


# ---- what a token is ---------------------------------------------------------------------------
def test_a_shopper_token_holds_the_pseudonym_roles_and_expiry_but_no_raw_id(client):
    issued = _token(client, shopper_id="jane.doe@example.com", roles=["read"], ttl_s=600)
    assert issued["kind"] == "shopper" and issued["roles"] == ["read"] and issued["token"].startswith("st_")
    claims = jwt.decode(issued["token"][3:], options={"verify_signature": False})
    assert claims["sub"].startswith("test.") and claims["scp"] == ["read"]
    assert claims["exp"] - claims["iat"] == 600 and issued["expires_at"] == claims["exp"]
    assert "jane" not in json.dumps(claims)


def test_token_lifetime_is_capped_by_the_service_setting(make_client):
    client = make_client(token_ttl_s=120)
    issued = _token(client, shopper_id="x", ttl_s=3600)
    assert issued["expires_at"] - time.time() <= 121


def test_expired_forged_and_tampered_tokens_are_401(client):
    good = _token(client, shopper_id="alice")["token"]
    claims = jwt.decode(good[3:], options={"verify_signature": False})
    expired = "st_" + jwt.encode(claims | {"exp": int(time.time()) - 5}, "wrong-secret-of-32-bytes-or-more!!", "HS256")
    forged = "st_" + jwt.encode(claims | {"sub": "test.someone-else"}, "wrong-secret-of-32-bytes-or-more!!", "HS256")
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for token in (expired, forged, tampered, "st_not-a-jwt", "Bearer"):
        r = client.post("/v1/me/recommendations", json={"k": 3}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token


def test_a_token_cannot_hold_roles_its_key_lacks_nor_issue_tokens(client):
    reader = api_key(client, "reader", ["read"])
    r = client.post("/v1/tokens", json={"shopper_id": "x", "roles": ["read", "ingest"]}, headers=reader)
    assert r.status_code == 403 and "['ingest']" in r.json()["error"]["message"]
    token = _bearer(_token(client, headers=reader, shopper_id="x", roles=["read"]))
    assert client.post("/v1/tokens", json={"shopper_id": "y"}, headers=token).status_code == 403
    assert client.post("/v1/me/events", json={"events": [{"event_id": "e", "item_id": "i1", "event": "view"}]},
                       headers=token).status_code == 403  # read-only token


def test_a_session_token_makes_up_an_anonymous_shopper_and_remembers_it(client):
    issued = _token(client, session=True)
    assert issued["session_id"].startswith("session-")
    headers = _bearer(issued)
    r = client.post("/v1/me/events", json={"events": [{"event_id": "s1", "item_id": "i3", "event": "purchase"}]},
                    headers=headers)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert len(export(client, issued["session_id"])["events"]) == 1


def test_the_token_request_names_exactly_one_kind(client):
    for body in ({}, {"shopper_id": "a", "session": True}, {"dashboard": True, "shopper_id": "a"}):
        assert client.post("/v1/tokens", json=body, headers=ADMIN).status_code == 422, body


def test_a_dashboard_token_reads_aggregates_only(client):
    headers = _bearer(_token(client, dashboard=True))
    assert client.get("/v1/stats", headers=headers).status_code == 200
    assert client.get("/v1/model", headers=headers).status_code == 200
    assert client.get("/v1/model/retrains", headers=headers).status_code == 200
    for method, url, body in [("POST", "/v1/recommendations", {"shopper_id": "bob"}),
                              ("POST", "/v1/me/recommendations", {}), ("GET", "/v1/items", None),
                              ("POST", "/v1/shoppers/export", {"shopper_id": "bob"}), ("GET", "/v1/keys", None)]:
        assert client.request(method, url, json=body, headers=headers).status_code == 403, url


# ---- a shopper token acts on its own shopper only --------------------------------------------
def test_the_own_shopper_reads_their_history_and_sends_their_events(client, two_shoppers):
    r = client.post("/v1/me/events", json={"events": [{"event_id": "a2", "item_id": "i3", "event": "purchase"}]},
                    headers=two_shoppers)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    body = client.post("/v1/me/recommendations", json={"k": 3}, headers=two_shoppers).json()
    first = body["items"][0]["explanation"]
    assert first["code"] == "history" and first["anchor_item_id"] in {"i1", "i3"}
    assert {e["item_id"] for e in export(client, "alice")["events"]} == {"i1", "i3"}
    same = client.post("/v1/recommendations", json={"shopper_id": "alice", "k": 3}, headers=two_shoppers)
    assert same.status_code == 200  # naming its own shopper is allowed


# One request per operation of the API, naming bob wherever a shopper can be named. A test below
# checks that this table covers every operation, so a new endpoint cannot skip the check.
CROSS_SHOPPER_ATTEMPTS = [
    ("POST", "/v1/events", event("x1", "bob", "i2")),
    ("POST", "/v1/events/batch", {"events": [event("x2", "bob", "i2")]}),
    ("POST", "/v1/me/events", {"events": [{"event_id": "x3", "item_id": "i2", "event": "view"}]}),
    ("POST", "/v1/items/batch", {"items": [{"item_id": "i1", "title": "bob's"}]}),
    ("PUT", "/v1/items/i1", {"title": "bob's"}),
    ("PATCH", "/v1/items/i1", {"title": "bob's"}),
    ("GET", "/v1/items/i3", None),
    ("GET", "/v1/items", None),
    ("GET", "/v1/items/i3/similar", None),
    ("POST", "/v1/recommendations", {"shopper_id": "bob", "k": 5}),
    ("POST", "/v1/me/recommendations", {"k": 5}),
    ("POST", "/v1/shoppers/export", {"shopper_id": "bob"}),
    ("POST", "/v1/shoppers/erase", {"shopper_id": "bob"}),
    ("GET", "/v1/model", None),
    ("POST", "/v1/model/reload", {}),
    ("POST", "/v1/model/retrain", None),
    ("GET", "/v1/model/retrains", None),
    ("GET", "/v1/keys", None),
    ("POST", "/v1/keys", {"name": "bobs-key", "roles": ["admin"]}),
    ("DELETE", "/v1/keys/admin", None),
    ("GET", "/v1/stats", None),
    ("POST", "/v1/tokens", {"shopper_id": "bob"}),
    ("GET", "/v1/health", None),
    ("GET", "/v1/metrics", None),
    ("PUT", "/v1/shoppers/privacy", {"shopper_id": "bob", "choice": "none"}),
    ("GET", "/v1/me/privacy", None),
    ("PUT", "/v1/me/privacy", {"choice": "private"}),
    ("POST", "/v1/experiments", {"id": "bobs", "variants": {"a": {}, "b": {}}}),
    ("GET", "/v1/experiments", None),
    ("GET", "/v1/experiments/bobs", None),
    ("POST", "/v1/experiments/bobs/stop", None),
]


def _template(url: str) -> str:
    for concrete, template in (("/v1/items/i3/similar", "/v1/items/{item_id}/similar"),
                               ("/v1/items/i3", "/v1/items/{item_id}"), ("/v1/items/i1", "/v1/items/{item_id}"),
                               ("/v1/keys/admin", "/v1/keys/{name}"),
                               ("/v1/experiments/bobs", "/v1/experiments/{experiment_id}"),
                               ("/v1/experiments/bobs/stop", "/v1/experiments/{experiment_id}/stop")):
        if url == concrete:
            return template
    return url


def test_the_attempts_cover_every_operation_of_the_api(client):
    operations = {(m.upper(), p) for p, ops in client.app.openapi()["paths"].items() for m in ops}
    assert {(m, _template(u)) for m, u, _ in CROSS_SHOPPER_ATTEMPTS} == operations


def test_a_shopper_token_reads_no_other_shoppers_data_on_any_endpoint(client, two_shoppers):
    bob_pseudonym = export(client, "bob")["pseudonyms"][0]
    bob_before = export(client, "bob")
    cross_reads, writes_as_bob = [], []
    for method, url, body in CROSS_SHOPPER_ATTEMPTS:
        r = client.request(method, url, json=body, headers=two_shoppers)
        assert r.status_code < 500, (url, r.text)
        names_bob = body is not None and "bob" in json.dumps(body) and "bob's" not in json.dumps(body)
        if names_bob and r.status_code < 300:
            (writes_as_bob if method != "GET" and "event" in url else cross_reads).append(url)
        text = r.text
        if bob_pseudonym in text or "tea pot" in text and "Because you bought" in text:
            cross_reads.append(url)
    assert cross_reads == [] and writes_as_bob == []
    after = export(client, "bob")
    assert after["events"] == bob_before["events"] and len(after["impressions"]) == len(bob_before["impressions"])
    items = {i["item_id"]: i for i in client.get("/v1/items", headers=ADMIN).json()["items"]}
    assert items["i1"]["title"] != "bob's"  # a token cannot change the catalogue


# ---- keys without the history role ------------------------------------------------------------
def test_a_plain_read_key_gets_no_history_in_explanations(client):
    client.post("/v1/events", json=event("h1", "erin", "i3", kind="purchase"), headers=ADMIN)
    reader = api_key(client, "reader", ["read"])
    historian = api_key(client, "historian", ["read", "history"])
    hidden = recommend(client, headers=reader, shopper_id="erin")["items"][0]["explanation"]
    shown = recommend(client, headers=historian, shopper_id="erin")["items"][0]["explanation"]
    assert hidden == {"code": "history", "text": HIDDEN_HISTORY, "anchor_item_id": None, "basis": "similarity"}
    assert shown["text"] == "Because you bought “tea pot”" and shown["anchor_item_id"] == "i3"


def test_a_token_ends_with_a_rotation_of_the_pseudonym_key(make_client):
    from shoprec.privacy.pseudonym import Pseudonymizer

    first = make_client(pseudonymizer=Pseudonymizer([("old", b"o" * 32)]))
    token = _bearer(_token(first, shopper_id="jo"))
    rotated = make_client(with_catalogue=False, pseudonymizer=Pseudonymizer([("new", b"n" * 32), ("old", b"o" * 32)]))
    assert rotated.post("/v1/me/recommendations", json={"k": 3}, headers=token).status_code == 401
