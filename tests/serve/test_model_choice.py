"""What the service chooses to serve from a shop's data, and the parameters it trains it with."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Interactions
from shoprec.models.registry import make_model
from shoprec.serve import training
from shoprec.serve.training import choose_model


def _shop(n_users: int, events_each: int, n_items: int) -> Dataset:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "user": np.repeat([f"u{u}" for u in range(n_users)], events_each),
        "item": [f"i{i}" for i in rng.integers(0, n_items, n_users * events_each)],
        "event": "view",
        "timestamp": np.tile(np.arange(events_each), n_users),
    })
    return Dataset.from_interactions(Interactions.from_frame(frame))


def test_a_small_shop_gets_item_knn_and_is_told_why():
    choice = choose_model(_shop(20, 10, 50))
    assert choice.name == "item-knn" and "too little data" in choice.reason


def test_a_shop_with_enough_sequences_gets_the_transformer_with_the_full_softmax():
    choice = choose_model(_shop(400, 15, 500), budget_s=30)
    assert choice.name == "transformer" and choice.params["max_seconds"] == 30
    assert "loss" not in choice.params  # the default: softmax over the whole catalogue


def test_a_large_catalogue_trains_with_a_sampled_softmax_and_sparse_item_updates(monkeypatch):
    data = _shop(400, 15, 3000)
    monkeypatch.setattr(training, "SAMPLED_SOFTMAX_ITEMS", data.n_items - 1)
    choice = choose_model(data)
    assert choice.name == "transformer"
    assert choice.params["loss"] == "sampled" and choice.params["sparse_item_grads"] is True
    assert "sampled softmax" in choice.reason
    make_model(choice.name, **{**choice.params, "epochs": 1, "max_seconds": 5.0, "d": 8}).fit(data)  # trainable
