"""API keys with roles, constant-time checks, revocation, and the per-key rate limit."""

from __future__ import annotations

import pytest
from serve_helpers import ADMIN, event
from sqlalchemy import create_engine, text

from shoprec.errors import ConfigError
from shoprec.serve.auth import KeyRing, Principal, RateLimiter


def _key(client, name: str, roles: list[str]) -> dict:
    r = client.post("/v1/keys", json={"name": name, "roles": roles}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"X-API-Key": r.json()["key"]}


def test_no_key_no_data(client):
    for method, url, body in [
        ("POST", "/v1/recommendations", {"session": []}),
        ("GET", "/v1/items/i1", None),
        ("GET", "/v1/items", None),
        ("POST", "/v1/events", event("e1", "a", "i1")),
        ("POST", "/v1/shoppers/export", {"shopper_id": "a"}),
        ("GET", "/v1/model", None),
        ("GET", "/v1/stats", None),
    ]:
        r = client.request(method, url, json=body)
        assert r.status_code == 401, url
        assert r.json()["error"] == {"code": "unauthorized",
                                     "message": "A valid API key or token is required (header X-API-Key, or Authorization: Bearer)."}


@pytest.mark.parametrize("key", ["wrong", "sr_000000000000_" + "0" * 64, ADMIN["X-API-Key"] + "x", ""])
def test_wrong_keys_are_401(client, key):
    assert client.get("/v1/items/i1", headers={"X-API-Key": key}).status_code == 401


def test_roles_decide_what_a_key_may_do(client):
    read, ingest = _key(client, "reader", ["read"]), _key(client, "feeder", ["ingest"])
    assert client.post("/v1/recommendations", json={"session": []}, headers=read).status_code == 200
    assert client.post("/v1/events", json=event("e1", "a", "i1"), headers=read).status_code == 403
    assert client.post("/v1/events", json=event("e1", "a", "i1"), headers=ingest).status_code == 200
    r = client.post("/v1/recommendations", json={"session": []}, headers=ingest)
    assert r.status_code == 403
    assert r.json()["error"] == {"code": "forbidden", "message": "This credential lacks the 'read' role."}
    for key in (read, ingest):  # only admin exports, erases, reloads and manages keys
        assert client.post("/v1/shoppers/erase", json={"shopper_id": "a"}, headers=key).status_code == 403
        assert client.post("/v1/model/reload", json={}, headers=key).status_code == 403
        assert client.get("/v1/keys", headers=key).status_code == 403


def test_bearer_authorization_works_too(client):
    key = _key(client, "bearer", ["read"])["X-API-Key"]
    assert client.get("/v1/items/i1", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_keys_are_listed_revoked_and_stored_only_as_hashes(client, settings):
    key = _key(client, "temp", ["read", "ingest"])
    listed = client.get("/v1/keys", headers=ADMIN).json()
    assert [(k["name"], k["roles"]) for k in listed] == [("temp", ["ingest", "read"])]
    secret = key["X-API-Key"].rsplit("_", 1)[1]
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        assert secret not in repr(conn.execute(text("SELECT * FROM api_keys")).all())
    engine.dispose()
    assert client.delete("/v1/keys/temp", headers=ADMIN).status_code == 204
    assert client.get("/v1/items/i1", headers=key).status_code == 401
    assert client.delete("/v1/keys/temp", headers=ADMIN).status_code == 404
    assert client.get("/v1/keys", headers=ADMIN).json() == []


def test_key_names_are_unique(client):
    _key(client, "dup", ["read"])
    r = client.post("/v1/keys", json={"name": "dup", "roles": ["read"]}, headers=ADMIN)
    assert r.status_code == 409 and "exists already" in r.json()["error"]["message"]


def test_rate_limit_per_key_answers_429_with_retry_after(make_client):
    client = make_client(rate_limit_per_s=0.001, rate_limit_burst=3)
    other = _key(client, "other", ["read"])  # the catalogue import and this call used 2 admin tokens
    assert client.get("/v1/items/i1", headers=ADMIN).status_code == 200
    r = client.get("/v1/items/i1", headers=ADMIN)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "rate_limited"
    assert client.get("/v1/items/i1", headers=other).status_code == 200  # buckets are per key


def test_token_bucket_refills_at_its_rate():
    limiter = RateLimiter(rate=2.0, burst=2)
    assert limiter.take("k", now=0.0) == 0 and limiter.take("k", now=0.0) == 0
    assert limiter.take("k", now=0.0) == pytest.approx(0.5)
    assert limiter.take("k", now=0.5) == 0  # one token back after half a second
    assert RateLimiter(rate=0, burst=1).take("k") == 0  # 0 disables


def test_keyring_rejects_bad_roles(database_url):
    from shoprec.serve.storage import Store

    store = Store(database_url)
    store.migrate()
    ring = KeyRing(store)
    with pytest.raises(ConfigError, match=r"non-empty subset of \['ingest', 'read', 'history', 'admin'\]"):
        ring.create("x", ["superuser"])
    _, secret = ring.create("y", ["read"])
    assert ring.authenticate(secret) == Principal("y", secret.split("_")[1], frozenset({"read"}))
    assert ring.authenticate(None) is None
    ring.close()
    store.dispose()


def test_keys_are_compared_in_constant_time(monkeypatch, database_url):
    # Every path through authenticate goes through hmac.compare_digest, known key id or not.
    from shoprec.serve import auth
    from shoprec.serve.storage import Store

    calls: list[tuple[str, str]] = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    store = Store(database_url)
    store.migrate()
    ring = KeyRing(store, admin_key="x" * 20)
    assert ring.authenticate("sr_123456789abc_" + "0" * 64) is None
    assert calls and all(len(a) == len(b) == 64 for a, b in calls)
    ring.close()
    store.dispose()
