"""POST /v1/shoppers/export and /v1/shoppers/erase: a shopper's data, out or gone.

The shopper id travels in the body, not the URL, so that access logs never hold it. Both look
under every pseudonym key (current and previous), so rotation does not hide old data.
"""

from __future__ import annotations

from fastapi import APIRouter

from shoprec.serve.http_errors import ERROR_RESPONSES
from shoprec.serve.schemas import EraseResult, ShopperExport, ShopperRef
from shoprec.serve.service import Admin, ServiceDep

router = APIRouter(prefix="/v1/shoppers", tags=["shoppers"], responses=ERROR_RESPONSES)


@router.post("/export", response_model=ShopperExport, summary="Export everything stored about a shopper")
def export(ref: ShopperRef, service: ServiceDep, _: Admin) -> ShopperExport:
    import numpy as np

    names = service.pseudonymizer.candidates(ref.shopper_id)
    data = service.store.export_shopper(names)
    states = [{"space": r["space"], "dim": r["dim"], "n_feedback": r["n_feedback"], "updated_at": r["updated_at"],
               "state": np.frombuffer(r["state"], dtype="<f8").tolist()} for r in data.pop("states")]
    return ShopperExport(pseudonyms=names, exploration_states=states, **data)


@router.post("/erase", response_model=EraseResult, summary="Erase a shopper's events, impressions and state")
def erase(ref: ShopperRef, service: ServiceDep, _: Admin) -> EraseResult:
    """Deletes in one transaction; the next recommendation for this id is a cold start. Models
    trained before the erasure still hold what they learned until the next retraining."""
    names = service.pseudonymizer.candidates(ref.shopper_id)
    n_events, n_impressions = service.store.erase_shopper(names)
    return EraseResult(events_deleted=n_events, impressions_deleted=n_impressions)
