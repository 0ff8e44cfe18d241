"""Calibrating a store on a log: every estimator recovers a known answer from a synthetic log."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.schema import Interactions
from shoprec.errors import ConfigError
from shoprec.simulation import SimulatedStore, StoreConfig
from shoprec.simulation.calibrate import (
    arrival_share,
    fit_drift_strength,
    fit_fatigue,
    funnel_rates,
    interest_drift,
    load_store_config,
    reference_log,
    repeat_rate,
    save_store_config,
)

SMALL = StoreConfig(n_shoppers=60, truth_model="svd", truth_factors=8, model_factors=8, feature_dim=4,
                    content="synthetic", new_item_fraction=0.0, drift_fraction=1.0, drift_rounds=10, top_ctr=0.3)


def _funnel_log(n_pairs: int, engaged: int, bought: int) -> Dataset:
    rows = [(f"u{p}", f"i{p % 50}", "view", p) for p in range(n_pairs)]
    rows += [(f"u{p}", f"i{p % 50}", "cart", n_pairs + p) for p in range(engaged)]
    rows += [(f"u{p}", f"i{p % 50}", "purchase", 2 * n_pairs + p) for p in range(bought)]
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    return Dataset.from_interactions(Interactions.from_frame(frame, "funnel"))


def test_funnel_rates_are_engaged_and_bought_shares_of_viewed_pairs():
    engagement, purchase = funnel_rates(_funnel_log(1000, 110, 22))
    assert engagement == pytest.approx(0.11)
    assert purchase == pytest.approx(0.2)


def test_a_log_without_views_has_no_funnel(synthetic_shop):
    purchases_only = synthetic_shop.subset(synthetic_shop.event == 3)
    assert funnel_rates(purchases_only) is None


def test_repeat_rate_counts_events_on_items_the_shopper_had_before():
    # shopper 0: a, b, a, a -> 2 repeats of 3 later events; shopper 1: c, d -> 0 of 1.
    user = np.array([0, 1, 0, 0, 1, 0])
    item = np.array([0, 2, 1, 0, 3, 0])
    time = np.array([0, 0, 1, 2, 1, 3])
    assert repeat_rate(user, item, time) == pytest.approx(2 / 4)


def test_arrival_share_recovers_the_share_of_items_arriving_during_the_log():
    rng = np.random.default_rng(0)
    n_items, share = 2000, 0.3
    # Arrivals after the warm-up on the event clock (events are denser once items arrive).
    arrives = np.where(rng.random(n_items) < share, rng.uniform(0.25, 0.9, n_items), 0.0)
    n_events = rng.integers(5, 40, n_items)
    item = np.repeat(np.arange(n_items), n_events)
    time = arrives[item] + (1 - arrives[item]) * rng.random(len(item))
    estimate, late, expected = arrival_share(item, time, warmup=0.1, min_events=5)
    assert late > expected
    assert estimate == pytest.approx((arrives > 0).mean(), abs=0.04)


def test_arrival_share_is_near_zero_when_every_item_is_there_from_the_start():
    rng = np.random.default_rng(1)
    item = np.repeat(np.arange(1000), rng.integers(5, 30, 1000))
    estimate, _, _ = arrival_share(item, rng.random(len(item)))
    assert estimate < 0.02


def _drifting_log(cosine: float, seed: int = 0):
    """Shoppers whose first 20 events are near taste a and last 20 near taste b, cos(a, b) = cosine."""
    rng = np.random.default_rng(seed)
    d, n_users, n_items = 16, 300, 3000
    items = rng.standard_normal((n_items, d))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    a = rng.standard_normal((n_users, d))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    ortho = rng.standard_normal((n_users, d))
    ortho -= np.einsum("nd,nd->n", ortho, a)[:, None] * a
    ortho /= np.linalg.norm(ortho, axis=1, keepdims=True)
    b = cosine * a + np.sqrt(1 - cosine**2) * ortho
    users, chosen = [], []
    for u in range(n_users):
        for taste in (a[u], b[u]):
            p = np.exp(8 * items @ taste)
            chosen.append(rng.choice(n_items, size=20, replace=False, p=p / p.sum()))
            users.append(np.full(20, u))
    user = np.concatenate(users)
    return user, np.concatenate(chosen), np.arange(len(user)), items


@pytest.mark.parametrize("cosine", [1.0, 0.5])
def test_interest_drift_recovers_the_cosine_between_early_and_late_tastes(cosine):
    user, item, time, vectors = _drifting_log(cosine)
    ratio, _, _, n = interest_drift(user, item, time, vectors, min_events=10)
    assert n == 300
    assert ratio == pytest.approx(cosine, abs=0.08)


@pytest.fixture
def store(synthetic_shop) -> SimulatedStore:
    return SimulatedStore.build(synthetic_shop, SMALL, seed=0)


def test_fitted_drift_strength_reproduces_the_target_cosine(store):
    moved = replace(store.config, drift_strength=0.6)
    truth = SimulatedStore(**{**store.__dict__, "config": moved})
    start, end = store.true_users, truth.users_at(moved.drift_rounds)
    target = float(np.mean(np.einsum("nd,nd->n", start, end)
                           / np.linalg.norm(start, axis=1) / np.linalg.norm(end, axis=1)))
    assert fit_drift_strength(store, target) == pytest.approx(0.6, abs=1e-3)
    assert fit_drift_strength(store, 1.0) == 0.0


def test_fitted_fatigue_recovers_the_fatigue_that_wrote_a_synthetic_log(store):
    user, item, time = reference_log(store, 40, seed=5, fatigue=0.4)
    observed = repeat_rate(user, item, time)
    fatigue, reached = fit_fatigue(store, observed, rounds=40, seed=6)
    assert fatigue == pytest.approx(0.4, abs=0.1)
    assert reached == pytest.approx(observed, abs=0.02)


def test_more_fatigue_means_fewer_repeats(store):
    rates = [repeat_rate(*reference_log(store, 30, seed=1, fatigue=f)) for f in (0.05, 0.5, 1.0)]
    assert rates[0] < rates[1] < rates[2]


def test_store_config_round_trips_through_json(tmp_path):
    path = tmp_path / "store.json"
    save_store_config(path, "s", SMALL, extra={"rounds": 10})
    config, raw = load_store_config(path)
    assert config == SMALL and raw["rounds"] == 10
    path.write_text(path.read_text().replace('"n_shoppers"', '"n_shopers"'))
    with pytest.raises(ConfigError, match="unknown StoreConfig fields \\['n_shopers'\\]"):
        load_store_config(path)
