"""Training a servable model from the service's own database.

The stored events are already pseudonymised, so a model trained here never holds a raw shopper
id. `choose_model` picks what to serve from the data (the behaviour Transformer, text-initialised
where the catalogue has titles, when the shop has enough sequences to train it; item-kNN for a
shop too small for it) and says why. `train_from_store` fits it once on the leave-one-out split
(each shopper's last event held out for the offline metrics, the one before for early stopping),
saves it, and writes the JSON sidecar the dashboard reads: metrics, the data window, the choice
and its reason, the privacy record. The held-out events are not lost to serving: every request
reads the shopper's stored history, and the online learning job fine-tunes on what came after.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoprec.errors import EmptyDataError, check_float

__all__ = [
    "MIN_EVENTS",
    "MIN_SEQUENCES",
    "SAMPLED_SOFTMAX_ITEMS",
    "ModelChoice",
    "choose_model",
    "dataset_from_store",
    "train_from_store",
    "write_sidecar",
]

MIN_EVENTS = 5_000
MIN_SEQUENCES = 200
"""Below this many events, or shoppers with three events or more, the Transformer has too few
sequences to learn from and item-kNN is served instead."""
SAMPLED_SOFTMAX_ITEMS = 50_000
"""Above this many items the Transformer trains with a sampled softmax and sparse item-table
updates. Measured (benchmarks/sparse_items.py, 2 threads, d 64, 50 events): the full softmax
trains 0.43x the targets per second of the sampled one at 10,000 items, 0.053x at 100,000 and
0.004x at 1,000,000, while sampled with sparse updates stays at 40,000-49,000 a second at every
size; within a training budget the full softmax then sees too few targets."""


@dataclass(frozen=True)
class ModelChoice:
    """What to serve, with which parameters, and why (shown in /v1/model and on the dashboard)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def choose_model(data, budget_s: float = 90.0, name: str | None = None) -> ModelChoice:
    """The model for a shop's data: the behaviour Transformer when there are at least
    MIN_EVENTS events and MIN_SEQUENCES shoppers with three events or more, else item-kNN.

    budget_s: the Transformer's training budget in seconds (its `max_seconds`). name: serve
    this model instead (the reason then says it was asked for).
    """
    check_float("budget_s", budget_s, 1.0, 1e7, "choose_model")
    lengths = np.diff(data.indptr)
    sequences = int((lengths >= 3).sum())
    has_titles = data.catalogue is not None and bool((data.catalogue.frame["title"].astype(str) != "").any())
    transformer = {"max_seconds": float(budget_s), "epochs": 200, "eval_every": 2, "patience": 3,
                   "text_init": has_titles}
    large = data.n_items > SAMPLED_SOFTMAX_ITEMS
    if large:
        transformer.update(loss="sampled", n_negatives=512, sparse_item_grads=True)
    size = f"{len(data):,} events, {sequences:,} shoppers with 3+ events"
    if name is not None:
        return ModelChoice(name, transformer if name == "transformer" else {}, f"asked for ({size})")
    if len(data) >= MIN_EVENTS and sequences >= MIN_SEQUENCES:
        text = ", item embeddings initialised from product titles" if has_titles else ""
        if large:
            text += (f", sampled softmax with sparse item updates ({data.n_items:,} items, above "
                     f"{SAMPLED_SOFTMAX_ITEMS:,})")
        return ModelChoice("transformer", transformer,
                           f"behaviour Transformer: the shop has enough sequences to learn from ({size}){text}")
    return ModelChoice("item-knn", {}, f"item-kNN: too little data for the Transformer ({size}; it needs "
                                      f"{MIN_EVENTS:,} events and {MIN_SEQUENCES:,} shoppers with 3+ events)")


def catalogue_from_store(store):
    """The stored catalogue as a `Catalogue` (None when it is empty)."""
    from shoprec.data.schema import Catalogue

    items = store.all_items()
    if not items:
        return None
    return Catalogue.from_frame(pd.DataFrame(
        [(i, t, c, p) for i, t, c, p, _a, _t in items], columns=["item", "title", "category", "price"]))


