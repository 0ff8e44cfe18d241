"""Fit the three simulated stores of the exploration benchmark to their real logs.

    python benchmarks/calibrate_stores.py [--rounds 200] [--shoppers 300]

Writes benchmarks/stores/{online-retail,taobao,ml-1m}.json: each store's `StoreConfig` and what
was measured on its log (`shoprec.simulation.calibrate`): engagement and purchase rates of the
Taobao funnel (the only log with non-engaged views, so the other two stores take them from it),
repeat rate, arrival share of new items, early/late interest drift, and the knobs fitted to them.
The files are written before any policy is compared and are not changed after (benchmarks/
simulate.py only reads them). Fits use calibration seed 10000, apart from tuning and report seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, ROOT

STORES = ROOT / "benchmarks" / "stores"
TAOBAO = "taobao-userbehavior-sample/UserBehavior.flink-course-head110k.csv.gz"
ML1M = "ml-1m/ratings.users-1-2999.dat.gz"


def taobao_log(data):
    """The Taobao slice as a store log: shoppers with >= 5 events, the items with >= 2 of their
    events (a tractable item space where the truth has something to fit), re-indexed to the
    users and items left. No titles: the store's content vectors are synthetic."""
    from shoprec.data.dataset import Dataset
    from shoprec.data.vocab import Vocabulary

    lengths = np.diff(data.indptr)
    sub = data.subset(lengths[data.user_idx] >= 5)
    pop = np.bincount(sub.item_idx, minlength=sub.n_items)
    sub = sub.subset(pop[sub.item_idx] >= 2)
    users, user_idx = np.unique(sub.user_idx, return_inverse=True)
    items, item_idx = np.unique(sub.item_idx, return_inverse=True)
    return Dataset.from_arrays(Vocabulary(data.users.ids[users], "user"), Vocabulary(data.items.ids[items], "item"),
                               user_idx, item_idx, sub.event, sub.timestamp, sub.value, None,
                               "taobao-userbehavior[store]")


def logs():
    """(store name, dataset, base config changes, shortest history for drift, where the log came
    from). Taobao histories cover two hours, so its drift uses histories of >= 6 events."""
    from shoprec.data.readers import load, load_demo

    yield "online-retail", load_demo().dataset(), {}, 10, "bundled Online Retail shop (shoprec.demo)"
    full = load(DATASETS / TAOBAO, "taobao").dataset()
    yield ("taobao", taobao_log(full), {"min_history": 3, "content": "synthetic"}, 6,
           f"../shared/datasets/{TAOBAO} (shoppers with >= 5 events, items with >= 2 of them)")
    yield ("ml-1m", load(DATASETS / ML1M, "movielens").dataset(), {}, 10,
           f"../shared/datasets/{ML1M} (titles: movies.dat)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--shoppers", type=int, default=300)
    parser.add_argument("--only", default=None, help="calibrate one store (online-retail, taobao, ml-1m)")
    args = parser.parse_args()
    from shoprec.data.readers import load
    from shoprec.simulation.calibrate import calibrated_config, funnel_rates, save_store_config
    from shoprec.simulation.store import StoreConfig

    STORES.mkdir(parents=True, exist_ok=True)
    whole = load(DATASETS / TAOBAO, "taobao").dataset()
    engagement, purchase = funnel_rates(whole)
    print(f"Taobao funnel (whole slice, {len(whole):,} events): engagement {engagement:.4f}, "
          f"purchase given engagement {purchase:.4f}")
    for name, data, changes, drift_events, source in logs():
        if args.only and name != args.only:
            continue
        t0 = time.perf_counter()
        base = StoreConfig(n_shoppers=args.shoppers, **changes)
        # The Taobao store's log is a filtered slice; every store takes the whole slice's funnel.
        funnel = (engagement, purchase, "the Taobao UserBehavior slice (110,300 events)")
        config, fit, how = calibrated_config(data, base, args.rounds, funnel=funnel,
                                             min_drift_events=drift_events)
        save_store_config(STORES / f"{name}.json", name, config, fit, how,
                          {"source": source, "rounds": args.rounds, "calibration_seed": 10_000})
        print(f"\n{name}: {len(data):,} events, {data.n_users:,} users, {data.n_items:,} items "
              f"({time.perf_counter() - t0:.0f}s)")
        print(f"  repeat rate {fit.repeat_rate:.4f} -> fatigue {config.fatigue}  ({how['fatigue']})")
        print(f"  arrival share {fit.arrival_share:.4f} (late first events {fit.arrival_late_observed:.3f}, "
              f"expected without arrivals {fit.arrival_late_expected:.3f}) -> new_item_fraction "
              f"{config.new_item_fraction}, {config.new_item_batches} batches every {config.new_item_every} rounds")
        print(f"  drift: cos(early, late) {fit.drift_cosine_time:.3f} / cos(random halves) "
              f"{fit.drift_cosine_random:.3f} = {fit.drift_cosine:.3f} over {fit.drift_users} shoppers "
              f"-> drift_strength {config.drift_strength}")
        print(f"  top_ctr {config.top_ctr}, purchase_rate {config.purchase_rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
