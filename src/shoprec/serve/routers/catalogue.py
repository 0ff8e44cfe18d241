"""/v1/items: import, update and read the catalogue; similar items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from shoprec.errors import UnknownIdError
from shoprec.serve.http_errors import ERROR_RESPONSES, ApiError, error_responses
from shoprec.serve.schemas import (
    ID_PATTERN,
    MAX_ID,
    MAX_K_SCHEMA,
    ItemBatch,
    ItemFields,
    ItemIn,
    ItemOut,
    ItemPage,
    ItemPatch,
    SimilarResponse,
    UpsertResult,
)
from shoprec.serve.service import Ingester, Service, ServiceDep, ShopperReader

router = APIRouter(prefix="/v1/items", tags=["catalogue"], responses=ERROR_RESPONSES)

ItemPath = Annotated[str, Path(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN)]


def _upsert(service: Service, items: list[ItemIn]) -> UpsertResult:
    if len(items) > service.settings.max_batch:
        raise ApiError(413, "batch_too_large",
                       f"A batch may hold at most {service.settings.max_batch} items. Got {len(items)}.")
    created, updated = service.store.upsert_items([i.model_dump() for i in items])
    service.refresh_catalogue()
    return UpsertResult(created=created, updated=updated)


@router.post("/batch", response_model=UpsertResult, summary="Import or update catalogue items")
def import_items(batch: ItemBatch, service: ServiceDep,
                 _: Ingester) -> UpsertResult:
    """Insert new items and replace existing ones, in one transaction."""
    return _upsert(service, batch.items)


@router.put("/{item_id}", response_model=UpsertResult, summary="Create or replace one item")
def put_item(item_id: ItemPath, fields: ItemFields, service: ServiceDep,
             _: Ingester) -> UpsertResult:
    return _upsert(service, [ItemIn(item_id=item_id, **fields.model_dump())])


@router.patch("/{item_id}", response_model=ItemOut, summary="Change some fields of one item",
              responses=error_responses(404))
def patch_item(item_id: ItemPath, patch: ItemPatch, service: ServiceDep,
               _: Ingester) -> ItemOut:
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("title") is None:
        changes.pop("title", None)
    if changes.get("category") is None:
        changes.pop("category", None)
    if "active" in changes and changes["active"] is None:
        changes.pop("active")
    row = service.store.patch_item(item_id, changes)
    if row is None:
        raise UnknownIdError(f"No catalogue item {item_id!r}.")
    service.refresh_catalogue()
    return ItemOut(**row)


@router.get("/{item_id}", response_model=ItemOut, summary="One catalogue item", responses=error_responses(404))
def get_item(item_id: ItemPath, service: ServiceDep, _: ShopperReader) -> ItemOut:
    row = service.store.get_item(item_id)
    if row is None:
        raise UnknownIdError(f"No catalogue item {item_id!r}.")
    return ItemOut(**row)


@router.get("", response_model=ItemPage, summary="A page of the catalogue", responses=error_responses(404))
def list_items(
    service: ServiceDep,
    _: ShopperReader,
    category: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ItemPage:
    # Case-insensitive, as the recommendation filter: `bag` finds `Bag`; no match is a 404.
    categories = service.match_categories([category]) if category is not None else None
    rows, total = service.store.list_items(categories, limit, offset)
    return ItemPage(items=[ItemOut(**r) for r in rows], total=total)


@router.get("/{item_id}/similar", response_model=SimilarResponse, summary="Items similar to one item",
            responses=error_responses(404, 503))
def similar(
    item_id: ItemPath,
    service: ServiceDep,
    _: ShopperReader,
    k: Annotated[int, Query(ge=1, le=MAX_K_SCHEMA)] = 10,
) -> SimilarResponse:
    """Nearest items by the served model's item vectors (exact search for small catalogues,
    HNSW for large ones). An item the model has not learned yet gets popular items of its category."""
    from shoprec.serve.routers.recommend import check_k, to_items

    check_k(service, k)
    recs = service.engine.similar(item_id, k)
    view = service.engine.model_view
    return SimilarResponse(item_id=item_id, model_version=view.version if view else "", items=to_items(recs))
