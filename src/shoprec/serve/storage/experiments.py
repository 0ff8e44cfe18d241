"""A/B experiments: their definitions, and the per-shopper outcomes their statistics read.

A slate served while an experiment runs records the experiment and the shopper's variant on its
impression rows; an event carrying the slate's impression id and naming one of its items is the
slate's outcome (a click; a purchase counts as a purchase too). Outcomes are summed per shopper,
the unit of randomisation, so that `shoprec.evaluate.ab` can compute delta-method intervals.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import and_, case, func, select, update

from shoprec.errors import ConflictError, UnknownIdError
from shoprec.serve.storage.core import StoreCore
from shoprec.serve.storage.events import CLICK_EVENTS
from shoprec.serve.tables import Event, Experiment, Impression

__all__ = ["ExperimentStore"]


class ExperimentStore(StoreCore):
    """Experiments and their outcomes."""

    def create_experiment(self, experiment_id: str, variants: list[dict[str, Any]]) -> dict[str, Any]:
        """Start an experiment; ConflictError when one is running or the id was used before."""
        t = Experiment.__table__
        with self._write() as conn:
            running = conn.execute(select(t.c.experiment_id).where(t.c.stopped_at.is_(None))).first()
            if running is not None:
                raise ConflictError(f"Experiment {running[0]!r} is running; stop it before starting another.")
            if conn.execute(select(t.c.experiment_id).where(t.c.experiment_id == experiment_id)).first():
                raise ConflictError(f"An experiment with id {experiment_id!r} exists already; choose a new id.")
            row = {"experiment_id": experiment_id, "variants": json.dumps(variants), "started_at": int(time.time()),
                   "stopped_at": None}
            conn.execute(t.insert(), [row])
        return {**row, "variants": variants}

    def stop_experiment(self, experiment_id: str) -> dict[str, Any]:
        t = Experiment.__table__
        with self._write() as conn:
            changed = conn.execute(update(t).where(t.c.experiment_id == experiment_id, t.c.stopped_at.is_(None))
                                   .values(stopped_at=int(time.time()))).rowcount
        if not changed:
            self.experiment(experiment_id)  # UnknownIdError when there is none
        return self.experiment(experiment_id)

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        t = Experiment.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.experiment_id == experiment_id)).mappings().first()
        if row is None:
            raise UnknownIdError(f"No experiment with id {experiment_id!r}.")
        return {**dict(row), "variants": json.loads(row["variants"])}

    def running_experiment(self) -> dict[str, Any] | None:
        t = Experiment.__table__
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.stopped_at.is_(None))).mappings().first()
        return None if row is None else {**dict(row), "variants": json.loads(row["variants"])}

    def experiments(self, limit: int = 20) -> list[dict[str, Any]]:
        t = Experiment.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.started_at.desc()).limit(limit)).mappings().all()
        return [{**dict(r), "variants": json.loads(r["variants"])} for r in rows]

    def experiment_outcomes(self, experiment_id: str) -> list[tuple[str, str, int, int, int]]:
        """Per (variant, shopper): slates shown, slates with a click, purchases from slates."""
        i, e = Impression.__table__, Event.__table__
        with self.engine.connect() as conn:
            slates = conn.execute(
                select(i.c.variant, i.c.shopper, func.count(func.distinct(i.c.impression_id)))
                .where(i.c.experiment == experiment_id, i.c.shopper.is_not(None))
                .group_by(i.c.variant, i.c.shopper)
            ).all()
            joined = e.join(i, and_(e.c.impression_id == i.c.impression_id, e.c.item_id == i.c.item_id,
                                    e.c.shopper == i.c.shopper))
            outcomes = conn.execute(
                select(i.c.variant, i.c.shopper, func.count(func.distinct(i.c.impression_id)),
                       func.count(func.distinct(case((e.c.event == "purchase", e.c.id)))))
                .select_from(joined)
                .where(i.c.experiment == experiment_id, e.c.event.in_(CLICK_EVENTS))
                .group_by(i.c.variant, i.c.shopper)
            ).all()
        got = {(v, s): (int(c), int(p)) for v, s, c, p in outcomes}
        return [(v, s, int(n), *got.get((v, s), (0, 0))) for v, s, n in slates]
