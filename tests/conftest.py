"""Shared test fixtures: a tiny hand-made shop, and the path to the real datasets (optional)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Catalogue, Interactions

SHARED = Path(os.environ.get("SHOPREC_DATASETS", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))


@pytest.fixture(autouse=True)
def _offline_and_few_threads(monkeypatch):
    # Nothing may reach a hub at run time; and tests stay small, so one thread avoids
    # oversubscribing the 2-core CI machine.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # `shoprec serve` sets the process umask (077); a test that runs it in process gives it back.
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


@pytest.fixture
def shared_datasets() -> Path:
    """Path to ../shared/datasets; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"real datasets not found at {SHARED}")
    return SHARED


@pytest.fixture
def tiny_shop() -> Dataset:
    """Six shoppers, eight products in two categories, mixed event types, known order."""
    rows = [
        # user, item, event, timestamp
        ("u1", "i1", "view", 1), ("u1", "i2", "cart", 2), ("u1", "i3", "purchase", 3), ("u1", "i4", "view", 4),
        ("u2", "i1", "view", 1), ("u2", "i2", "view", 2), ("u2", "i3", "purchase", 3), ("u2", "i5", "view", 4),
        ("u3", "i2", "view", 1), ("u3", "i3", "view", 2), ("u3", "i4", "cart", 3), ("u3", "i1", "purchase", 4),
        ("u4", "i5", "view", 1), ("u4", "i6", "view", 2), ("u4", "i7", "purchase", 3), ("u4", "i8", "view", 4),
        ("u5", "i5", "view", 1), ("u5", "i6", "cart", 2), ("u5", "i7", "view", 3), ("u5", "i6", "purchase", 4),
        ("u6", "i6", "view", 1), ("u6", "i7", "view", 2), ("u6", "i8", "purchase", 3), ("u6", "i5", "view", 4),
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    catalogue = Catalogue.from_frame(
        pd.DataFrame(
            {
                "item": [f"i{j}" for j in range(1, 9)],
                "title": ["red mug", "blue mug", "tea pot", "tea cosy", "garden hose", "watering can", "rake", "spade"],
                "category": ["kitchen"] * 4 + ["garden"] * 4,
                "price": [3.5, 3.5, 12.0, 6.0, 15.0, 8.0, 11.0, 14.0],
            }
        )
    )
    return Dataset.from_interactions(Interactions.from_frame(frame, "tiny"), catalogue)


@pytest.fixture
def synthetic_shop() -> Dataset:
    """300 shoppers and 120 items in 4 taste clusters: a model that learns beats popularity."""
    rng = np.random.default_rng(7)
    n_users, n_items, n_clusters = 300, 120, 4
    item_cluster = np.arange(n_items) % n_clusters
    rows = []
    for u in range(n_users):
        c = u % n_clusters
        pool = np.flatnonzero(item_cluster == c)
        length = rng.integers(8, 20)
        # Mostly in-cluster items with a popularity skew, a few random ones.
        weights = 1.0 / (1 + np.arange(len(pool)))
        chosen = list(rng.choice(pool, size=min(length, len(pool)), replace=False, p=weights / weights.sum()))
        chosen += list(rng.choice(n_items, size=2, replace=False))
        for t, i in enumerate(chosen):
            rows.append((f"u{u}", f"i{i}", "view" if t % 3 else "purchase", 1_600_000_000 + 3600 * t + u))
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    catalogue = Catalogue.from_frame(
        pd.DataFrame(
            {
                "item": [f"i{i}" for i in range(n_items)],
                "title": [f"product {i} of line {item_cluster[i]}" for i in range(n_items)],
                "category": [f"cat{item_cluster[i]}" for i in range(n_items)],
                "price": np.round(rng.uniform(1, 50, n_items), 2),
            }
        )
    )
    return Dataset.from_interactions(Interactions.from_frame(frame, "synthetic"), catalogue)


@pytest.fixture
def hashed_text(monkeypatch):
    """Replace MiniLM by the dependency-free hashed bag of words (same interface)."""
    from shoprec.text import encoder

    def fake(items, catalogue, cache_dir=None, encoder_=None):
        texts = encoder.item_text(catalogue, items)
        return encoder._unit_rows(encoder.hashed_bag_of_words(64)(texts))

    monkeypatch.setattr(encoder, "item_text_matrix", fake)
