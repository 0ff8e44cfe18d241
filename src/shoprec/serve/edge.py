"""The service's edge, as ASGI middleware: what every request passes before a route sees it.

Outermost first: `Instrument` (counts and times every response, rejections too), `HostCheck`
(the Host header against the allow-list: DNS rebinding), `InFlightLimit` (backpressure: 503 with
Retry-After beyond `max_in_flight`), `Authenticate` (a valid key or token before any byte of the
body is read, so an anonymous caller cannot make the service parse a megabyte of JSON), and
`BodyLimit` (413 above `max_body_bytes`, with or without Content-Length). Every rejection is
the API's one error shape. Timeouts on the connection itself (a request's head and body must
arrive in time) live in `shoprec.serve.http_protocol`, below ASGI.
"""

from __future__ import annotations

import time

from shoprec.serve.http_errors import error_json
from shoprec.serve.service import Metrics, credential, unauthorized

__all__ = ["Authenticate", "BodyLimit", "HostCheck", "InFlightLimit", "Instrument"]


class BodyLimit:
    """Rejects request bodies above `max_bytes` with 413, whether or not Content-Length is sent."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    return await self._reject(scope, receive, send)
        seen = 0
        started = rejected = False

        async def limited_receive():
            nonlocal seen, rejected, started
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Answer 413 now and tell the app the client left; what it sends later is dropped.
                    if not started:
                        started = rejected = True
                        await self._reject(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, scope, receive, send):
        response = error_json(413, "too_large", f"The request body may hold at most {self.max_bytes} bytes.")
        await response(scope, receive, send)


class Instrument:
    """Counts requests and times them per route template (never per raw path)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - t0)


class HostCheck:
    """Answers only requests whose Host header names an allowed host (any port); 400 otherwise."""

    def __init__(self, app, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in self.allowed:
            response = error_json(400, "bad_host", "This service does not answer for that Host header "
                                                   "(see the allowed_hosts setting).")
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


class InFlightLimit:
    """At most `limit` requests in the app at once; the next get 503 with Retry-After at once,
    instead of queueing until every client times out."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0  # one event loop per process: no lock needed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            response = error_json(503, "overloaded", f"The service is handling {self.limit} requests; retry shortly.",
                                  headers={"Retry-After": "1"})
            return await response(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class Authenticate:
    """Authenticates /v1 requests (but the public ones) from their headers alone and hands the
    principal to the routes (`request.state.principal`); 401 before the body is read."""

    def __init__(self, app, keys, public: frozenset[str]) -> None:
        self.app = app
        self.keys = keys
        self.public = public

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/") or path in self.public:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        principal = self.keys.authenticate(credential(headers))
        if principal is None:
            error = unauthorized()
            response = error_json(401, error.code, error.detail, headers=error.headers)
            return await response(scope, receive, send)
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)
