"""The service's edge: what a request meets before any route. Host allow-list, backpressure,
authentication before the body, request and idle deadlines on real connections, event ids per
source that cannot swallow data, unknown items never silent, explicit category matching, and API
docs that work with no network."""

from __future__ import annotations

import re
import socket
import threading
import time

import anyio
import httpx
import pytest
from serve_helpers import ADMIN, LiveServer, api_key, event, export, recommend

from shoprec.serve.edge import Authenticate, InFlightLimit
from shoprec.serve.http_protocol import deadline_protocol


# ---- event ids are scoped per source and never swallow data ----------------------------------
def test_two_sources_may_use_the_same_event_id(client):
    other = api_key(client, "other-shop-system", ["ingest"])
    assert client.post("/v1/events", json=event("e1", "ann", "i1"), headers=ADMIN).json()["accepted"] == 1
    assert client.post("/v1/events", json=event("e1", "ann", "i2"), headers=other).json()["accepted"] == 1
    assert sorted(e["item_id"] for e in export(client, "ann")["events"]) == ["i1", "i2"]


def test_a_reused_event_id_with_another_payload_is_409_naming_the_differences(client):
    client.post("/v1/events", json=event("e1", "ann", "i1", timestamp=100), headers=ADMIN)
    r = client.post("/v1/events", json=event("e1", "bea", "i2", kind="purchase", timestamp=100), headers=ADMIN)
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "conflict" and "shopper, item_id, event differ" in error["message"]
    [detail] = error["details"]
    assert detail["event_id"] == "e1" and detail["with"] == "stored"
    assert detail["differs"] == {"shopper": "differs", "item_id": {"stored": "i1", "sent": "i2"},
                                 "event": {"stored": "view", "sent": "purchase"}}
    assert "bea" not in r.text and "test." not in r.text  # the shopper is named, neither raw nor pseudonym
    assert export(client, "bea")["events"] == []


def test_a_retry_with_the_same_payload_is_a_duplicate_even_without_a_timestamp(client):
    assert client.post("/v1/events", json=event("e1", "ann", "i1"), headers=ADMIN).json()["accepted"] == 1
    assert client.post("/v1/events", json=event("e1", "ann", "i1"), headers=ADMIN).json() == {
        "accepted": 0, "duplicates": 1, "unknown_items": 0, "unknown_item_ids": [], "not_stored": 0}


