"""What the dashboard reads: traffic per time bucket, the weights slates were served at, and the
online learning job's runs."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import case, func, select, update

from shoprec.serve.storage.core import StoreCore
from shoprec.serve.tables import Event, Impression, Retrain

__all__ = ["ReportStore"]


class ReportStore(StoreCore):
    """Dashboard statistics and retrain runs."""

    # ---- retrains ----------------------------------------------------------------------------
    def start_retrain(self, trigger: str) -> int:
        t = Retrain.__table__
        with self._write() as conn:
            return int(conn.execute(t.insert().values(started_at=int(time.time()), status="running", trigger=trigger,
                                                      n_events=0, message="").returning(t.c.id)).scalar_one())

    def finish_retrain(self, run_id: int, **values: Any) -> None:
        t = Retrain.__table__
        with self._write() as conn:
            conn.execute(update(t).where(t.c.id == run_id).values(finished_at=int(time.time()), **values))

    def latest_swapped_model(self) -> dict[str, Any] | None:
        """The newest retrain run that swapped in a model file: {"id", "model_path",
        "model_version", "finished_at"}, or None."""
        t = Retrain.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.c.id, t.c.model_path, t.c.model_version, t.c.finished_at)
                .where((t.c.status == "swapped") & t.c.model_path.is_not(None))
                .order_by(t.c.id.desc()).limit(1)
            ).mappings().first()
        return None if row is None else dict(row)

    def retrains(self, limit: int = 20) -> list[dict[str, Any]]:
        t = Retrain.__table__
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(t).order_by(t.c.id.desc()).limit(limit)).mappings()]

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

    def weight_histogram(self, since: int, bins: int = 10) -> list[int]:
        """How many slates since `since` were served at each exploration weight (bins over [0, 1])."""
        i = Impression.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(i.c.weight).where(i.c.created_at >= since, i.c.position == 0, i.c.weight.is_not(None))
            ).scalars().all()
        counts = [0] * bins
        for w in rows:
            counts[min(int(float(w) * bins), bins - 1)] += 1
        return counts
