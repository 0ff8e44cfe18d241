"""Off-policy estimators on logs written by the learned exploration policy, against the truth.

    python benchmarks/ope_learned.py [--logger fitted] [--seeds 5] [--rounds 40] [--workers 2] [--uniform-mix 0.1]

For each calibrated store (benchmarks/stores/*.json) and report seed, a logging policy logs
`--rounds` rounds from its prior, with the exact propensities it logs, learning online as it
goes. `--logger learned`: the level bandit (`PolicyConfig(kind="learned")`) with uniformly drawn
exploration slots (explore_order "uniform"), which give its log support outside the exploit top-k
whenever its level is above 0; LinUCB-ordered slots would leave most alternatives unsupported.
`--logger fitted`: the rule the service serves, epsilon-greedy slots at the per-request weight of
the fitted coefficients, the store's own fit read from benchmarks/results/simulate-calibrated.json
(fitted on the tuning seeds by benchmarks/simulate.py). `--uniform-mix m` replaces a share m of its slates by uniformly random
ones (a randomised variant of the rule, for support). Targets: greedy, egreedy:0.1 and
egreedy:0.2, each frozen at its prior while the logger learns (the first protocol); with the
fitted logger also weight:0, weight:0.1 and weight:0.2, the logger's own policy in its state at
each request with its exploration weight fixed (only the exploration differs; see
`shoprec.simulation.validation`).
IPS, SNIPS, DM and DR estimate each target's expected clicks per slate on the logged requests;
the simulator's truth is sum_j sum_a target(a | j) e_j P(click on a). Reported per estimator and
target: bias (mean of estimate - truth, relative to the truth), 95% interval coverage over
store-seeds and mean relative error. `--bootstrap shoppers` resamples each shopper's slates
together (a cluster bootstrap) instead of each slate on its own. Targets of issue 14: DR relative error <= 0.15, coverage
>= 90%. Writes benchmarks/results/ope-learned.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_json

TARGETS = ("greedy", "egreedy:0.1", "egreedy:0.2")
SHADOW_WEIGHTS = (0.0, 0.1, 0.2)
FITS = RESULTS / "simulate-calibrated.json"


def fitted_weights(store: str):
    """The store's fitted coefficients, as benchmarks/simulate.py fitted them on its tuning seeds."""
    from shoprec.explore.weighting import WeightConfig

    if not FITS.exists():
        raise SystemExit(f"{FITS} is missing: run benchmarks/simulate.py first (it fits the rule).")
    return WeightConfig(**json.loads(FITS.read_text())["stores"][store]["fitted_rule"]["best"])


def cell(task: tuple[str, int, int, float]) -> dict:
    from simulate import fitted_config, load_store, store_data

    from shoprec.explore import PolicyConfig
    from shoprec.simulation import SimulatedStore, off_policy_validation

    name, seed, rounds, mix, kind, bootstrap = task
    config, _ = load_store(name)
    store = SimulatedStore.build(store_data(name), config, seed)
    if kind == "fitted":
        logger = dataclasses.replace(fitted_config(fitted_weights(name)), uniform_mix=mix)
    else:
        logger = PolicyConfig.parse("learned", explore_order="uniform", uniform_mix=mix, label="learned-uniform")
    t0 = time.perf_counter()
    shadow = SHADOW_WEIGHTS if kind == "fitted" else ()
    out = off_policy_validation(store, logger, [PolicyConfig.parse(t) for t in TARGETS], rounds, seed,
                                n_bootstrap=300, shadow_weights=shadow, bootstrap=bootstrap)
    return {"store": name, "seed": seed, "seconds": time.perf_counter() - t0, "estimates": out}


def summarise(cells: list[dict]) -> dict:
    """Per target and estimator over the cells: mean relative bias, interval coverage and mean
    relative error."""
    rows = {}
    for target in cells[0]["estimates"]:
        for est in ("ips", "snips", "dm", "dr"):
            vals = [c["estimates"][target][est] for c in cells]
            truth = np.array([v["truth"] for v in vals])
            value = np.array([v["estimate"] for v in vals])
            rows[f"{target} {est}"] = {
                "bias": float(np.mean((value - truth) / truth)), "coverage": float(np.mean([v["covered"] for v in vals])),
                "relative_error": float(np.mean([v["relative_error"] for v in vals])), "n": len(vals)}
    return rows


def print_table(rows: dict) -> None:
    print("| target | estimator | relative bias | 95% coverage | relative error |\n|---|---|---|---|---|")
    for key, r in rows.items():
        target, est = key.split(" ")
        print(f"| {target} | {est} | {r['bias']:+.3f} | {r['coverage']:.0%} | {r['relative_error']:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stores", default="online-retail,taobao,ml-1m")
    parser.add_argument("--logger", choices=("learned", "fitted"), default="learned",
                        help="the logging policy: the level bandit or the served fitted rule")
    parser.add_argument("--uniform-mix", type=float, default=0.0,
                        help="share of the logger's slates drawn uniformly from the candidates (0: the rule as it is)")
    parser.add_argument("--bootstrap", choices=("requests", "shoppers"), default="requests",
                        help="what the intervals resample: each slate, or each shopper's slates together")
    parser.add_argument("--out", default=None,
                        help="default benchmarks/results/ope-{learned,fitted}[-mixM][-shoppers].json")
    args = parser.parse_args()
    from multiprocessing import get_context

    tasks = [(s, seed, args.rounds, args.uniform_mix, args.logger, args.bootstrap) for s in args.stores.split(",") for seed in range(args.seeds)]
    stem = "ope-learned" if args.logger == "learned" else "ope-fitted"
    stem += "" if args.uniform_mix == 0 else f"-mix{args.uniform_mix:g}"
    stem += "" if args.bootstrap == "requests" else "-shoppers"
    out = args.out or str(RESULTS / f"{stem}.json")
    t0 = time.perf_counter()
    with get_context("spawn").Pool(args.workers) as pool:
        cells = list(pool.imap(cell, tasks))
    rows = summarise(cells)
    by_store = {name: summarise([c for c in cells if c["store"] == name]) for name in args.stores.split(",")}
    print_table(rows)
    print("\nDR per store:\n| store | target | relative bias | 95% coverage | relative error |\n|---|---|---|---|---|")
    for name, store_rows in by_store.items():
        for key, r in store_rows.items():
            if key.endswith(" dr"):
                print(f"| {name} | {key[:-3]} | {r['bias']:+.3f} | {r['coverage']:.0%} | {r['relative_error']:.3f} |")
    total = time.perf_counter() - t0
    write_json(out, {"settings": vars(args), "summary": rows, "by_store": by_store, "cells": cells, "seconds": total})
    print(f"\n{len(cells)} store-seeds, {total:.0f}s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
