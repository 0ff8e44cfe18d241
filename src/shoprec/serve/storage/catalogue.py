"""The catalogue: items inserted, updated and read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update

from shoprec.serve.storage.core import StoreCore
from shoprec.serve.tables import Item

__all__ = ["CatalogueStore"]


class CatalogueStore(StoreCore):
    """Catalogue items (`Item` rows)."""

    # ---- catalogue -------------------------------------------------------------------------
    def upsert_items(self, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Insert or replace catalogue items atomically; returns (created, updated).

        rows: dicts with item_id, title, category, price, active. An update keeps the item's
        creation time, so "new in a category" stays true to when the item arrived.
        """
        if not rows:
            return 0, 0
        now = int(time.time())
        unique = {r["item_id"]: {**r, "created_at": now, "updated_at": now} for r in rows}
        t = Item.__table__
        stmt = self._insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=["item_id"],
            set_={c: stmt.excluded[c] for c in ("title", "category", "price", "active", "updated_at")},
        )
        with self._write() as conn:
            existing = set()
            ids = list(unique)
            for start in range(0, len(ids), 900):  # SQLite caps bound parameters per statement
                existing.update(conn.execute(
                    select(t.c.item_id).where(t.c.item_id.in_(ids[start:start + 900]))
                ).scalars())
            conn.execute(stmt, list(unique.values()))
        return len(unique) - len(existing), len(existing)

    def patch_item(self, item_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Change some fields of one item; returns the item, or None when it does not exist."""
        t = Item.__table__
        with self._write() as conn:
            if changes:
                result = conn.execute(
                    update(t).where(t.c.item_id == item_id).values(**changes, updated_at=int(time.time()))
                )
                if result.rowcount == 0:
                    return None
            row = conn.execute(select(t).where(t.c.item_id == item_id)).mappings().first()
        return dict(row) if row else None

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        t = Item.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.item_id == item_id)).mappings().first()
        return dict(row) if row else None

    def list_items(self, categories: list[str] | None, limit: int, offset: int) -> tuple[list[dict], int]:
        """A page of items (by id) and the total count in any of `categories` (None: all)."""
        t = Item.__table__
        where = [t.c.category.in_(categories)] if categories is not None else []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(*where).order_by(t.c.item_id).limit(limit).offset(offset)
            ).mappings().all()
            total = conn.execute(select(func.count()).select_from(t).where(*where)).scalar()
        return [dict(r) for r in rows], int(total or 0)

    def all_items(self) -> list[tuple]:
        """Every item as (item_id, title, category, price, active, created_at)."""
        t = Item.__table__
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(t.c.item_id, t.c.title, t.c.category, t.c.price, t.c.active, t.c.created_at)
                .order_by(t.c.item_id)
            ).all()]

    def catalogue_stamp(self) -> tuple[int, int]:
        """(items, newest updated_at): changes whenever any process writes the catalogue."""
        t = Item.__table__
        with self.engine.connect() as conn:
            n, newest = conn.execute(select(func.count(), func.max(t.c.updated_at))).one()
        return int(n or 0), int(newest or 0)

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Item.__table__)).scalar() or 0)
