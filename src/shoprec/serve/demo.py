"""`shoprec serve --demo`: fill an empty database with the bundled shop and train a model.

On an empty database the bundled Online Retail shop's catalogue and purchases are imported
(shopper ids pseudonymised on the way in, like any other ingestion). When no model file exists,
one is trained from the *stored* events (`shoprec.serve.training`: the behaviour Transformer,
text-initialised, within a stated time budget), so its user vocabulary holds pseudonyms, never
raw ids, and a JSON sidecar with its offline metrics (leave-one-out, full ranking) and the
reason it was chosen is written next to it for the dashboard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.privacy.pseudonym import Pseudonymizer
from shoprec.serve.storage import Store

__all__ = ["DEMO_BUDGET_S", "DemoState", "bootstrap_demo"]

DEMO_BUDGET_S = 90.0
"""Seconds of training for the demo's Transformer (the text encoding of the titles comes on top,
once: the vectors are cached)."""


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
    model_name: str | None = None,
    n_samples: int = 6,
    log: Callable[[str], None] = lambda message: None,
    budget_s: float = DEMO_BUDGET_S,
    verbose: bool = False,
) -> DemoState:
    """Import the demo shop when the database is empty, train a model when none is saved.

    model_name: what to serve (None: `choose_model` decides; the Transformer on this shop).

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
    from shoprec.serve.training import choose_model, dataset_from_store, train_from_store

    data = dataset_from_store(store)
    choice = choose_model(data, budget_s, name=model_name)
    model_path = Path(model_dir) / f"{choice.name}.npz"
    if not model_path.is_file():
        log(f"training {choice.name} on the stored events (budget {budget_s:.0f}s) ...")
        t1 = time.perf_counter()
        train_from_store(store, model_path, choice, verbose=verbose, log=log)
        log(f"model ready in {time.perf_counter() - t1:.0f}s")
    counts = frame["user"].value_counts()
    samples = [str(u) for u in counts.index[:: max(1, len(counts) // (4 * n_samples))][:n_samples]]
    return DemoState(model_path=model_path, sample_shoppers=samples)
