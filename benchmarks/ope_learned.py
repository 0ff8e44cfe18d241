"""Off-policy estimators on logs written by the learned exploration policy, against the truth.

    python benchmarks/ope_learned.py [--seeds 5] [--rounds 40] [--workers 2] [--uniform-mix 0.1]

For each calibrated store (benchmarks/stores/*.json) and report seed, the learned policy (the
served rule, `PolicyConfig(kind="learned")`) logs `--rounds` rounds from its prior, with the
exact propensities it logs, learning online as it goes. Uniformly drawn exploration slots
(explore_order "uniform") give its log support outside the exploit top-k whenever its level is
above 0; LinUCB-ordered slots would leave most alternatives unsupported, so the served order is
not used for this logger. `--uniform-mix m` replaces a share m of its slates by uniformly random
ones (a randomised variant of the rule, for support). Targets (each frozen at its prior): greedy, egreedy:0.1, egreedy:0.2.
IPS, SNIPS, DM and DR estimate each target's expected clicks per slate on the logged requests;
the simulator's truth is sum_j sum_a target(a | j) e_j P(click on a). Reported per estimator and
target: bias (mean of estimate - truth, relative to the truth), 95% interval coverage over
store-seeds and mean relative error. Targets of issue 14: DR relative error <= 0.15, coverage
>= 90%. Writes benchmarks/results/ope-learned.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_json

TARGETS = ("greedy", "egreedy:0.1", "egreedy:0.2")


def cell(task: tuple[str, int, int, float]) -> dict:
    from simulate import load_store, store_data

    from shoprec.explore import PolicyConfig
    from shoprec.simulation import SimulatedStore, off_policy_validation

    name, seed, rounds, mix = task
    config, _ = load_store(name)
    store = SimulatedStore.build(store_data(name), config, seed)
    logger = PolicyConfig.parse("learned", explore_order="uniform", uniform_mix=mix, label="learned-uniform")
    t0 = time.perf_counter()
    out = off_policy_validation(store, logger, [PolicyConfig.parse(t) for t in TARGETS], rounds, seed,
                                n_bootstrap=300)
    return {"store": name, "seed": seed, "seconds": time.perf_counter() - t0, "estimates": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stores", default="online-retail,taobao,ml-1m")
    parser.add_argument("--uniform-mix", type=float, default=0.0,
                        help="share of the logger's slates drawn uniformly from the candidates (0: the rule as it is)")
    parser.add_argument("--out", default=None, help="default benchmarks/results/ope-learned[-mixM].json")
    args = parser.parse_args()
    from multiprocessing import get_context

    tasks = [(s, seed, args.rounds, args.uniform_mix) for s in args.stores.split(",") for seed in range(args.seeds)]
    out = args.out or str(RESULTS / ("ope-learned.json" if args.uniform_mix == 0 else f"ope-learned-mix{args.uniform_mix:g}.json"))
    t0 = time.perf_counter()
    with get_context("spawn").Pool(args.workers) as pool:
        cells = list(pool.imap(cell, tasks))
    rows = {}
    for target in TARGETS:
        for est in ("ips", "snips", "dm", "dr"):
            vals = [c["estimates"][target][est] for c in cells]
            truth = np.array([v["truth"] for v in vals])
            value = np.array([v["estimate"] for v in vals])
            rows[f"{target} {est}"] = {
                "bias": float(np.mean((value - truth) / truth)), "coverage": float(np.mean([v["covered"] for v in vals])),
                "relative_error": float(np.mean([v["relative_error"] for v in vals])), "n": len(vals)}
    print("| target | estimator | relative bias | 95% coverage | relative error |\n|---|---|---|---|---|")
    for key, r in rows.items():
        target, est = key.split(" ")
        print(f"| {target} | {est} | {r['bias']:+.3f} | {r['coverage']:.0%} | {r['relative_error']:.3f} |")
    total = time.perf_counter() - t0
    write_json(out, {"settings": vars(args), "summary": rows, "cells": cells, "seconds": total})
    print(f"\n{len(cells)} store-seeds, {total:.0f}s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
