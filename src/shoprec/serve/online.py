"""Online learning: the served model keeps learning from the events it causes.

Two jobs, run one at a time on a background thread so that no request ever waits for them:

- **retrain**: the events stored since the served model's data window are split per shopper
  into their newest event (held out) and the rest; a copy of the model is fine-tuned on the rest
  (`partial_fit`, the catalogue growing where new items appear; models without it are refitted
  on every stored event but the held-out ones), both models rank each held-out event from the
  shopper's earlier history (full ranking, NDCG@10), and the copy is swapped in only when it is
  not worse. The copy then learns the held-out events too, is saved beside the served model with
  its sidecar, and becomes the served model. A failed run keeps the old model; every run is a
  row of the `retrains` table, shown on the dashboard.
- **grow**: catalogue items the served model does not know get item vectors from their text
  (the Transformer's text map: `partial_fit` with no training epochs), so an item added through
  the API is recommendable seconds later, before anyone has interacted with it.

`shoprec retrain --db URL --model PATH` runs the retrain job once, for cron.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_HELD_OUT", "OnlineLearner", "RetrainOutcome", "record_outcome", "retrain_once"]

MAX_HELD_OUT = 2000  # newest events that judge a candidate (the latest shoppers' last events)


@dataclass(frozen=True)
class RetrainOutcome:
    """What one retrain run did. status: "swapped", "kept" (not better, or too few events) or
    "failed"; metric_before / metric_after: NDCG@10 of the served model and of the candidate on
    the held-out newest events."""

    status: str
    n_events: int
    metric_before: float | None
    metric_after: float | None
    message: str
    model_path: str | None = None
    model_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _new_events(store, since_id: int) -> pd.DataFrame:
    rows = [r for chunk in store.events_since(since_id) for r in chunk]
    return pd.DataFrame(rows, columns=["id", "user", "item", "event", "timestamp", "value"])


def _dataset(frame: pd.DataFrame, users, items, catalogue):
    from shoprec.data.dataset import Dataset
    from shoprec.data.schema import EVENT_TYPES

    codes = {name: code for code, name in enumerate(EVENT_TYPES)}
    return Dataset.from_arrays(
        users, items, users.index(frame["user"].to_numpy(dtype=str)), items.index(frame["item"].to_numpy(dtype=str)),
        frame["event"].map(codes).fillna(0).to_numpy(np.int8), frame["timestamp"].to_numpy(np.int64),
        frame["value"].astype(float).to_numpy(), catalogue, "new events",
    )


def _users(frame: pd.DataFrame):
    from shoprec.data.vocab import Vocabulary

    return Vocabulary(pd.unique(frame["user"].to_numpy(dtype=str)), "user")


def _ndcg_on_held_out(model, store, held: pd.DataFrame, history_limit: int) -> float:
    """Mean NDCG@10 of each held-out event's item, ranked by `model` from the shopper's stored
    history before it (every item the history holds is masked; full ranking)."""
    total, n = 0.0, 0
    position = {item: i for i, item in enumerate(model.items_.ids.tolist())}
    for row in held.itertuples():
        target = position.get(row.item, -1)
        if target < 0:
            continue
        items, events = store.history_before([row.user], row.id, history_limit)
        if not items:
            continue
        scores = np.asarray(model.score_history(items, events), np.float64)
        seen = [position[i] for i in items if i in position]
        if target in seen:
            continue
        scores[seen] = -np.inf
        better = int((scores > scores[target]).sum() + (scores[:target] == scores[target]).sum())
        total += 1.0 / np.log2(better + 2.0) if better < 10 else 0.0
        n += 1
    return total / n if n else float("nan")


def retrain_once(store, model, info: dict[str, Any], out_dir: str | Path, min_events: int = 100,
                 epochs: int = 1, history_limit: int = 200,
                 log: Callable[[str], None] = lambda message: None) -> tuple[RetrainOutcome, Any]:
    """One retrain of `model` (served, with its sidecar `info`) on the events stored since its
    data window; returns the outcome and the new model (None unless swapped)."""
    from shoprec.serve.training import (
        ModelChoice,
        catalogue_from_store,
        dataset_from_store,
        trains_privately,
        write_sidecar,
    )

    since = int((info.get("data_window") or {}).get("last_event_id") or 0)
    if trains_privately(model):
        # Fine-tuning would spend privacy budget that the model's accountant never counted.
        return RetrainOutcome("kept", 0, None, None, "the served model is differentially private; online "
                              "fine-tuning would spend budget its accountant has not counted: retrain it with "
                              "shoprec train instead"), None
    frame = _new_events(store, since)
    excluded = store.excluded_from_training(False)
    if excluded:  # shoppers who chose "private" or "none"
        frame = frame[~frame["user"].isin(excluded)]
    if len(frame) < min_events:
        return RetrainOutcome("kept", len(frame), None, None,
                              f"{len(frame)} new events since event {since}; waiting for {min_events}"), None
    last_id = int(frame["id"].max())
    newest = frame.groupby("user")["id"].transform("max") == frame["id"]
    held = frame[newest & (frame.groupby("user")["id"].transform("size") > 1)].tail(MAX_HELD_OUT)
    rest = frame.drop(held.index)
    log(f"retrain: {len(frame):,} new events, {len(held):,} held out")
    before = _ndcg_on_held_out(model, store, held, history_limit)
    t0 = time.perf_counter()
    fine_tune = hasattr(model, "partial_fit")
    catalogue = catalogue_from_store(store)
    if fine_tune:
        candidate = copy.deepcopy(model)
        if len(rest):
            candidate.partial_fit(_dataset(rest, _users(rest), candidate.items_.extend(frame["item"].to_numpy(str)),
                                           catalogue), epochs=epochs)
    else:
        from shoprec.models.registry import make_model

        data = dataset_from_store(store)
        held_rows = set(zip(held["user"], held["item"], held["timestamp"]))
        rows = zip(data.users.ids[data.user_idx], data.items.ids[data.item_idx], data.timestamp)
        keep = np.fromiter((r not in held_rows for r in rows), bool, count=len(data))
        candidate = make_model(model.name, **model.get_params()).fit(data.subset(keep))
    after = _ndcg_on_held_out(candidate, store, held, history_limit)
    fit_s = time.perf_counter() - t0
    if not np.isnan(before) and not np.isnan(after) and after < before:
        return RetrainOutcome("kept", len(frame), before, after,
                              f"the candidate scored NDCG@10 {after:.4f} on the newest events, below the served "
                              f"model's {before:.4f}: kept the served model"), None
    if fine_tune and len(held):  # the held-out events are not wasted once they have judged
        candidate.partial_fit(_dataset(held, _users(held), candidate.items_.extend(held["item"].to_numpy(str)),
                                       catalogue), epochs=epochs)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = candidate.save(Path(out_dir) / f"{candidate.name}-{stamp}.npz")
    window = {**(info.get("data_window") or {}), "last_event_id": last_id, "last_event": int(frame["timestamp"].max())}
    reason = (info.get("choice") or {}).get("reason", "")
    write_sidecar(path, candidate, None, ModelChoice(candidate.name, {}, f"{reason} (fine-tuned online)".strip()),
                  fit_s, dict(info.get("metrics") or {}), data_window=window, extra={
                      "online": {"since_event_id": since, "n_events": len(frame), "ndcg_before": before,
                                 "ndcg_after": after},
                      **{k: info[k] for k in ("n_events", "n_users", "n_items") if k in info}})
    message = (f"fine-tuned on {len(frame):,} new events: NDCG@10 on the newest events "
               f"{before:.4f} -> {after:.4f}")
    from shoprec.serve.views import file_version

    return RetrainOutcome("swapped", len(frame), before, after, message, str(path), file_version(path)), candidate


class OnlineLearner:
    """The background worker of one service: a queue of jobs ("retrain", "grow", "follow"),
    a retrain scheduled every `every_s` seconds when that is > 0, and a "follow" check every
    `follow_s` seconds when that is > 0 (several worker processes over one database: each loads
    the model another worker's or cron's retrain run swapped in)."""

    def __init__(self, service, every_s: float = 0.0, min_events: int = 100, epochs: int = 1,
                 follow_s: float = 0.0) -> None:
        self.service = service
        self.every_s = every_s
        self.follow_s = follow_s
        self.min_events = min_events
        self.epochs = epochs
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.running: str | None = None
        self.last: dict[str, Any] | None = None
        self._catalogue_stamp: tuple[int, int] | None = None  # what follow_catalogue saw last

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="shoprec-online-learning", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: str, trigger: str = "api") -> None:
        """Queue a job ("retrain", "grow" or "follow"); it runs after the jobs before it."""
        self._jobs.put((job, trigger))

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until the queue is empty and no job runs (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while (not self._jobs.empty() or self.running) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _loop(self) -> None:
        now = time.monotonic()
        due = {"retrain": now + self.every_s if self.every_s > 0 else float("inf"),
               "follow": now if self.follow_s > 0 else float("inf")}
        while not self._stop.is_set():
            scheduled = min(due, key=due.get)
            wait = max(0.0, min(due[scheduled] - time.monotonic(), 3600.0))
            try:
                item = self._jobs.get(timeout=wait)
            except queue.Empty:
                if due[scheduled] == float("inf"):
                    continue
                item = (scheduled, "schedule")
                due[scheduled] = time.monotonic() + (self.every_s if scheduled == "retrain" else self.follow_s)
            if item is None:
                return
            job, trigger = item
            self.running = job
            try:
                if job == "retrain":
                    self.retrain(trigger)
                elif job == "grow":
                    self.grow()
                elif job == "follow":
                    self._follow_safely()
            finally:
                self.running = None

    def _follow_safely(self) -> None:
        try:
            self.follow()
            self.follow_catalogue()
        except Exception:  # noqa: BLE001 - a failed check keeps the served model; the next one retries
            self.service.log(f"follow failed: {traceback.format_exc(limit=3)}")

    # ---- the jobs ------------------------------------------------------------------------
    def retrain(self, trigger: str = "api") -> RetrainOutcome:
        """One retrain run, recorded in the `retrains` table; the old model keeps serving on failure."""
        service = self.service
        store = service.store
        run_id = store.start_retrain(trigger)
        view = service.engine.model_view
        try:
            if view is None:
                raise RuntimeError("no model is served yet")
            out_dir = Path(view.path).parent if view.path else service.settings.models_root
            if out_dir is None:
                raise RuntimeError("the served model has no file, so there is no model directory to save into")
            outcome, model = retrain_once(store, view.model, view.info, out_dir, self.min_events, self.epochs,
                                          service.settings.history_limit)
            if model is not None and outcome.model_path:
                service.serve_model(outcome.model_path)
        except Exception as exc:  # noqa: BLE001 - a failed run is reported, never raised into the service
            outcome = RetrainOutcome("failed", 0, None, None, f"{type(exc).__name__}: {exc}")
            service.log(f"retrain failed: {traceback.format_exc(limit=3)}")
        record_outcome(store, run_id, outcome)
        self.last = {"id": run_id, **outcome.as_dict()}
        return outcome

    def follow(self) -> bool:
        """Serve the model file the newest swapped retrain run wrote, when it is not the one
        served (another worker process, or `shoprec retrain` from cron, ran it); True if it did."""
        service = self.service
        latest = service.store.latest_swapped_model()
        view = service.engine.model_view
        if latest is None or (view is not None and latest["model_version"] == view.version):
            return False
        path = Path(latest["model_path"])
        root = service.settings.models_root
        if not path.is_file() or (root is not None and not path.resolve().is_relative_to(root)):
            service.log(f"follow: retrain run {latest['id']} wrote {path}, which is not a file in the model "
                        "directory; still serving the current model")
            return False
        service.serve_model(path)
        service.log(f"follow: now serving {path.name} (retrain run {latest['id']})")
        return True

    def follow_catalogue(self) -> bool:
        """Re-read the catalogue when another process wrote it (another worker, an import job);
        True if it did."""
        stamp = self.service.store.catalogue_stamp()
        if stamp == self._catalogue_stamp:
            return False
        changed = self._catalogue_stamp is not None
        self._catalogue_stamp = stamp
        if changed:
            self.service.refresh_catalogue()
        return changed

    def grow(self) -> int:
        """Give catalogue items the served model does not know vectors from their text; returns
        how many items were added (0 when the model cannot place items by text)."""
        service = self.service
        view = service.engine.model_view
        if view is None or not hasattr(view.model, "partial_fit"):
            return 0
        params = view.model.get_params()
        if not (params.get("text_init") or params.get("text_fusion")):
            return 0
        from shoprec.serve.training import catalogue_from_store

        catalogue_ids = [row[0] for row in service.store.all_items() if row[4]]
        unknown = [i for i in catalogue_ids if i not in view.position]
        if not unknown:
            return 0
        grown = copy.deepcopy(view.model)
        items = grown.items_.extend(unknown)
        empty = pd.DataFrame(columns=["user", "item", "event", "timestamp", "value"])
        from shoprec.data.vocab import Vocabulary

        catalogue = catalogue_from_store(service.store)
        grown.partial_fit(_dataset(empty, Vocabulary([], "user"), items, catalogue), epochs=0)
        service.engine.set_model(grown, path=view.path, info=view.info, version=f"{view.version[:8]}+{len(unknown)}")
        service.engine.replay_feedback(service.store.feedback_log())
        return len(unknown)


def record_outcome(store, run_id: int, outcome: RetrainOutcome) -> None:
    """Finish a retrain run's row: its outcome, and the model file it wrote when it swapped."""
    swapped = outcome.status == "swapped"
    store.finish_retrain(run_id, status=outcome.status, n_events=outcome.n_events,
                         metric_before=_finite(outcome.metric_before), metric_after=_finite(outcome.metric_after),
                         model_version=outcome.model_version if swapped else None,
                         model_path=outcome.model_path if swapped else None, message=outcome.message[:2000])


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