def trains_privately(model) -> bool:
    """Whether a model (fitted, or configured and not yet fitted) trains with user-level
    differential privacy: its accountant's report says so, or it is one of the private models
    (`shoprec.privacy`) configured with a finite epsilon."""
    report = getattr(model, "privacy_", None)
    if report is not None:
        return bool(report.private)
    params = model.get_params()
    epsilon = params.get("target_epsilon", params.get("epsilon"))
    return (type(model).__module__.startswith("shoprec.privacy") and epsilon is not None
            and math.isfinite(float(epsilon)))


def dataset_from_store(store, private_model: bool = False):
    """The stored events (with the stored catalogue) that a model may train on, as a Dataset;
    EmptyDataError when none. Shoppers who chose "private" are left out unless the model is
    differentially private (`private_model`); those who chose "none" always are."""
    from shoprec.data.dataset import Dataset
    from shoprec.data.schema import Interactions

    excluded = store.excluded_from_training(private_model)
    rows = [r for chunk in store.iter_events() for r in chunk if not excluded or r[0] not in excluded]
    if not rows:
        raise EmptyDataError("The database holds no events to train on; ingest some first.")
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "value"])
    return Dataset.from_interactions(Interactions.from_frame(frame, "store"), catalogue_from_store(store))


def train_from_store(store, path: str | Path, choice: ModelChoice | None = None, budget_s: float = 90.0,
                     evaluate: bool = True, verbose: bool = False,
                     log: Callable[[str], None] = lambda message: None) -> Path:
    """Fit the chosen model on the stored events, save it to `path` and write its sidecar."""
    from shoprec.data.split import leave_one_out
    from shoprec.evaluate.protocol import evaluate as run_evaluation
    from shoprec.models.registry import make_model, model_class

    if choice is None:
        choice = choose_model(dataset_from_store(store), budget_s)
    log(f"serving {choice.reason}")
    params = dict(choice.params)
    if "verbose" in model_class(choice.name).param_defaults():
        params.setdefault("verbose", verbose)
    # Shoppers who chose "private" train only a differentially private model.
    data = dataset_from_store(store, private_model=trains_privately(make_model(choice.name, **params)))
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    if evaluate:
        parts = leave_one_out(data)
        model = make_model(choice.name, **params).fit(parts.train, parts.valid)
        fit_s = time.perf_counter() - t0
        result = run_evaluation(model, parts, k=(10,), catalogue=data.catalogue)
        metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        log("offline metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in list(metrics.items())[:4]))
    else:
        model = make_model(choice.name, **params).fit(data)
        fit_s = time.perf_counter() - t0
    log(f"trained {choice.name} in {fit_s:.0f}s")
    path = model.save(path)
    write_sidecar(path, model, data, choice, fit_s, metrics, last_event_id=store.last_event_id())
    log(f"saved {path}")
    return path


def write_sidecar(path: Path, model, data, choice: ModelChoice, fit_seconds: float, metrics: dict[str, float],
                  last_event_id: int | None = None, extra: dict[str, Any] | None = None,
                  data_window: dict[str, Any] | None = None) -> Path:
    """`<model>.json` beside a model file: what the dashboard and a later retrain read.

    data: the Dataset it was trained on (its size and time span are recorded), or None with an
    explicit `data_window` (an online fine-tune, whose window extends the served model's)."""
    privacy = getattr(model, "privacy_", None)
    record = ({"dp": True, **privacy.as_dict()} if privacy is not None and privacy.private
              else {"dp": False, "note": "trained without differential privacy"})
    info: dict[str, Any] = {
        "model": model.name,
        "params": model.get_params(),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fit_seconds": round(float(fit_seconds), 2),
        **({"n_events": len(data), "n_users": int(data.n_users), "n_items": int(data.n_items)}
           if data is not None else {}),
        "data_window": data_window if data_window is not None else {
            "first_event": int(data.timestamp.min()) if len(data) else None,
            "last_event": int(data.timestamp.max()) if len(data) else None,
            "last_event_id": last_event_id,
        },
        "choice": {"name": choice.name, "reason": choice.reason},
        "metrics": metrics,
        "protocol": "leave-one-out, full ranking" if metrics else "not evaluated",
        "privacy": record,
        **(extra or {}),
    }
    if hasattr(model, "history_"):
        info["training_log"] = model.training_log
    sidecar = Path(path).with_suffix(".json")
    sidecar.write_text(json.dumps(info, indent=2, default=float) + "\n")
    return sidecar
