"""API keys: a public id, a SHA-256 of the secret and the roles; never the secret itself."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from shoprec.errors import ConflictError
from shoprec.serve.storage.core import StoreCore
from shoprec.serve.tables import ApiKey

__all__ = ["KeyStore", "StoredKey"]


@dataclass(frozen=True)
class StoredKey:
    """An API key as stored: public id, SHA-256 of the secret, roles."""

    key_id: str
    name: str
    secret_sha256: str
    roles: frozenset[str]
    created_at: int
    revoked_at: int | None


class KeyStore(StoreCore):
    """API key rows."""

    # ---- API keys --------------------------------------------------------------------------
    def add_key(self, key_id: str, name: str, secret_sha256: str, roles: Iterable[str]) -> StoredKey:
        """Store a new key; a name already in use is a ConflictError (409)."""
        t = ApiKey.__table__
        now = int(time.time())
        row = {"key_id": key_id, "name": name, "secret_sha256": secret_sha256,
               "roles": ",".join(sorted(roles)), "created_at": now, "revoked_at": None}
        with self._write() as conn:
            if conn.execute(select(t.c.key_id).where(t.c.name == name)).first():
                raise ConflictError(f"An API key named {name!r} exists already; revoke it first or pick another name.")
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


def _key(row: Any) -> StoredKey:
    return StoredKey(
        key_id=row["key_id"], name=row["name"], secret_sha256=row["secret_sha256"],
        roles=frozenset(filter(None, row["roles"].split(","))), created_at=int(row["created_at"]),
        revoked_at=row["revoked_at"],
    )