def test_a_conflict_inside_one_batch_stores_nothing_of_it(client):
    batch = {"events": [event("c1", "ann", "i1"), event("c2", "ann", "i2"), event("c1", "ann", "i3")]}
    r = client.post("/v1/events/batch", json=batch, headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"]["details"][0]["event_id"] == "c1"
    assert export(client, "ann")["events"] == []


# ---- unknown items ----------------------------------------------------------------------------
def test_events_for_unknown_items_are_counted_in_the_response(client):
    batch = {"events": [event("u1", "ann", "i1"), event("u2", "ann", "nope-1"), event("u3", "ann", "nope-1"),
                        event("u4", "ann", "nope-2")]}
    body = client.post("/v1/events/batch", json=batch, headers=ADMIN).json()
    assert body == {"accepted": 4, "duplicates": 0, "unknown_items": 2, "unknown_item_ids": ["nope-1", "nope-2"],
                    "not_stored": 0}


def test_with_unknown_items_rejected_the_batch_is_422_and_stores_nothing(make_client):
    client = make_client(unknown_items="reject")
    r = client.post("/v1/events/batch", json={"events": [event("u1", "ann", "i1"), event("u2", "ann", "nope")]},
                    headers=ADMIN)
    assert r.status_code == 422 and "'nope'" in r.json()["error"]["message"]
    assert export(client, "ann")["events"] == []


# ---- category matching ------------------------------------------------------------------------
def test_the_category_filter_ignores_case(client):
    items = recommend(client, shopper_id="ann", k=3, filters={"categories": ["KITCHEN"]})["items"]
    assert items and {i["category"] for i in items} == {"kitchen"}


def test_an_unknown_category_is_404_listing_the_known_ones(client):
    r = client.post("/v1/recommendations", json={"shopper_id": "ann", "filters": {"categories": ["bag"]}}, headers=ADMIN)
    assert r.status_code == 404
    assert "'bag'" in r.json()["error"]["message"] and "'garden', 'kitchen'" in r.json()["error"]["message"]


# ---- Host allow-list --------------------------------------------------------------------------
def test_a_host_outside_the_allow_list_is_400(make_client):
    client = make_client(with_catalogue=False, allowed_hosts="shop.example")
    assert client.get("/v1/health", headers={"Host": "shop.example:8000"}).status_code == 200
    r = client.get("/v1/health", headers={"Host": "attacker.example"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_host"


def test_demo_mode_answers_loopback_names_only(make_client):
    client = make_client(with_catalogue=False, demo=True)
    assert client.get("/ui/config", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/ui/config", headers={"Host": "localhost"}).status_code == 200
    # DNS rebinding: a page on rebind.attacker.example resolves its own name to 127.0.0.1.
    assert client.get("/ui/config", headers={"Host": "rebind.attacker.example"}).status_code == 400


# ---- backpressure and authentication, at the ASGI level ----------------------------------------
async def _call(app, path="/v1/items", headers=()):
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "headers": list(headers)}, receive, send)
    return sent


def test_requests_beyond_the_in_flight_limit_get_503_with_retry_after():
    release = anyio.Event()

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = InFlightLimit(slow_app, limit=2)

    async def scenario():
        held: list = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_collect, limited, held, "first")
            tg.start_soon(_collect, limited, held, "second")
            await anyio.sleep(0.05)  # both are inside the app now
            assert limited.in_flight == 2
            third = await _call(limited)
            release.set()
        assert sorted(name for name, _ in held) == ["first", "second"]
        assert all(sent[0]["status"] == 200 for _, sent in held)
        return third

    third = anyio.run(scenario)
    start = third[0]
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
    assert limited.in_flight == 0


async def _collect(app, sink, name):
    sink.append((name, await _call(app)))


def test_slates_are_computed_on_at_most_slate_threads_threads_at_once(make_client):
    # Slates hold the interpreter lock; more threads than this only contend for it.
    service = make_client(with_catalogue=False, slate_threads=2).app.state.service
    running, most = [0], [0]
    lock = threading.Lock()

    def work(arrived: float) -> float:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return arrived

    async def six_at_once():
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(service.run_slate, work)

    anyio.run(six_at_once)
    assert most[0] == 2


def test_an_anonymous_request_is_refused_before_its_body_is_read():
    class Keys:
        def authenticate(self, credential):
            return None

    body_read = []

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        body_read.append(await receive())

    async def scenario():
        sent: list[dict] = []

        async def receive():
            body_read.append("read")
            return {"type": "http.request", "body": b"{" * 1_000_000, "more_body": False}

        async def send(message):
            sent.append(message)

        await Authenticate(app, Keys(), public=frozenset({"/v1/health"}))(
            {"type": "http", "method": "POST", "path": "/v1/events/batch", "headers": []}, receive, send)
        return sent

    sent = anyio.run(scenario)
    assert sent[0]["status"] == 401 and body_read == []


# ---- deadlines on real connections -------------------------------------------------------------
REQUEST_TIMEOUT_S = 0.6
IDLE_TIMEOUT_S = 0.6


@pytest.fixture
def deadline_server(settings, pseudonymizer, knn):
    from shoprec.serve.app import create_app

    server = LiveServer(create_app(settings, pseudonymizer=pseudonymizer, model=knn),
                        http=deadline_protocol(REQUEST_TIMEOUT_S), timeout_keep_alive=IDLE_TIMEOUT_S)
    yield server
    server.stop()


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: 15 s, far
    above the deadlines, so a connection the server keeps open fails the test)."""
    sock.settimeout(15)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port))


def test_a_connection_that_sends_nothing_is_closed(deadline_server):
    with _connect(deadline_server) as sock:
        assert _read_until_closed(sock) == b""


def test_a_slow_request_head_gets_408_and_is_closed(deadline_server):
    with _connect(deadline_server) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b'"code": "request_timeout"' in answer


def test_a_slow_body_gets_408_and_is_closed(deadline_server):
    with _connect(deadline_server) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + ADMIN["X-API-Key"].encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"event_id\":")
        for _ in range(3):  # a byte now and then keeps no deadline alive
            time.sleep(REQUEST_TIMEOUT_S / 4)
            sock.sendall(b" ")
        answer = _read_until_closed(sock)
    assert b" 408 " in answer.split(b"\r\n", 1)[0]


def test_an_idle_keep_alive_connection_is_closed_after_its_response(deadline_server):
    with _connect(deadline_server) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1


def test_a_slow_handler_does_not_trip_the_request_deadline():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/slow")
    def slow() -> dict:
        time.sleep(REQUEST_TIMEOUT_S * 2)  # longer than the deadline, which ends when the request has arrived
        return {"done": True}

    server = LiveServer(app, http=deadline_protocol(REQUEST_TIMEOUT_S), timeout_keep_alive=IDLE_TIMEOUT_S)
    try:
        with httpx.Client(base_url=server.url, timeout=15) as http:
            assert http.get("/slow").json() == {"done": True}
            assert http.get("/slow").json() == {"done": True}  # the same connection, re-armed and disarmed
    finally:
        server.stop()


# ---- API docs offline ---------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_load_every_asset_from_the_service_itself(client, page):
    html = client.get(page).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"""url:\s*["']([^"']+)""", html)
    assert assets and not [a for a in assets if a.startswith(("http://", "https://", "//"))]
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
