"""POST /v1/recommendations: a slate for a known shopper or an anonymous session."""

from __future__ import annotations

import time
import uuid

import numpy as np
from fastapi import APIRouter

from shoprec.errors import ConfigError
from shoprec.serve.auth import Principal
from shoprec.serve.http_errors import ERROR_RESPONSES, error_responses
from shoprec.serve.schemas import (
    ExperimentAssignment,
    ExplanationOut,
    ExplorationOut,
    RecentItem,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedItem,
    SlateOptions,
)
from shoprec.serve.service import MeReader, Service, ServiceDep, ShopperReader, bound_shopper
from shoprec.serve.views import Recommendation

router = APIRouter(prefix="/v1", tags=["recommendations"], responses=ERROR_RESPONSES)


def check_k(service: Service, k: int) -> None:
    if k > service.settings.max_k:
        raise ConfigError(f"The 'k' parameter must be an int in [1, {service.settings.max_k}]. Got {k} instead.")


HIDDEN_HISTORY = "Picked for this shopper from their recent activity"
"""What a history explanation says to a credential that may not see the shopper's history."""


def to_items(recs: list[Recommendation], history_visible: bool = True) -> list[RecommendedItem]:
    return [
        RecommendedItem(
            rank=rank, item_id=r.item_id, title=r.title, category=r.category, price=r.price,
            score=r.score if np.isfinite(r.score) else 0.0, explored=r.explored, propensity=r.propensity,
            explanation=_explanation(r, history_visible),
        )
        for rank, r in enumerate(recs, start=1)
    ]


def _explanation(r: Recommendation, history_visible: bool) -> ExplanationOut:
    e = r.explanation
    if e.code == "history" and not history_visible:
        return ExplanationOut(code=e.code, text=HIDDEN_HISTORY, anchor_item_id=None, basis=e.basis)
    return ExplanationOut(code=e.code, text=e.text, anchor_item_id=e.anchor_item_id, basis=e.basis)


@router.post("/recommendations", response_model=RecommendationResponse, summary="Recommend items",
             responses=error_responses(404, 503))
async def recommend(req: RecommendationRequest, service: ServiceDep,
                    principal: ShopperReader) -> RecommendationResponse:
    """Top-k items with an explanation each, from the shopper's history as stored right now
    (so an event ingested a moment ago already counts) or from the session given inline.

    For a known shopper the slate is drawn with their stored exploration state: the items of
    their earlier slates that got no click count as skips first (in one transaction with the
    state). Every item shown is logged as an impression with its propensity, and the response
    carries the exploration weight and the signals it was set from.

    History items are named (in explanations and `recent`) only for the shopper's own token, an
    admin key or a key with the `history` role; other read keys get the same slate with
    explanations that cite no history item. A category filter matches case-insensitively; a
    filter naming no known category is a 404 that lists some known ones."""
    def work(arrived: float) -> RecommendationResponse:
        names = bound_shopper(service, principal, req.shopper_id) if req.shopper_id is not None else None
        return slate(service, principal, req, names, req.session, arrived)

    return await service.run_slate(work)


@router.post("/me/recommendations", response_model=RecommendationResponse, responses=error_responses(404, 503),
             summary="Recommend items to the shopper a token is bound to")
async def my_recommendations(req: SlateOptions, service: ServiceDep, principal: MeReader) -> RecommendationResponse:
    """What `POST /v1/recommendations` returns for a known shopper, for the shopper the bearer
    token is bound to (a browser or app holds the token; it never names a shopper id)."""
    return await service.run_slate(lambda arrived: slate(service, principal, req, [principal.shopper], None, arrived))


def slate(service: Service, principal: Principal, req: SlateOptions, names: list[str] | None,
          session, arrived: float | None = None) -> RecommendationResponse:
    """One slate for a stored shopper (`names`: their pseudonyms, current key first) or an
    anonymous session, logged as impressions. arrived: when the request arrived (the engine's
    load clock), for the latency budget."""
    check_k(service, req.k)
    settings = service.settings
    shopper = None
    state = space = None
    logged = True
    if names is not None:
        choice, erased = service.privacy_of(names)
        # Nothing is logged about an erased shopper (until they act again) or one who chose none.
        logged = not erased and choice != "none"
        shopper = names[0] if logged else None
        items, events = service.store.history(names, settings.history_limit)
        kind = "shopper"
        if service.engine.model_view is not None and logged:
            resolved = service.store.resolve_skips(shopper, service.feedback_hook())
            state, space = service.shopper_state(names, stored=resolved)
    else:
        items = [e.item_id for e in session or []]
        events = [e.event for e in session or []]
        kind = "session"
    f = req.filters
    experiment = service.running_experiment() if shopper is not None else None
    variant = service.assign_variant(experiment, shopper) if experiment is not None else None
    exploration = settings.exploration if req.exploration is None else req.exploration
    if variant is not None and req.exploration is None and variant.get("exploration") is not None:
        exploration = variant["exploration"]  # the arm's exploration; an explicit request override wins
    served = service.engine.recommend(
        items, events, req.k,
        categories=service.match_categories(f.categories) if f and f.categories else None,
        min_price=f.min_price if f else None,
        max_price=f.max_price if f else None,
        exploration=exploration,
        diversity=settings.diversity if req.diversity is None else req.diversity,
        state=state, space=space, arrived=arrived,
    )
    recs = served.items
    view = service.engine.model_view
    impression_id = uuid.uuid4().hex
    now = int(time.time())
    service.store.log_impressions([] if not logged else [
        {"impression_id": impression_id, "position": pos, "shopper": shopper, "item_id": r.item_id,
         "score": float(r.score) if np.isfinite(r.score) else 0.0, "propensity": r.propensity,
         "explored": r.explored, "reason": r.explanation.code, "policy": served.policy,
         "model": view.version if view else "", "created_at": now, "z": z, "weight": served.weight,
         # An anonymous session has no state to teach, and an item shown by rule has no z.
         "feedback_applied": shopper is None or z is None,
         "experiment": experiment["experiment_id"] if variant else None, "variant": variant["name"] if variant else None}
        for pos, (r, z) in enumerate(zip(recs, served.z))
    ])
    m = service.metrics
    m.recommendations.labels(kind).inc()
    m.served_path.labels(served.path).inc()
    explored = sum(r.explored for r in recs)
    m.impressions.labels("true").inc(explored)
    m.impressions.labels("false").inc(len(recs) - explored)
    history_visible = principal.sees_history
    return RecommendationResponse(
        impression_id=impression_id, model=view.name if view else "", model_version=view.version if view else "",
        policy=served.policy, items=to_items(recs, history_visible),
        exploration=ExplorationOut(weight=served.weight, rule=settings.weight_rule,
                                   overridden=exploration is not None,
                                   signals={k: float(v) for k, v in served.signals.items()}),
        path=served.path, degraded=served.degraded,
        recent=_recent(service, items, events) if kind == "shopper" and history_visible else [],
        experiment=ExperimentAssignment(id=experiment["experiment_id"], variant=variant["name"]) if variant else None,
    )


def _recent(service: Service, items: list[str], events: list[str], n: int = 10) -> list[RecentItem]:
    cat = service.engine.catalogue
    return [RecentItem(item_id=i, title=str(cat.titles[cat.row[i]]) if i in cat.row else "", event=e)
            for i, e in list(zip(items, events))[::-1][:n]]
