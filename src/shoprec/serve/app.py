"""The app factory: `create_app(settings)` builds one FastAPI service.

Creating the app connects to the database, brings its schema up to date (Alembic), reads the
catalogue and loads the model, so that the first request is served warm. Nothing happens at
import time.
"""

from __future__ import annotations

import secrets
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from shoprec import __version__
from shoprec.privacy.pseudonym import Pseudonymizer
from shoprec.serve.auth import KeyRing, RateLimiter
from shoprec.serve.engine import ServingEngine
from shoprec.serve.http_errors import error_json, install_handlers
from shoprec.serve.online import OnlineLearner
from shoprec.serve.routers import admin, catalogue, events, recommend, shoppers, system, web
from shoprec.serve.service import Metrics, Service, reject_unknown_query
from shoprec.serve.settings import ServeSettings
from shoprec.serve.storage import Store

__all__ = ["app_from_env", "create_app"]

DESCRIPTION = """\
Real-time recommendations for a shop: ingest behaviour events and catalogue updates, ask for
recommendations with explanations, similar items, export or erase a shopper's data, reload a
newly trained model.

Every /v1 call except `/v1/health` needs an API key (`X-API-Key` header) with the right role:
`ingest`, `read` or `admin`. Shopper ids are pseudonymised (keyed HMAC) on arrival and never
stored or logged raw. Errors are JSON: `{"error": {"code", "message", "details"}}`.
"""


def create_app(
    settings: ServeSettings | None = None,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    model=None,
) -> FastAPI:
    """Build the service.

    settings: defaults to `ServeSettings.from_env()`.
    pseudonymizer: defaults to `Pseudonymizer.from_env(data_dir=...)`, which refuses to start
        without a key (SHOPREC_PSEUDONYM_KEY or SHOPREC_PSEUDONYM_KEY_FILE).
    model: a fitted Recommender to serve instead of loading `settings.model_path`.
    """
    settings = settings or ServeSettings.from_env()
    pseudonymizer = pseudonymizer or Pseudonymizer.from_env(data_dir=settings.data_dir)
    store = Store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    store.migrate()
    engine = ServingEngine(ann_threshold=settings.ann_threshold, new_item_days=settings.new_item_days,
                           exploration=settings.online_config(), latency_budget_ms=settings.latency_budget_ms)
    service = Service(
        settings=settings, store=store, engine=engine,
        keys=KeyRing(store, settings.admin_key),
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        pseudonymizer=pseudonymizer, metrics=Metrics(),
    )
    service.keys.refresh()
    service.refresh_catalogue()
    if model is not None:
        service.serve_model(model)
    elif settings.model_path:
        service.serve_model(settings.model_path)
    service.metrics.model_loaded.set(1 if engine.model_view is not None else 0)
    if settings.demo:
        service.demo_key = "demo_" + secrets.token_hex(24)
        service.keys.add_memory_key("demo-page", service.demo_key, frozenset({"read", "ingest"}))

    service.learner = OnlineLearner(service, settings.retrain_every_s, settings.retrain_min_events,
                                    settings.retrain_epochs, follow_s=settings.follow_retrains_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.learner.start()
        yield
        service.learner.stop()
        store.dispose()

    app = FastAPI(
        title="shoprec recommendation service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "events", "description": "Behaviour events, idempotent by client event id"},
            {"name": "catalogue", "description": "Catalogue import and updates; similar items"},
            {"name": "recommendations", "description": "Recommendations with explanations"},
            {"name": "shoppers", "description": "Export and erasure of a shopper's data"},
            {"name": "model", "description": "The served model: status and hot reload"},
            {"name": "keys", "description": "API keys and roles"},
            {"name": "dashboard", "description": "Statistics behind the dashboard"},
            {"name": "system", "description": "Health and Prometheus metrics"},
        ],
    )
    app.state.service = service
    install_handlers(app)
    for module in (events, catalogue, recommend, shoppers, admin, system):
        app.include_router(module.router, dependencies=[Depends(reject_unknown_query)])
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_Instrument, metrics=service.metrics)  # outermost: it sees the 413s too
    return app


def app_from_env() -> FastAPI:
    """The app from SHOPREC_* environment variables: what each worker process of
    `shoprec serve --workers N` builds (uvicorn imports it by name)."""
    return create_app(ServeSettings.from_env())


class _BodyLimit:
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


class _Instrument:
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
