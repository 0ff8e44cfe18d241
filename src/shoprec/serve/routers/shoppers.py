"""A shopper's data: export, erasure and privacy choice.

The shopper id travels in the body, not the URL, so that access logs never hold it. Export and
erasure look under every pseudonym key (current and previous), so rotation does not hide old
data. The privacy choice can be set by the shop's backend (`PUT /v1/shoppers/privacy`) or by
the shopper through their token (`/v1/me/privacy`).
"""

from __future__ import annotations

from fastapi import APIRouter

from shoprec.serve.http_errors import ERROR_RESPONSES
from shoprec.serve.schemas import (
    EraseResult,
    PrivacyChoiceIn,
    PrivacyChoiceOut,
    ShopperExport,
    ShopperPrivacyIn,
    ShopperRef,
)
from shoprec.serve.service import (
    Admin,
    MeIngester,
    MeReader,
    Service,
    ServiceDep,
    ShopperIngester,
    bound_shopper,
)

router = APIRouter(prefix="/v1", tags=["shoppers"], responses=ERROR_RESPONSES)


@router.post("/shoppers/export", response_model=ShopperExport, summary="Export everything stored about a shopper")
def export(ref: ShopperRef, service: ServiceDep, _: Admin) -> ShopperExport:
    import numpy as np

    names = service.pseudonymizer.candidates(ref.shopper_id)
    data = service.store.export_shopper(names)
    states = [{"space": r["space"], "dim": r["dim"], "n_feedback": r["n_feedback"], "updated_at": r["updated_at"],
               "state": np.frombuffer(r["state"], dtype="<f8").tolist()} for r in data.pop("states")]
    choice, _ = service.privacy_of(names)
    return ShopperExport(pseudonyms=names, privacy_choice=choice, exploration_states=states, **data)


@router.post("/shoppers/erase", response_model=EraseResult, summary="Erase everything stored about a shopper")
def erase(ref: ShopperRef, service: ServiceDep, _: Admin) -> EraseResult:
    """Deletes the shopper's events, impressions, exploration state and privacy choice in one
    transaction (on SQLite the deleted bytes are overwritten and the write-ahead log emptied),
    removes them from every model file in the model directory and from the served model, and
    leaves a tombstone (a hash of the pseudonym) so that later requests naming them log nothing
    until a new event of theirs arrives. The next recommendation for this id is a cold start."""
    n_events, n_impressions, n_files = service.erase(service.pseudonymizer.candidates(ref.shopper_id))
    return EraseResult(events_deleted=n_events, impressions_deleted=n_impressions, model_files_changed=n_files)


def _set_choice(service: Service, names: list[str], choice: str) -> PrivacyChoiceOut:
    deleted = service.store.set_privacy_choice(names, choice)
    if choice == "none" and service.engine.model_view is not None:
        service.forget_in_models(names)  # nothing personal of theirs stays in the served model either
    return PrivacyChoiceOut(choice=choice, events_deleted=deleted)


@router.put("/shoppers/privacy", response_model=PrivacyChoiceOut, summary="Record a shopper's privacy choice")
def set_shopper_privacy(req: ShopperPrivacyIn, service: ServiceDep, principal: ShopperIngester) -> PrivacyChoiceOut:
    """personalised (the default), private (their events train only differentially private
    models) or none (their events are not stored; what is stored is deleted now)."""
    return _set_choice(service, bound_shopper(service, principal, req.shopper_id), req.choice)


@router.get("/me/privacy", response_model=PrivacyChoiceOut, summary="The privacy choice of the token's shopper")
def my_privacy(service: ServiceDep, principal: MeReader) -> PrivacyChoiceOut:
    choice, _ = service.privacy_of([principal.shopper])
    return PrivacyChoiceOut(choice=choice)


@router.put("/me/privacy", response_model=PrivacyChoiceOut, summary="Set the privacy choice of the token's shopper")
def set_my_privacy(req: PrivacyChoiceIn, service: ServiceDep, principal: MeIngester) -> PrivacyChoiceOut:
    """What `PUT /v1/shoppers/privacy` does, for the shopper the bearer token is bound to."""
    return _set_choice(service, [principal.shopper], req.choice)
