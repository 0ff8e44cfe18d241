"""Do Gaussian-mixture interests make better candidate pools than k-means? Paired, on the report seeds.

    python benchmarks/interests.py [--workers 2] [--stores online-retail,taobao,ml-1m] [--seeds 10]

Issue 14 asks to use the Gaussian-mixture interests (`shoprec.text.interests.user_interests`,
which choose each shopper's number of interests by BIC) where they help, or to show they don't.
The shopper's interests only build candidate pools: the long-tail items near each interest
(`shoprec.explore.pools.interest_pool`); the store's truth, arrivals and clicks do not depend on
them (they are computed last, from their own seed), so a store built with `interests="mixture"`
is the same store as the committed one with other pools.

Protocol, fixed before the first run: each calibrated store (benchmarks/stores/*.json, unchanged
but for `interests`), the report seeds 0-9 of benchmarks/simulate.py, 200 rounds; greedy and the
fitted rule (each store's own coefficients from benchmarks/results/simulate-calibrated.json,
which were fitted with k-means pools) with k-means pools and with mixture pools. Reported: clicks
per shopper, clicks in the last 20% of rounds and the discovered corpus, and the paired
difference mixture - k-means with its 95% t-interval over seeds, per store and policy. Writes
benchmarks/results/interests.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_json

METHODS = ("kmeans", "mixture")
POLICIES = ("greedy", "fitted")
METRICS = ("reward", "late_reward", "discovered")


def cell(task: tuple[str, int, str]) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ope_learned import fitted_weights
    from simulate import ROUNDS, fitted_config, load_store, store_data

    from shoprec.explore import PolicyConfig
    from shoprec.simulation import SimulatedStore, simulate

    name, seed, method = task
    config, _ = load_store(name)
    t0 = time.perf_counter()
    store = SimulatedStore.build(store_data(name), dataclasses.replace(config, interests=method), seed)
    build = time.perf_counter() - t0
    runs = {}
    for label, policy in (("greedy", PolicyConfig.parse("greedy")), ("fitted", fitted_config(fitted_weights(name)))):
        res = simulate(store, policy, ROUNDS, seed)
        runs[label] = {**res.summary(), "seconds": res.seconds}
    n_interests = store.interest_valid.sum(axis=1)
    return {"store": name, "seed": seed, "method": method, "build_seconds": build, "runs": runs,
            "interests_per_shopper": float(n_interests.mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stores", default="online-retail,taobao,ml-1m")
    parser.add_argument("--seeds", type=int, default=10, help="report seeds 0..N-1")
    parser.add_argument("--out", default=str(RESULTS / "interests.json"))
    args = parser.parse_args()
    from multiprocessing import get_context

    from simulate import paired

    stores = args.stores.split(",")
    tasks = [(s, seed, m) for s in stores for seed in range(args.seeds) for m in METHODS]
    t0 = time.perf_counter()
    with get_context("spawn").Pool(args.workers) as pool:
        cells = list(pool.imap(cell, tasks))
    by = {(c["store"], c["seed"], c["method"]): c for c in cells}
    summary: dict = {}
    print("| store | policy | metric | k-means | mixture | mixture - k-means [95% CI] | wins |\n|---|---|---|---|---|---|---|")
    for s in stores:
        summary[s] = {"interests_per_shopper": {m: float(sum(by[(s, seed, m)]["interests_per_shopper"]
                                                               for seed in range(args.seeds)) / args.seeds)
                                                for m in METHODS}}
        for p in POLICIES:
            for metric in METRICS:
                km = [by[(s, seed, "kmeans")]["runs"][p][metric] for seed in range(args.seeds)]
                mx = [by[(s, seed, "mixture")]["runs"][p][metric] for seed in range(args.seeds)]
                d = paired(mx, km)
                summary[s][f"{p} {metric}"] = {"kmeans": sum(km) / len(km), "mixture": sum(mx) / len(mx), **d}
                lo, hi = d["relative_ci95"]
                print(f"| {s} | {p} | {metric} | {sum(km) / len(km):.3f} | {sum(mx) / len(mx):.3f} | "
                      f"{d['relative']:+.1%} [{lo:+.1%}, {hi:+.1%}] | {d['wins']}/{d['seeds']} |")
    for s in stores:
        ipm = summary[s]["interests_per_shopper"]
        print(f"{s}: interests per shopper, k-means {ipm['kmeans']:.2f}, mixture {ipm['mixture']:.2f}")
    total = time.perf_counter() - t0
    write_json(args.out, {"settings": vars(args), "summary": summary, "cells": cells, "seconds": total})
    print(f"\n{len(cells)} store-seed-methods, {total:.0f}s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
