"""`shoprec serve --demo`: fill an empty database with the bundled shop and train a model.

On an empty database the bundled Online Retail shop's catalogue and purchases are imported
(shopper ids pseudonymised on the way in, like any other ingestion). When no model file exists,
one is trained from the *stored* events, so its user vocabulary holds pseudonyms, never raw ids,
and a JSON sidecar with its offline metrics (leave-one-out, full ranking) is written next to it
for the dashboard.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.privacy.pseudonym import Pseudonymizer
from shoprec.serve.storage import Store

__all__ = ["DemoState", "bootstrap_demo", "train_from_store"]

DEFAULT_MODEL = "item-knn"


@dataclass(frozen=True)
class DemoState:
    model_path: Path
    sample_shoppers: list[str]


def _load_shop():
    from shoprec.data.readers import load, load_demo
    from shoprec.errors import DataError

    try:
        return load_demo()
    except DataError:
        # A checkout without the bundled files: fall back to the full source, when present.
        root = Path(os.environ.get("SHOPREC_DATASETS", Path(__file__).resolve().parents[3].parent / "shared" / "datasets"))
        source = root / "online-retail" / "online_retail.csv.gz"
        if not source.is_file():
            raise
        return load(source, "online-retail")


def bootstrap_demo(
    store: Store,
    pseudonymizer: Pseudonymizer,
    model_dir: str | Path,
    model_name: str = DEFAULT_MODEL,
    n_samples: int = 6,
    log: Callable[[str], None] = lambda message: None,
) -> DemoState:
    """Import the demo shop when the database is empty, train a model when none is saved.

    Returns the model path and a few raw demo shopper ids for the storefront's picker (they are
    public demo data, held in memory only).
    """
    t0 = time.perf_counter()
    loaded = _load_shop()
    frame = loaded.interactions.frame
    if store.count_items() == 0 and loaded.catalogue is not None:
        cat = loaded.catalogue.frame
        rows = [
            {"item_id": str(i)[:64], "title": str(t)[:300], "category": str(c)[:100],
             "price": None if pd.isna(p) else float(p), "active": True}
            for i, t, c, p in zip(cat["item"], cat["title"], cat["category"], cat["price"])
        ]
        for start in range(0, len(rows), 5000):
            store.upsert_items(rows[start:start + 5000])
        log(f"imported {len(rows):,} catalogue items")
    if store.count_events() == 0:
        pseudo = {u: pseudonymizer.pseudonymize(u) for u in pd.unique(frame["user"])}
        users = frame["user"].map(pseudo).to_numpy()
        items, events = frame["item"].to_numpy(), frame["event"].astype(str).to_numpy()
        ts, values = frame["timestamp"].to_numpy(), frame["value"].to_numpy()
        chunk = 20_000
        for start in range(0, len(frame), chunk):
            stop = min(start + chunk, len(frame))
            store.add_events([
                {"event_id": f"demo-{j}", "shopper": users[j], "item_id": str(items[j]), "event": events[j],
                 "ts": int(ts[j]), "value": None if np.isnan(values[j]) else float(values[j]),
                 "impression_id": None, "received_at": int(ts[j])}
                for j in range(start, stop)
            ], returning=False)
        log(f"imported {len(frame):,} events of {len(pseudo):,} shoppers (pseudonymised) "
            f"in {time.perf_counter() - t0:.1f}s")
    model_path = Path(model_dir) / f"{model_name}.npz"
    if not model_path.is_file():
        log(f"training {model_name} on the stored events ...")
        train_from_store(store, model_name, model_path, log=log)
    counts = frame["user"].value_counts()
    samples = [str(u) for u in counts.index[:: max(1, len(counts) // (4 * n_samples))][:n_samples]]
    return DemoState(model_path=model_path, sample_shoppers=samples)


def train_from_store(store: Store, model_name: str, path: str | Path, evaluate: bool = True,
                     log: Callable[[str], None] = lambda message: None) -> Path:
    """Fit `model_name` on every stored event (with the stored catalogue), save it to `path`,
    and write `<path>.json` with its offline metrics when `evaluate`."""
    from shoprec.data.dataset import Dataset
    from shoprec.data.schema import Catalogue, Interactions
    from shoprec.models.registry import make_model

    chunks = list(store.iter_events())
    rows = [r for chunk in chunks for r in chunk]
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "value"])
    items = store.all_items()
    catalogue = Catalogue.from_frame(pd.DataFrame(
        [(i, t, c, p) for i, t, c, p, _a, _t in items], columns=["item", "title", "category", "price"]
    )) if items else None
    data = Dataset.from_interactions(Interactions.from_frame(frame, "store"), catalogue)
    info: dict = {"model": model_name, "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "n_events": len(data), "n_users": data.n_users, "n_items": data.n_items}
    t0 = time.perf_counter()
    if evaluate:
        from shoprec.data.split import leave_one_out
        from shoprec.evaluate.protocol import evaluate as run_evaluation

        parts = leave_one_out(data)
        probe = make_model(model_name).fit(parts.train, parts.valid)
        result = run_evaluation(probe, parts, k=(10,), catalogue=catalogue)
        info["metrics"] = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        info["protocol"] = "leave-one-out, full ranking"
        log("offline metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in list(info["metrics"].items())[:4]))
    model = make_model(model_name).fit(data)
    info["fit_seconds"] = round(time.perf_counter() - t0, 2)
    info["privacy"] = {"dp": False, "note": "trained without differential privacy"}
    path = model.save(path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    log(f"saved {path}")
    return path
