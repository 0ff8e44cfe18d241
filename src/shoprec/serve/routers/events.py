"""POST /v1/events and /v1/events/batch: idempotent, transactional ingestion.

A click (a view, cart, favourite or purchase carrying the impression id of a slate that showed
its item to the same shopper) updates the shopper's exploration state in the transaction that
stores it, so an acknowledged click is never lost from what the learner knows."""

from __future__ import annotations

import time

from fastapi import APIRouter

from shoprec.serve.http_errors import ERROR_RESPONSES, ApiError
from shoprec.serve.schemas import EventBatch, EventIn, IngestResult
from shoprec.serve.service import Ingester, Service, ServiceDep

router = APIRouter(prefix="/v1/events", tags=["events"], responses=ERROR_RESPONSES)

def ingest(service: Service, events: list[EventIn]) -> IngestResult:
    """Pseudonymise, store atomically and idempotently, and learn from clicks in the same
    transaction."""
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
    hook = service.feedback_hook() if service.engine.model_view is not None else None
    inserted = service.store.add_events(rows, on_feedback=hook)
    duplicates = len(rows) - len(inserted)
    service.metrics.events.labels("accepted").inc(len(inserted))
    if duplicates:
        service.metrics.events.labels("duplicate").inc(duplicates)
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
