"""The database connection every part of the store shares: engine, pragmas, write lock, schema."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

__all__ = ["MIGRATIONS", "StoreCore"]

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


class StoreCore:
    """The database behind one service: connection, dialect, write serialisation, migrations."""

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
                db = Path(path).expanduser()
                db.parent.mkdir(parents=True, exist_ok=True)
                if not db.exists():
                    # Readable by the owner only; SQLite gives its -wal and -shm files the same mode.
                    os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
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
                # Deleted rows are overwritten with zeros, not left in free pages (erasure).
                cur.execute("PRAGMA secure_delete=ON")
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
