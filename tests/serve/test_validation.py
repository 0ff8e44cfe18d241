"""Bad input gets a clear 4xx JSON error naming the field and the rule (SQLite only: the
validation runs before storage, whatever the backend)."""

from __future__ import annotations

import json

import pytest
from serve_helpers import ADMIN, event


@pytest.fixture
def database_url(tmp_path) -> str:  # overrides the two-backend fixture of conftest
    return f"sqlite:///{tmp_path / 'shop.db'}"


LONG_ID = "x" * 65
OK_EVENT = event("e1", "s1", "i1")

CASES = [
    # (method, url, body, status, message)
    ("POST", "/v1/recommendations", {"session": [], "colour": "red"}, 422,
     "body.colour: Extra inputs are not permitted"),
    ("POST", "/v1/recommendations", {"session": [], "k": "5"}, 422, "body.k: Input should be a valid integer"),
    ("POST", "/v1/recommendations", {"session": [], "k": 0}, 422,
     "body.k: Input should be greater than or equal to 1"),
    ("POST", "/v1/recommendations", {"session": [], "k": 1001}, 422,
     "body.k: Input should be less than or equal to 1000"),
    ("POST", "/v1/recommendations", {"session": [], "k": 101}, 422,
     "The 'k' parameter must be an int in [1, 100]. Got 101 instead."),
    ("POST", "/v1/recommendations", {"session": [], "k": True}, 422, "body.k: Input should be a valid integer"),
    ("POST", "/v1/recommendations", {}, 422, "body: Value error, give exactly one of shopper_id (a known shopper) or session (anonymous)"),
    ("POST", "/v1/recommendations", {"shopper_id": "a", "session": []}, 422,
     "body: Value error, give exactly one of shopper_id (a known shopper) or session (anonymous)"),
    ("POST", "/v1/recommendations", {"shopper_id": "x" * 257}, 422,
     "body.shopper_id: String should have at most 256 characters"),
    ("POST", "/v1/recommendations", {"shopper_id": "a\nb"}, 422,
     "body.shopper_id: String should match pattern"),
    ("POST", "/v1/recommendations", {"session": [], "exploration": 1.5}, 422,
     "body.exploration: Input should be less than or equal to 1"),
    ("POST", "/v1/recommendations", {"session": [], "filters": {"min_price": 5, "max_price": 1}}, 422,
     "body.filters: Value error, min_price (5.0) must not exceed max_price (1.0)"),
    ("POST", "/v1/recommendations", {"session": [{"item_id": LONG_ID}]}, 422,
     "body.session.0.item_id: String should have at most 64 characters"),
    ("POST", "/v1/events", {**OK_EVENT, "event": "teleport"}, 422,
     "body.event: Input should be 'view', 'cart', 'favourite', 'purchase' or 'rating'"),
    ("POST", "/v1/events", {**OK_EVENT, "item_id": LONG_ID}, 422,
     "body.item_id: String should have at most 64 characters"),
    ("POST", "/v1/events", {**OK_EVENT, "event_id": "has space"}, 422, "body.event_id: String should match pattern"),
    ("POST", "/v1/events", {**OK_EVENT, "timestamp": -1}, 422,
     "body.timestamp: Value error, a timestamp number must lie in [0, 32503680000000]"),
    ("POST", "/v1/events", {**OK_EVENT, "timestamp": "2026-12-02T10:15:00"}, 422,
     "body.timestamp: Value error, a timestamp string must be an RFC 3339 date-time with a UTC offset"),
    ("POST", "/v1/events", {**OK_EVENT, "timestamp": "yesterday"}, 422,
     "body.timestamp: Value error, a timestamp string must be an RFC 3339 date-time with a UTC offset"),
    ("POST", "/v1/events", {**OK_EVENT, "impression_id": "abc"}, 422,
     "body.impression_id: String should match pattern '^[0-9a-f]{32}$'"),
    ("POST", "/v1/events", {k: v for k, v in OK_EVENT.items() if k != "event_id"}, 422,
     "body.event_id: Field required"),
    ("POST", "/v1/events/batch", {"events": []}, 422,
     "body.events: List should have at least 1 item after validation, not 0"),
    ("PUT", "/v1/items/i1", {"price": -1}, 422, "body.price: Input should be greater than or equal to 0"),
    ("PUT", "/v1/items/i1", {"price": "3.50"}, 422, "body.price: Input should be a valid number"),
    ("PUT", "/v1/items/i1", {"title": "x" * 301}, 422, "body.title: String should have at most 300 characters"),
    ("PUT", f"/v1/items/{LONG_ID}", {}, 422, "path.item_id: String should have at most 64 characters"),
    ("GET", "/v1/items/i1/similar?k=0", None, 422, "query.k: Input should be greater than or equal to 1"),
    ("GET", "/v1/items?limit=abc", None, 422, "query.limit: Input should be a valid integer, unable to parse"),
    ("POST", "/v1/keys", {"name": "n", "roles": ["root"]}, 422, "body.roles.0: Input should be 'ingest', 'read', 'history' or 'admin'"),
    ("POST", "/v1/model/reload", {"path": "/etc/passwd\n"}, 422, "body.path: String should match pattern"),
    ("GET", "/v1/nope", None, 404, "Not Found"),
    ("DELETE", "/v1/recommendations", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method, url, body, status, message", CASES, ids=[c[4][:40] for c in CASES])
def test_bad_input_is_a_clear_4xx_json_error(client, method, url, body, status, message):
    r = client.request(method, url, json=body, headers=ADMIN)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"].startswith(message)
    assert error["code"] in {"validation_error", "invalid_parameter", "not_found", "method_not_allowed"}


def test_malformed_json_is_400_as_documented(client):
    r = client.post("/v1/events", content=b"{not json", headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json" and r.json()["error"]["message"] == "The request body is not valid JSON."
    assert "400" in client.get("/openapi.json").json()["paths"]["/v1/events"]["post"]["responses"]


@pytest.mark.parametrize("sent, stored", [
    (1_764_670_500, 1_764_670_500),            # seconds
    (1_764_670_500_123, 1_764_670_500),        # milliseconds
    (1_764_670_500.9, 1_764_670_500),          # fractional seconds
    ("2025-12-02T10:15:00Z", 1_764_670_500),   # RFC 3339, UTC
    ("2025-12-02T11:15:00+01:00", 1_764_670_500),
])
def test_timestamps_are_accepted_as_seconds_milliseconds_or_rfc3339(client, sent, stored):
    r = client.post("/v1/events", json={**OK_EVENT, "event_id": f"t{abs(hash(sent))}", "timestamp": sent}, headers=ADMIN)
    assert r.status_code == 200, r.text
    export = client.post("/v1/shoppers/export", json={"shopper_id": OK_EVENT["shopper_id"]}, headers=ADMIN).json()
    assert [e["ts"] for e in export["events"]] == [stored]


def test_nan_and_infinity_are_refused(client):
    body = json.dumps({**OK_EVENT, "value": float("nan")})  # Python writes the non-standard NaN
    r = client.post("/v1/events", content=body, headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["message"] == "body.value: Input should be a finite number"


def test_body_over_the_size_limit_is_413_before_parsing(make_client):
    client = make_client(with_catalogue=False, max_body_bytes=2048)
    batch = {"events": [event(f"e{i}", "s", "i1") for i in range(100)]}
    r = client.post("/v1/events/batch", json=batch, headers=ADMIN)
    assert r.status_code == 413
    assert r.json()["error"] == {"code": "too_large", "message": "The request body may hold at most 2048 bytes."}


def test_body_without_content_length_is_limited_too(make_client):
    client = make_client(with_catalogue=False, max_body_bytes=2048)

    async def chunks():  # a streamed body: no Content-Length header
        yield b'{"events": ['
        for i in range(100):
            yield json.dumps(event(f"e{i}", "s", "i1")).encode() + b","
        yield b"]}"

    r = client.post("/v1/events/batch", content=chunks(), headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == 413


def test_item_batch_over_the_configured_limit_is_413(make_client):
    client = make_client(with_catalogue=False, max_batch=2)
    items = [{"item_id": f"i{j}"} for j in range(3)]
    r = client.post("/v1/items/batch", json={"items": items}, headers=ADMIN)
    assert r.status_code == 413 and r.json()["error"]["code"] == "batch_too_large"
