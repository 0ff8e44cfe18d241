"""Shoppers' privacy choices, and erasure that leaves nothing behind in the database.

A choice is stored under the shopper's current pseudonym; no row means "personalised".
"private": the shopper's events are stored and serve their own slates, but train only
differentially private models. "none": their events are not stored (those stored before are
deleted when the choice is made), and no impression is logged for them.

Erasure deletes a shopper's events, impressions, exploration state and choice in one
transaction and leaves a tombstone, a keyed digest of each pseudonym (never the pseudonym), so
that later requests naming the shopper log nothing. On SQLite, `secure_delete` (set on every
connection) overwrites the deleted rows' bytes, and a TRUNCATE checkpoint afterwards empties the
write-ahead log, which still held copies of the pages as they were. PostgreSQL keeps dead rows
until VACUUM reuses their space and its WAL until a checkpoint recycles it: see docs/privacy.md.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import delete, select, text

from shoprec.serve.storage.core import StoreCore
from shoprec.serve.tables import Erasure, Event, Impression, PrivacyChoice, ShopperStateRow

__all__ = ["PRIVACY_CHOICES", "PrivacyStore"]

PRIVACY_CHOICES = ("personalised", "private", "none")


class PrivacyStore(StoreCore):
    """Privacy choices, tombstones and complete erasure."""

    def privacy_flags(self, shoppers: Sequence[str], digests: Sequence[str]) -> tuple[dict[str, str], set[str]]:
        """For a batch of pseudonyms and their tombstone digests: the stored choices, and the
        digests that have a tombstone. One connection, two key lookups."""
        c, e = PrivacyChoice.__table__, Erasure.__table__
        with self.engine.connect() as conn:
            choices = dict(conn.execute(select(c.c.shopper, c.c.choice).where(c.c.shopper.in_(list(shoppers)))).all())
            erased = {r[0] for r in conn.execute(select(e.c.digest).where(e.c.digest.in_(list(digests))))}
        return choices, erased

    def shopper_privacy(self, shoppers: Sequence[str], digests: Sequence[str]) -> tuple[str, bool]:
        """(choice, erased) of one shopper: `shoppers` are their pseudonyms, current key first,
        `digests` the tombstone digests of those pseudonyms."""
        found, erased = self.privacy_flags(shoppers, digests)
        return next((found[s] for s in shoppers if s in found), "personalised"), bool(erased)

    def set_privacy_choice(self, shoppers: Sequence[str], choice: str) -> int:
        """Store `choice` for the shopper (its row under the current pseudonym `shoppers[0]`;
        rows under older keys go). "none" also deletes what is stored about them, in the same
        transaction. Returns the number of events deleted."""
        if choice not in PRIVACY_CHOICES:
            raise ValueError(f"choice must be one of {PRIVACY_CHOICES}, got {choice!r}")
        c = PrivacyChoice.__table__
        names = list(shoppers)
        deleted = 0
        with self._write() as conn:
            conn.execute(delete(c).where(c.c.shopper.in_(names)))
            if choice != "personalised":
                conn.execute(c.insert(), [{"shopper": names[0], "choice": choice, "updated_at": int(time.time())}])
            if choice == "none":
                deleted = self._delete_shopper_rows(conn, names)[0]
        return deleted

    def excluded_from_training(self, private_model: bool) -> set[str]:
        """Pseudonyms whose events a model may not train on: "none" always (nothing of theirs
        should be stored, but a race may have let an event in), "private" unless the model is
        differentially private."""
        c = PrivacyChoice.__table__
        barred = ["none"] if private_model else ["none", "private"]
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(c.c.shopper).where(c.c.choice.in_(barred)))}

    # ---- erasure ---------------------------------------------------------------------------
    def erase_shopper(self, shoppers: Sequence[str], tombstones: Sequence[str] = ()) -> tuple[int, int]:
        """Delete everything stored about a shopper (every pseudonym) in one transaction and
        leave their tombstones; then empty SQLite's write-ahead log. Returns the counts of
        events and impressions deleted."""
        names = list(shoppers)
        now = int(time.time())
        with self._write() as conn:
            counts = self._delete_shopper_rows(conn, names)
            conn.execute(delete(PrivacyChoice.__table__).where(PrivacyChoice.__table__.c.shopper.in_(names)))
            if tombstones:
                e = Erasure.__table__
                conn.execute(delete(e).where(e.c.digest.in_(list(tombstones))))
                conn.execute(e.insert(), [{"digest": d, "erased_at": now} for d in tombstones])
        self.checkpoint()
        return counts

    def clear_tombstones(self, digests: Sequence[str]) -> None:
        """The shoppers came back (a new event of theirs was stored): log for them again."""
        if digests:
            e = Erasure.__table__
            with self._write() as conn:
                conn.execute(delete(e).where(e.c.digest.in_(list(digests))))

    def checkpoint(self) -> bool:
        """SQLite: copy the write-ahead log into the database and truncate it to zero bytes, so
        that no old page image (with rows deleted since) stays in the -wal file. True when the
        log was emptied (readers holding old snapshots can delay it; it is retried briefly)."""
        if self.dialect != "sqlite":
            return True
        for attempt in range(20):
            with self.engine.connect() as conn:
                busy = conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).first()[0]
            if not busy:
                return True
            time.sleep(0.05 * (attempt + 1))
        return False

    @staticmethod
    def _delete_shopper_rows(conn, names: list[str]) -> tuple[int, int]:
        e, i, s = Event.__table__, Impression.__table__, ShopperStateRow.__table__
        n_events = conn.execute(delete(e).where(e.c.shopper.in_(names))).rowcount
        n_impressions = conn.execute(delete(i).where(i.c.shopper.in_(names))).rowcount
        conn.execute(delete(s).where(s.c.shopper.in_(names)))
        return int(n_events or 0), int(n_impressions or 0)
