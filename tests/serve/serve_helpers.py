"""Constants and small helpers shared by the service tests (imported as `serve_helpers`)."""

from __future__ import annotations

import functools
import socket
import threading
import time

import anyio.from_thread
import httpx

PG_ENV = "SHOPREC_TEST_POSTGRES_URL"
SCHEMA_HEAD = "0006"  # the newest migration: a new one changes this line only

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {"X-API-Key": ADMIN_KEY}
SECRET = "a-test-secret-of-at-least-32-bytes!!"
BACKENDS = ["sqlite", "postgresql"]


def catalogue_rows(tiny_shop) -> list[dict]:
    frame = tiny_shop.catalogue.frame
    return [
        {"item_id": r.item, "title": r.title, "category": r.category, "price": float(r.price)}
        for r in frame.itertuples()
    ]


def event(event_id: str, shopper: str, item: str, kind: str = "view", **extra) -> dict:
    return {"event_id": event_id, "shopper_id": shopper, "item_id": item, "event": kind, **extra}


def api_key(client: ASGIClient, name: str, roles: list[str]) -> dict:
    """Headers with a new API key of these roles, created with the admin key."""
    r = client.post("/v1/keys", json={"name": name, "roles": roles}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"X-API-Key": r.json()["key"]}


def export(client: ASGIClient, shopper: str) -> dict:
    """Everything the service holds about a shopper (admin export)."""
    r = client.post("/v1/shoppers/export", json={"shopper_id": shopper}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def recommend(client: ASGIClient, headers=ADMIN, **body) -> dict:
    r = client.post("/v1/recommendations", json={"k": 3, **body}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


class ASGIClient:
    """A synchronous client for an ASGI app, through httpx's ASGI transport (runs the lifespan).

    Starlette's TestClient is not used: importing it warns about a deprecated anyio alias.
    App exceptions are raised in the test, so an unexpected 500 cannot pass unnoticed.
    """

    def __init__(self, app) -> None:
        self.app = app
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self._lifespan = app.router.lifespan_context(app)
        self.portal.call(self._lifespan.__aenter__)
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self.portal.call(functools.partial(self._client.request, method, url, **kwargs))

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post(self, url, **kw):
        return self.request("POST", url, **kw)

    def put(self, url, **kw):
        return self.request("PUT", url, **kw)

    def patch(self, url, **kw):
        return self.request("PATCH", url, **kw)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)

    def close(self) -> None:
        self.portal.call(self._client.aclose)
        self.portal.call(self._lifespan.__aexit__, None, None, None)
        self._portal_cm.__exit__(None, None, None)


class LiveServer:
    """The app under uvicorn on a free loopback port, in a thread (browser and fuzz tests)."""

    def __init__(self, app, **config) -> None:
        """config: more uvicorn.Config options (http=, timeout_keep_alive=, ...)."""
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                ws="none", **config)  # no websockets: their legacy module warns on import
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
