"""Model status and hot reload, API keys, and the dashboard's statistics."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from shoprec.errors import UnknownIdError
from shoprec.serve.http_errors import ERROR_RESPONSES, error_responses
from shoprec.serve.schemas import (
    KeyOut,
    KeyRequest,
    ModelStatus,
    NewKey,
    ReloadRequest,
    RetrainQueued,
    RetrainRun,
    Stats,
)
from shoprec.serve.service import Admin, AnyReader, DashboardReader, ServiceDep

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)


@router.get("/model", response_model=ModelStatus, tags=["model"], summary="The served model")
def model_status(service: ServiceDep, _: AnyReader) -> ModelStatus:
    """The served model, why it was chosen, its offline metrics, data window and privacy record:
    no shopper's data, so any credential with the read role may ask (shopper tokens too)."""
    return ModelStatus(**service.status())


@router.post("/model/reload", response_model=ModelStatus, tags=["model"], summary="Load a newly trained model",
             responses=error_responses(404))
def reload_model(service: ServiceDep, _: Admin, req: ReloadRequest | None = None) -> ModelStatus:
    """Loads the model file (inside the model directory) while the old model keeps serving,
    then swaps; a file that fails to load leaves the old model in place."""
    path = service.resolve_model_path(req.path if req else None)
    try:
        service.serve_model(path)
    except Exception:
        service.metrics.reloads.labels("failed").inc()
        raise
    service.metrics.reloads.labels("ok").inc()
    service.metrics.model_loaded.set(1)
    return ModelStatus(**service.status())


@router.post("/model/retrain", response_model=RetrainQueued, status_code=202, tags=["model"],
             summary="Fine-tune the served model on the events since it was trained")
def retrain(service: ServiceDep, _: Admin) -> RetrainQueued:
    """Queues a run of the online learning job (it also runs every `retrain_every_s`). The run
    fine-tunes a copy of the model on the new events, validates it on each shopper's newest one
    and swaps it in only when it is not worse; requests are served by the old model meanwhile.
    `GET /v1/model/retrains` reports how it went."""
    service.learner.submit("retrain", "api")
    return RetrainQueued(queued=True, running=service.learner.running)


@router.get("/model/retrains", response_model=list[RetrainRun], tags=["model"], summary="Online learning runs")
def retrains(service: ServiceDep, _: DashboardReader,
             limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[RetrainRun]:
    """The latest runs of the online learning job, newest first."""
    return [RetrainRun(**row) for row in service.store.retrains(limit)]


@router.post("/keys", response_model=NewKey, status_code=201, tags=["keys"], summary="Create an API key",
             responses=error_responses(409))
def create_key(req: KeyRequest, service: ServiceDep, _: Admin) -> NewKey:
    stored, secret = service.keys.create(req.name, list(dict.fromkeys(req.roles)))
    return NewKey(name=stored.name, key_id=stored.key_id, roles=sorted(stored.roles),
                  created_at=stored.created_at, key=secret)


@router.get("/keys", response_model=list[KeyOut], tags=["keys"], summary="List active API keys")
def list_keys(service: ServiceDep, _: Admin) -> list[KeyOut]:
    return [KeyOut(name=k.name, key_id=k.key_id, roles=sorted(k.roles), created_at=k.created_at)
            for k in service.store.list_keys()]


@router.delete("/keys/{name}", status_code=204, tags=["keys"], summary="Revoke an API key",
               responses=error_responses(404))
def revoke_key(name: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")],
               service: ServiceDep, _: Admin) -> Response:
    if not service.keys.revoke(name):
        raise UnknownIdError(f"No active API key named {name!r}.")
    return Response(status_code=204)


@router.get("/stats", response_model=Stats, tags=["dashboard"], summary="Traffic, click-through, exploration")
def stats(
    service: ServiceDep,
    _: DashboardReader,
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
    bucket_minutes: Annotated[int, Query(ge=1, le=24 * 60)] = 60,
) -> Stats:
    """Per time bucket: slates, impressions, explored impressions, clicks (events carrying the
    impression id of a slate that showed the item) and all events; plus window totals."""
    since = int(time.time()) - hours * 3600
    raw = service.store.stats(since, bucket_minutes * 60)
    series = raw["series"]
    impressions = sum(p["impressions"] for p in series)
    clicks = sum(p["clicks"] for p in series)
    explored = sum(p["explored"] for p in series)
    n_items = len(service.engine.catalogue)
    return Stats(
        since=since, bucket_seconds=bucket_minutes * 60, series=series,
        click_through=clicks / impressions if impressions else None,
        exploration_share=explored / impressions if impressions else None,
        catalogue_items=n_items,
        catalogue_coverage=raw["distinct_items_recommended"] / n_items if n_items else None,
        weight_histogram=service.store.weight_histogram(since),
        served_paths=dict(service.engine.load.served),
        retrains=[RetrainRun(**row) for row in service.store.retrains(10)],
        model=ModelStatus(**service.status()),
    )
