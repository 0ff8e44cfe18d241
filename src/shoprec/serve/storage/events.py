"""Events, impressions and each shopper's exploration state: the transactional core of serving.

A click is applied to its shopper's exploration state in the transaction that stores it, and a
shopper's unclicked items are applied as skips in one transaction with the state, so what the
learner knows never runs ahead of or behind what is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, func, select, text, update

from shoprec.errors import ConflictError
from shoprec.serve.storage.core import StoreCore
from shoprec.serve.tables import Event, Impression, ShopperStateRow

__all__ = ["CLICK_EVENTS", "EventStore", "FeedbackHook"]

CLICK_EVENTS = ("view", "cart", "favourite", "purchase")
"""Event types that, carrying the impression id of a slate that showed their item, count as a
click on it (the reward the exploration learner learns from)."""

FeedbackHook = Callable[[str, "dict[str, Any] | None", "list[dict[str, Any]]", float], "dict[str, Any]"]
"""(shopper, stored state row or None, impression rows, reward) -> the new state row, with keys
space, dim, state (bytes) and n_feedback. Called inside the write transaction."""



PAYLOAD_FIELDS = ("shopper", "item_id", "event", "ts", "value", "impression_id")
"""What must match for a repeated event id to be a retry rather than a conflict."""
_SHOWN_FIELDS = ("item_id", "event", "ts", "value", "impression_id")  # never echo a shopper's pseudonym


def _differences(old: dict[str, Any], new: dict[str, Any], ts_given: bool) -> dict[str, Any]:
    """The payload fields in which `new` differs from `old`: {field: {"stored", "sent"}} (the
    shopper named without its value); `ts` only when the client sent one."""
    out: dict[str, Any] = {}
    for f in PAYLOAD_FIELDS:
        if f == "ts" and not ts_given:
            continue
        a, b = old.get(f), new.get(f)
        if a != b and not (isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-9 * max(abs(a), 1)):
            out[f] = {"stored": a, "sent": b} if f in _SHOWN_FIELDS else "differs"
    return out


def _conflict(conflicts: list[dict[str, Any]]) -> ConflictError:
    first = conflicts[0]
    fields = ", ".join(first["differs"])
    more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
    return ConflictError(
        f"Event id {first['event_id']!r} was {'stored' if first['with'] == 'stored' else 'sent'} before with "
        f"another payload ({fields} differ){more}; nothing of this request was stored. Use a new event id "
        "for a new event; resend the same payload to retry.", conflicts[:20])


class EventStore(StoreCore):
    """Events, impressions, exploration states, and a shopper's data (export, erase)."""

    # ---- events ----------------------------------------------------------------------------
    def add_events(self, rows: Sequence[dict[str, Any]], returning: bool = True,
                   on_feedback: FeedbackHook | None = None) -> set[str]:
        """Store events atomically; returns the event ids stored now (the rest were duplicates).

        rows: dicts with event_id, shopper (a pseudonym), item_id, event, ts, value,
        impression_id, and optionally source (the sending key's id; default "") and ts_given
        (False when the server filled in `ts`). An event id seen before from the same source (in
        this batch or any earlier one) with the same payload is a duplicate and is skipped, so
        that retrying a batch is safe; with another payload it is a ConflictError naming the
        differences, and nothing of the batch is stored. returning=False skips collecting the
        stored ids and the payload check (bulk imports) and returns an empty set.
        on_feedback: when given, every newly stored click (a CLICK_EVENTS event carrying the
        impression id of a slate that showed its item to the same shopper) is applied to that
        shopper's exploration state in the same transaction, once per shown item.
        """
        if not rows:
            return set()
        now = int(time.time())
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        conflicts: list[dict[str, Any]] = []
        for row in rows:  # bulk imports may give received_at (the demo's history is not live traffic)
            row = {"received_at": now, "source": "", **row}
            ts_given = row.pop("ts_given", True)
            key = (row["source"], row["event_id"])
            if key in unique:
                differs = _differences(unique[key], row, ts_given)
                if differs:
                    conflicts.append({"event_id": row["event_id"], "differs": differs, "with": "this batch"})
                continue
            unique[key] = {**row, "_ts_given": ts_given}
        if conflicts:
            raise _conflict(conflicts)
        t = Event.__table__
        stmt = self._insert(t).on_conflict_do_nothing(index_elements=["source", "event_id"])
        values = [{k: v for k, v in r.items() if k != "_ts_given"} for r in unique.values()]
        with self._write() as conn:
            if not returning:
                conn.execute(stmt, values)
                return set()
            inserted = {tuple(r) for r in conn.execute(stmt.returning(t.c.source, t.c.event_id), values)}
            repeated = [r for key, r in unique.items() if key not in inserted]
            if repeated:
                self._check_repeats(conn, repeated)  # raises (rolling back) when a payload differs
            if on_feedback is not None:
                clicks = [r for key, r in unique.items() if key in inserted and r.get("impression_id")
                          and r["event"] in CLICK_EVENTS]
                if clicks:
                    self._apply_clicks(conn, clicks, on_feedback, now)
            return {event_id for _, event_id in inserted}

    def _check_repeats(self, conn: Connection, repeated: list[dict[str, Any]]) -> None:
        """Compare repeated event ids with what is stored under them; ConflictError on a difference."""
        t = Event.__table__
        conflicts = []
        for source in {r["source"] for r in repeated}:
            mine = {r["event_id"]: r for r in repeated if r["source"] == source}
            stored = conn.execute(select(t.c.event_id, *(t.c[f] for f in PAYLOAD_FIELDS))
                                  .where(t.c.source == source, t.c.event_id.in_(list(mine)))).mappings()
            for old in stored:
                differs = _differences(dict(old), mine[old["event_id"]], mine[old["event_id"]]["_ts_given"])
                if differs:
                    conflicts.append({"event_id": old["event_id"], "differs": differs, "with": "stored"})
        if conflicts:
            raise _conflict(conflicts)

    def _apply_clicks(self, conn: Connection, clicks: list[dict[str, Any]], hook: FeedbackHook, now: int) -> None:
        i = Impression.__table__
        by_shopper: dict[str, list[dict[str, Any]]] = {}
        for click in clicks:
            shown = conn.execute(
                select(i.c.id, i.c.shopper, i.c.item_id, i.c.position, i.c.explored, i.c.z)
                .where(i.c.impression_id == click["impression_id"], i.c.item_id == click["item_id"],
                       i.c.shopper == click["shopper"], i.c.feedback_applied.is_(False))
            ).mappings().first()
            if shown is not None and all(r["id"] != shown["id"] for r in by_shopper.get(shown["shopper"], [])):
                by_shopper.setdefault(shown["shopper"], []).append(dict(shown))
        for shopper, shown_rows in by_shopper.items():
            self._update_state(conn, shopper, shown_rows, 1.0, hook, now)

    def _update_state(self, conn: Connection, shopper: str, shown: list[dict[str, Any]], reward: float,
                      hook: FeedbackHook, now: int) -> dict[str, Any]:
        """Read-modify-write of one shopper's state, and mark the impressions as applied."""
        t, i = ShopperStateRow.__table__, Impression.__table__
        if self.dialect == "postgresql":  # serialise concurrent updates of one shopper (any process)
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": shopper})
        old = conn.execute(select(t).where(t.c.shopper == shopper)).mappings().first()
        new = hook(shopper, dict(old) if old else None, shown, reward)
        row = {"shopper": shopper, "space": new["space"], "dim": int(new["dim"]), "state": new["state"],
               "n_feedback": int(new["n_feedback"]), "updated_at": now}
        upsert = self._insert(t)
        conn.execute(upsert.on_conflict_do_update(
            index_elements=["shopper"], set_={c: upsert.excluded[c] for c in ("space", "dim", "state", "n_feedback", "updated_at")}
        ), [row])
        ids = [r["id"] for r in shown]
        if ids:
            conn.execute(update(i).where(i.c.id.in_(ids)).values(feedback_applied=True))
        return row

    # ---- exploration state -----------------------------------------------------------------
    def shopper_state(self, shoppers: Sequence[str]) -> dict[str, Any] | None:
        """The stored exploration state of a shopper (under the first of its pseudonyms that has
        one, current key first), or None."""
        t = ShopperStateRow.__table__
        with self.engine.connect() as conn:
            rows = {r["shopper"]: dict(r) for r in conn.execute(
                select(t).where(t.c.shopper.in_(list(shoppers)))).mappings()}
        return next((rows[s] for s in shoppers if s in rows), None)

    def resolve_skips(self, shopper: str, hook: FeedbackHook, max_age_s: int | None = None) -> dict[str, Any] | None:
        """Apply reward 0 to the shopper's shown items that got no click (their slates are over:
        the shopper asked for a new one), in one transaction with the state update. Returns the
        new state row, or None when nothing was open."""
        i = Impression.__table__
        now = int(time.time())
        with self._write() as conn:
            where = [i.c.shopper == shopper, i.c.feedback_applied.is_(False)]
            if max_age_s is not None:
                where.append(i.c.created_at >= now - max_age_s)
            shown = [dict(r) for r in conn.execute(
                select(i.c.id, i.c.shopper, i.c.item_id, i.c.position, i.c.explored, i.c.z)
                .where(*where).order_by(i.c.id)
            ).mappings()]
            if not shown:
                return None
            return self._update_state(conn, shopper, shown, 0.0, hook, now)

    def feedback_log(self, limit: int = 200_000) -> list[tuple[str, int, float, bool]]:
        """The latest `limit` applied impressions, oldest first, as (item_id, position, z,
        clicked): what a restart replays into the learner's shared statistics."""
        i, e = Impression.__table__, Event.__table__
        clicked = (
            select(func.count()).select_from(e)
            .where(e.c.impression_id == i.c.impression_id, e.c.item_id == i.c.item_id,
                   e.c.event.in_(CLICK_EVENTS))
            .scalar_subquery()
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(i.c.item_id, i.c.position, i.c.z, clicked)
                .where(i.c.feedback_applied.is_(True), i.c.z.is_not(None))
                .order_by(i.c.id.desc()).limit(limit)
            ).all()
        rows.reverse()
        return [(r[0], int(r[1]), float(r[2]), bool(r[3])) for r in rows]

    def events_since(self, since_id: int, batch: int = 50_000) -> Iterable[list[tuple]]:
        """Events with id > since_id as (id, shopper, item_id, event, ts, value), in chunks."""
        t = Event.__table__
        last = since_id
        with self.engine.connect() as conn:
            while True:
                rows = conn.execute(
                    select(t.c.id, t.c.shopper, t.c.item_id, t.c.event, t.c.ts, t.c.value)
                    .where(t.c.id > last).order_by(t.c.id).limit(batch)
                ).all()
                if not rows:
                    return
                last = rows[-1][0]
                yield [tuple(r) for r in rows]

    def last_event_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(Event.__table__.c.id))).scalar() or 0)

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

    def history_before(self, shoppers: Sequence[str], before_id: int, limit: int) -> tuple[list[str], list[str]]:
        """The latest `limit` events of a shopper stored before event row `before_id`, oldest
        first: what the shopper's history was when that event happened. Returns (items, events)."""
        t = Event.__table__
        stmt = (
            select(t.c.item_id, t.c.event)
            .where(t.c.shopper.in_(list(shoppers)), t.c.id < before_id)
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
                       i.c.explored, i.c.reason, i.c.policy, i.c.model, i.c.created_at, i.c.weight)
                .where(i.c.shopper.in_(list(shoppers))).order_by(i.c.created_at, i.c.id)
            ).mappings().all()
            states = conn.execute(
                select(ShopperStateRow.__table__).where(ShopperStateRow.__table__.c.shopper.in_(list(shoppers)))
            ).mappings().all()
        return {"events": [dict(r) for r in events], "impressions": [dict(r) for r in impressions],
                "states": [dict(r) for r in states]}
