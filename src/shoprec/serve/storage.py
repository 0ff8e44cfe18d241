"""Transactional storage of events, catalogue, impressions and API keys (SQLAlchemy 2 Core).

SQLite (WAL mode) is the embedded default; PostgreSQL is selected by a `postgresql+psycopg://`
URL. Every write is one transaction: a batch is stored whole or not at all, so a rejected or
crashed batch never leaves half of itself behind, and what was committed before stays.
Event ingestion is idempotent on the client's event id (`INSERT ... ON CONFLICT DO NOTHING`), so
a retried batch is not counted twice, even when two retries race.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from shoprec.errors import ConfigError
from shoprec.serve.tables import ApiKey, Event, Impression, Item

__all__ = ["Store", "StoredKey"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class StoredKey:
    """An API key as stored: public id, SHA-256 of the secret, roles."""

    key_id: str
    name: str
    secret_sha256: str
    roles: frozenset[str]
    created_at: int
    revoked_at: int | None


class Store:
    """The database behind one service. `migrate()` before first use."""

    def __init__(self, url: str, sqlite_synchronous: str = "NORMAL", echo: bool = False) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            path = url.split(":///", 1)[-1]
            if path in ("", ":memory:"):
                # One shared connection, or every pooled connection would see its own empty db.
                kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
                kwargs.update(connect_args={"timeout": 30, "check_same_thread": False},
                              pool_size=8, max_overflow=16)
        else:
            kwargs.update(pool_size=8, max_overflow=16, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            synchronous = sqlite_synchronous

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        # SQLite has one writer at a time. Waiting on an in-process lock hands the turn over at
        # once, where SQLite's own busy handler sleeps in steps of up to 100 ms (long tails).
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (serialised in this process on SQLite)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
        else:
            with self._write_lock, self.engine.begin() as conn:
                yield conn

    # ---- schema ----------------------------------------------------------------------------
    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with Alembic (idempotent)."""
        from alembic import command

        with self.engine.begin() as conn:
            cfg = self._alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def downgrade(self, revision: str = "base") -> None:
        """Undo migrations down to `revision` (tests and operators)."""
        from alembic import command

        with self.engine.begin() as conn:
            cfg = self._alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)

    def _alembic_config(self):
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None before the first migration)."""
        with self.engine.connect() as conn:
            try:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:  # noqa: BLE001 - the table is absent before migrating
                return None

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - health checks report, they do not raise
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    def _insert(self, table):
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    # ---- events ----------------------------------------------------------------------------
    def add_events(self, rows: Sequence[dict[str, Any]], returning: bool = True) -> set[str]:
        """Store events atomically; returns the event ids stored now (the rest were duplicates).

        rows: dicts with event_id, shopper (a pseudonym), item_id, event, ts, value,
        impression_id. An event id seen before (in this batch or any earlier one) is a duplicate
        and is skipped, so that retrying a batch is safe. returning=False skips collecting the
        stored ids (bulk imports) and returns an empty set.
        """
        if not rows:
            return set()
        now = int(time.time())
        unique: dict[str, dict[str, Any]] = {}
        for row in rows:  # bulk imports may give received_at (the demo's history is not live traffic)
            unique.setdefault(row["event_id"], {"received_at": now, **row})
        stmt = self._insert(Event.__table__).on_conflict_do_nothing(index_elements=["event_id"])
        with self._write() as conn:
            if not returning:
                conn.execute(stmt, list(unique.values()))
                return set()
            inserted = conn.execute(stmt.returning(Event.__table__.c.event_id), list(unique.values()))
            return set(inserted.scalars().all())

    def history(self, shoppers: Sequence[str], limit: int) -> tuple[list[str], list[str]]:
        """The latest `limit` events of a shopper (under any of its pseudonyms), oldest first.

        Returns (item ids, event types).
        """
        t = Event.__table__
        stmt = (
            select(t.c.item_id, t.c.event)
            .where(t.c.shopper.in_(list(shoppers)) if len(shoppers) > 1 else t.c.shopper == shoppers[0])
            .order_by(t.c.ts.desc(), t.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        rows.reverse()
        return [r[0] for r in rows], [r[1] for r in rows]

    def count_events(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Event.__table__)).scalar() or 0)

    def iter_events(self, batch: int = 50_000) -> Iterable[list[tuple]]:
        """Every event as (shopper, item_id, event, ts, value), in id order, in chunks."""
        t = Event.__table__
        last = 0
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(
                    select(t.c.id, t.c.shopper, t.c.item_id, t.c.event, t.c.ts, t.c.value)
                    .where(t.c.id > last).order_by(t.c.id).limit(batch)
                ).all()
                if not rows:
                    return
                last = rows[-1][0]
                yield [tuple(r[1:]) for r in rows]

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

    def list_items(self, category: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
        """A page of items (by id) and the total count matching the filter."""
        t = Item.__table__
        where = [t.c.category == category] if category is not None else []
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

    def count_items(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Item.__table__)).scalar() or 0)

    # ---- impressions -----------------------------------------------------------------------
    def log_impressions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store one slate's impressions (one row per position) in one transaction."""
        if rows:
            with self._write() as conn:
                conn.execute(Impression.__table__.insert(), list(rows))

    # ---- a shopper's data ------------------------------------------------------------------
    def export_shopper(self, shoppers: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Everything stored about a shopper (under any of its pseudonyms)."""
        e, i = Event.__table__, Impression.__table__
        with self.engine.connect() as conn:
            events = conn.execute(
                select(e.c.event_id, e.c.item_id, e.c.event, e.c.ts, e.c.value, e.c.impression_id,
                       e.c.received_at).where(e.c.shopper.in_(list(shoppers))).order_by(e.c.ts, e.c.id)
            ).mappings().all()
            impressions = conn.execute(
                select(i.c.impression_id, i.c.position, i.c.item_id, i.c.score, i.c.propensity,
                       i.c.explored, i.c.reason, i.c.policy, i.c.model, i.c.created_at)
                .where(i.c.shopper.in_(list(shoppers))).order_by(i.c.created_at, i.c.id)
            ).mappings().all()
        return {"events": [dict(r) for r in events], "impressions": [dict(r) for r in impressions]}

    def erase_shopper(self, shoppers: Sequence[str]) -> tuple[int, int]:
        """Delete a shopper's events and impressions in one transaction; returns the counts."""
        e, i = Event.__table__, Impression.__table__
        with self._write() as conn:
            n_events = conn.execute(delete(e).where(e.c.shopper.in_(list(shoppers)))).rowcount
            n_impr = conn.execute(delete(i).where(i.c.shopper.in_(list(shoppers)))).rowcount
        return int(n_events or 0), int(n_impr or 0)

    # ---- API keys --------------------------------------------------------------------------
    def add_key(self, key_id: str, name: str, secret_sha256: str, roles: Iterable[str]) -> StoredKey:
        """Store a new key; a name already in use is a ConfigError."""
        t = ApiKey.__table__
        now = int(time.time())
        row = {"key_id": key_id, "name": name, "secret_sha256": secret_sha256,
               "roles": ",".join(sorted(roles)), "created_at": now, "revoked_at": None}
        with self._write() as conn:
            if conn.execute(select(t.c.key_id).where(t.c.name == name)).first():
                raise ConfigError(f"An API key named {name!r} exists already.")
            conn.execute(t.insert(), [row])
        return _key(row)

    def list_keys(self, include_revoked: bool = False) -> list[StoredKey]:
        t = ApiKey.__table__
        stmt = select(t).order_by(t.c.created_at, t.c.name)
        if not include_revoked:
            stmt = stmt.where(t.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_key(r) for r in conn.execute(stmt).mappings().all()]

    def revoke_key(self, name: str) -> bool:
        """Revoke the key called `name`; False when there is no such active key."""
        t = ApiKey.__table__
        with self._write() as conn:
            result = conn.execute(
                update(t).where(t.c.name == name, t.c.revoked_at.is_(None)).values(revoked_at=int(time.time()))
            )
        return bool(result.rowcount)

    # ---- dashboard -------------------------------------------------------------------------
    def stats(self, since: int, bucket_s: int) -> dict[str, Any]:
        """Traffic per time bucket since `since`: slates, impressions, explored, clicks."""
        i, e = Impression.__table__, Event.__table__
        bucket_i = (i.c.created_at - i.c.created_at % bucket_s).label("bucket")
        bucket_e = (e.c.received_at - e.c.received_at % bucket_s).label("bucket")
        with self.engine.connect() as conn:
            impressions = conn.execute(
                select(bucket_i, func.count(), func.count(func.distinct(i.c.impression_id)),
                       func.sum(case((i.c.explored, 1), else_=0)))
                .where(i.c.created_at >= since).group_by(bucket_i).order_by(bucket_i)
            ).all()
            clicks = conn.execute(
                select(bucket_e, func.count())
                .select_from(e.join(i, (e.c.impression_id == i.c.impression_id) & (e.c.item_id == i.c.item_id)))
                .where(e.c.received_at >= since).group_by(bucket_e).order_by(bucket_e)
            ).all()
            events = conn.execute(
                select(bucket_e, func.count()).where(e.c.received_at >= since).group_by(bucket_e).order_by(bucket_e)
            ).all()
            distinct_items = conn.execute(
                select(func.count(func.distinct(i.c.item_id))).where(i.c.created_at >= since)
            ).scalar()
        series: dict[int, dict[str, int]] = {}
        for bucket, n, slates, explored in impressions:
            series.setdefault(int(bucket), {})
            series[int(bucket)].update(impressions=int(n), slates=int(slates), explored=int(explored or 0))
        for bucket, n in clicks:
            series.setdefault(int(bucket), {})["clicks"] = int(n)
        for bucket, n in events:
            series.setdefault(int(bucket), {})["events"] = int(n)
        keys = ("impressions", "slates", "explored", "clicks", "events")
        return {
            "series": [{"t": b, **{k: v.get(k, 0) for k in keys}} for b, v in sorted(series.items())],
            "distinct_items_recommended": int(distinct_items or 0),
        }


def _key(row: Any) -> StoredKey:
    return StoredKey(
        key_id=row["key_id"], name=row["name"], secret_sha256=row["secret_sha256"],
        roles=frozenset(filter(None, row["roles"].split(","))), created_at=int(row["created_at"]),
        revoked_at=row["revoked_at"],
    )

