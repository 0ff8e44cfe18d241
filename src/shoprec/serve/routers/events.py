"""POST /v1/events and /v1/events/batch: idempotent, transactional ingestion."""

from __future__ import annotations

import time

from fastapi import APIRouter

from shoprec.serve.http_errors import ERROR_RESPONSES, ApiError
from shoprec.serve.schemas import EventBatch, EventIn, IngestResult
from shoprec.serve.service import Ingester, Service, ServiceDep

router = APIRouter(prefix="/v1/events", tags=["events"], responses=ERROR_RESPONSES)

_CLICKS = {"view", "cart", "favourite", "purchase"}


def ingest(service: Service, events: list[EventIn]) -> IngestResult:
    """Pseudonymise, store atomically and idempotently, then feed clicks to the slate policy."""
    if len(events) > service.settings.max_batch:
        raise ApiError(413, "batch_too_large",
                       f"A batch may hold at most {service.settings.max_batch} events. Got {len(events)}.")
    now = int(time.time())
    pseudo = service.pseudonymizer.pseudonymize
    rows = [
        {
            "event_id": e.event_id,
            "shopper": pseudo(e.shopper_id),
            "item_id": e.item_id,
            "event": e.event,
            "ts": e.timestamp if e.timestamp is not None else now,
            "value": e.value,
            "impression_id": e.impression_id,
        }
        for e in events
    ]
    inserted = service.store.add_events(rows)
    duplicates = len(rows) - len(inserted)
    service.metrics.events.labels("accepted").inc(len(inserted))
    if duplicates:
        service.metrics.events.labels("duplicate").inc(duplicates)
    for e in events:  # bandit feedback: only for events stored now, so retries do not count twice
        if e.impression_id and e.event_id in inserted and e.event in _CLICKS:
            service.engine.policy.update(e.item_id, 1.0)
    return IngestResult(accepted=len(inserted), duplicates=duplicates)


@router.post("", response_model=IngestResult, summary="Ingest one event")
def post_event(event: EventIn, service: ServiceDep, _: Ingester) -> IngestResult:
    """Store one event. Sending the same `event_id` again stores nothing and reports a duplicate."""
    return ingest(service, [event])


@router.post("/batch", response_model=IngestResult, summary="Ingest a batch of events")
def post_batch(batch: EventBatch, service: ServiceDep, _: Ingester) -> IngestResult:
    """Store a batch in one transaction: all of it or, on any error, none of it. Events whose
    `event_id` was stored before are skipped, so a retried batch is counted once."""
    return ingest(service, batch.events)
