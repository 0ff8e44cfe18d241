"""POST /v1/events and /v1/events/batch: idempotent, transactional ingestion.

A click (a view, cart, favourite or purchase carrying the impression id of a slate that showed
its item to the same shopper) updates the shopper's exploration state in the transaction that
stores it, so an acknowledged click is never lost from what the learner knows.

Event ids are the client's, unique per source (the API key that sends them, or the key that
issued a shopper token): a retry with the same payload is a duplicate, a re-used id with another
payload is a 409. Events for items the catalogue does not hold are counted in the response
(`unknown_items`), or rejected when the service runs with `unknown_items = reject`."""

from __future__ import annotations

import time

from fastapi import APIRouter

from shoprec.serve.auth import Principal
from shoprec.serve.http_errors import ERROR_RESPONSES, ApiError, error_responses
from shoprec.serve.schemas import EventBatch, EventIn, IngestResult, MyEventBatch, MyEventIn
from shoprec.serve.service import MeIngester, Service, ServiceDep, ShopperIngester, bound_shopper

router = APIRouter(prefix="/v1", tags=["events"], responses=ERROR_RESPONSES)


def ingest(service: Service, events: list[MyEventIn], principal: Principal,
           shopper: list[str] | None = None) -> IngestResult:
    """Pseudonymise, store atomically and idempotently, and learn from clicks in the same
    transaction. shopper: the pseudonyms every event belongs to (the /v1/me endpoints); else
    each event names its shopper."""
    settings = service.settings
    if len(events) > settings.max_batch:
        raise ApiError(413, "batch_too_large",
                       f"A batch may hold at most {settings.max_batch} events. Got {len(events)}.")
    unknown = _unknown_items(service, events)
    if unknown and settings.unknown_items == "reject":
        shown = ", ".join(repr(i) for i in unknown[:20])
        raise ApiError(422, "unknown_items", f"{len(unknown)} item id(s) are not in the catalogue: {shown}"
                                             f"{' ...' if len(unknown) > 20 else ''}. Add them with "
                                             "POST /v1/items/batch first (this service rejects events for "
                                             "unknown items: unknown_items = reject).")
    now = int(time.time())
    source = principal.event_source
    rows = [{
        "source": source,
        "event_id": e.event_id,
        "shopper": (shopper or bound_shopper(service, principal, e.shopper_id))[0],
        "item_id": e.item_id,
        "event": e.event,
        "ts": e.timestamp if e.timestamp is not None else now,
        "ts_given": e.timestamp is not None,
        "value": e.value,
        "impression_id": e.impression_id,
    } for e in events]
    shoppers = list(dict.fromkeys(r["shopper"] for r in rows))
    digests = service.tombstone_digests(shoppers)
    choices, erased = service.store.privacy_flags(shoppers, digests)
    # A shopper who chose no personalisation: their events are not stored at all.
    withheld = {s for s, c in choices.items() if c == "none"}
    kept = [r for r in rows if r["shopper"] not in withheld] if withheld else rows
    hook = service.feedback_hook() if service.engine.model_view is not None else None
    inserted = service.store.add_events(kept, on_feedback=hook) if kept else set()
    if erased:  # an erased shopper came back: their new events are stored, and they are logged again
        back = {r["shopper"] for r in kept}
        service.store.clear_tombstones([d for s, d in zip(shoppers, digests) if d in erased and s in back])
    duplicates = len(kept) - len(inserted)
    service.metrics.events.labels("accepted").inc(len(inserted))
    if duplicates:
        service.metrics.events.labels("duplicate").inc(duplicates)
    if len(kept) < len(rows):
        service.metrics.events.labels("not_stored").inc(len(rows) - len(kept))
    return IngestResult(accepted=len(inserted), duplicates=duplicates, unknown_items=len(unknown),
                        unknown_item_ids=unknown[:20], not_stored=len(rows) - len(kept))


def _unknown_items(service: Service, events: list[MyEventIn]) -> list[str]:
    """Item ids of the events that the catalogue does not hold, in order, each once."""
    known = service.engine.catalogue.row
    return list(dict.fromkeys(e.item_id for e in events if e.item_id not in known))


@router.post("/events", response_model=IngestResult, summary="Ingest one event", responses=error_responses(409))
def post_event(event: EventIn, service: ServiceDep, principal: ShopperIngester) -> IngestResult:
    """Store one event. Sending the same `event_id` again with the same payload stores nothing
    and reports a duplicate; with another payload it is a 409 naming what differs."""
    return ingest(service, [event], principal)


@router.post("/events/batch", response_model=IngestResult, summary="Ingest a batch of events",
             responses=error_responses(409))
def post_batch(batch: EventBatch, service: ServiceDep, principal: ShopperIngester) -> IngestResult:
    """Store a batch in one transaction: all of it or, on any error, none of it. Events whose
    `event_id` this key sent before with the same payload are skipped, so a retried batch is
    counted once; a re-used id with another payload is a 409 and nothing is stored."""
    return ingest(service, batch.events, principal)


@router.post("/me/events", response_model=IngestResult, responses=error_responses(409),
             summary="Ingest events of the shopper a token is bound to")
def post_my_events(batch: MyEventBatch, service: ServiceDep, principal: MeIngester) -> IngestResult:
    """`POST /v1/events/batch` for the shopper the bearer token is bound to: the events name no
    shopper. Their event ids share the scope of the key that issued the token."""
    return ingest(service, batch.events, principal, shopper=[principal.shopper])
