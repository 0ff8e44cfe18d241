"""Health and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shoprec import __version__
from shoprec.serve.http_errors import error_responses
from shoprec.serve.schemas import Health
from shoprec.serve.service import API_KEY_HEADER, ServiceDep, require

router = APIRouter(prefix="/v1", tags=["system"])


@router.get("/health", response_model=Health, summary="Liveness and readiness",
            responses={503: {"model": Health, "description": "The database does not answer"}})
def health(service: ServiceDep):
    """No key needed and no data returned: whether the database answers and a model is loaded."""
    db = service.store.ping()
    loaded = service.engine.model_view is not None
    body = Health(status="ok" if db and loaded else "degraded", database=db, model_loaded=loaded,
                  schema_revision=service.store.schema_revision() if db else None, version=__version__)
    return JSONResponse(body.model_dump(), status_code=200 if db else 503)


async def _metrics_guard(request: Request, key: str | None = Security(API_KEY_HEADER)) -> None:
    if not request.app.state.service.settings.metrics_public:
        await require("read")(request, key)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                     "description": "Prometheus text format"}, **error_responses(401, 403, 429)},
)
def metrics(service: ServiceDep, _: Annotated[None, Depends(_metrics_guard)]) -> Response:
    """Request counts and latencies per route, events, slates, impressions, reloads. Needs a key
    with the read role unless the service runs with metrics_public."""
    service.metrics.model_loaded.set(1 if service.engine.model_view is not None else 0)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
