"""The app factory: `create_app(settings)` builds one FastAPI service.

Creating the app connects to the database, brings its schema up to date (Alembic), reads the
catalogue and loads the model, so that the first request is served warm. Nothing happens at
import time.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from shoprec import __version__
from shoprec.privacy.pseudonym import Pseudonymizer
from shoprec.serve.auth import KeyRing, RateLimiter
from shoprec.serve.edge import Authenticate, BodyLimit, HostCheck, InFlightLimit, Instrument
from shoprec.serve.engine import ServingEngine
from shoprec.serve.http_errors import install_handlers
from shoprec.serve.online import OnlineLearner
from shoprec.serve.openapi import with_enforced_limits
from shoprec.serve.routers import (
    admin,
    catalogue,
    events,
    experiments,
    recommend,
    shoppers,
    system,
    tokens,
    web,
)
from shoprec.serve.service import Metrics, Service, reject_unknown_query
from shoprec.serve.settings import ServeSettings
from shoprec.serve.storage import Store
from shoprec.serve.tokens import TokenSigner

__all__ = ["app_from_env", "create_app"]

DESCRIPTION = """\
Real-time recommendations for a shop: ingest behaviour events and catalogue updates, ask for
recommendations with explanations, similar items, export or erase a shopper's data, reload a
newly trained model.

Every /v1 call except `/v1/health` needs an API key (`X-API-Key` header, or `Authorization:
Bearer`) with the right role: `ingest`, `read`, `history` or `admin`; or a short-lived token from
`POST /v1/tokens`, bound to one shopper (a browser holds it, never a key). Shopper ids are
pseudonymised (keyed HMAC) on arrival and never stored or logged raw. Errors are JSON:
`{"error": {"code", "message", "details"}}`.
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
        keys=KeyRing(store, settings.admin_key,
                     tokens=TokenSigner(pseudonymizer.derive_secret("shoprec tokens"), settings.token_ttl_s)),
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        pseudonymizer=pseudonymizer, metrics=Metrics(),
    )
    try:
        service.keys.refresh()
        service.refresh_catalogue()
        if model is not None:
            service.serve_model(model)
        elif settings.model_path:
            service.serve_model(settings.model_path)
    except BaseException:
        store.dispose()  # a service that cannot start leaves no open connection behind
        raise
    service.metrics.model_loaded.set(1 if engine.model_view is not None else 0)
    service.learner = OnlineLearner(service, settings.retrain_every_s, settings.retrain_min_events,
                                    settings.retrain_epochs, follow_s=settings.follow_retrains_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.learner.start()
        yield
        service.learner.stop()
        service.keys.close()
        store.dispose()

    # FastAPIOffline: Swagger UI and ReDoc from packaged assets, so /docs works with no network.
    app = FastAPIOffline(
        title="shoprec recommendation service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "events", "description": "Behaviour events, idempotent by client event id"},
            {"name": "catalogue", "description": "Catalogue import and updates; similar items"},
            {"name": "recommendations", "description": "Recommendations with explanations"},
            {"name": "shoppers", "description": "Export and erasure of a shopper's data, and their privacy choice"},
            {"name": "experiments", "description": "Online A/B experiments and their statistics"},
            {"name": "model", "description": "The served model: status and hot reload"},
            {"name": "keys", "description": "API keys and roles"},
            {"name": "dashboard", "description": "Statistics behind the dashboard"},
            {"name": "system", "description": "Health and Prometheus metrics"},
        ],
    )
    app.state.service = service
    install_handlers(app)
    for module in (events, catalogue, recommend, shoppers, experiments, admin, tokens, system):
        app.include_router(module.router, dependencies=[Depends(reject_unknown_query)])
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    with_enforced_limits(app, settings)
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    public = frozenset({"/v1/health"} | ({"/v1/metrics"} if settings.metrics_public else set()))
    app.add_middleware(Authenticate, keys=service.keys, public=public)
    app.add_middleware(InFlightLimit, limit=settings.max_in_flight)
    if settings.host_allow_list is not None:
        app.add_middleware(HostCheck, allowed=settings.host_allow_list)
    app.add_middleware(Instrument, metrics=service.metrics)  # outermost: it sees every rejection too
    return app


def app_from_env() -> FastAPI:
    """The app from SHOPREC_* environment variables: what each worker process of
    `shoprec serve --workers N` builds (uvicorn imports it by name)."""
    return create_app(ServeSettings.from_env())
