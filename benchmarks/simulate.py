"""Exploration policies in three stores calibrated on real logs: the protocol of issue 14.

    python benchmarks/simulate.py [--workers 2] [--out benchmarks/results/simulate-calibrated.json]

Fixed before any policy was run (the stores by benchmarks/calibrate_stores.py, written to
benchmarks/stores/*.json before this script existed in its present form):

- stores: online-retail, taobao, ml-1m, each from its JSON file (knobs fitted to its log);
  `ROUNDS` rounds (new items arrive in batches through the run where the log shows arrivals),
  `StoreConfig.n_shoppers` shoppers, one 10-slot slate per shopper per round;
- policies: greedy, every fixed epsilon (`FIXED`: epsilon-greedy at 0.05, 0.1, 0.2 and 0.4, with
  exploration slots drawn uniformly or in LinUCB order), the hand-set dynamic rule ("dynamic",
  Thompson explorer) and the learned rule ("learned": epsilon-greedy in LinUCB order whose
  epsilon, per request, is the level a LinUCB bandit over (0, 0.05, 0.1, 0.2, 0.4) picks from
  the shopper's signals), and the fitted rule ("fitted": epsilon-greedy with uniformly drawn
  slots at the per-request weight of the hand-set rule's formula, whose five coefficients are
  fitted per store by CMA-ES on the tuning seeds, `FIT`, starting from the hand-set ones;
  `shoprec.simulation.fit`; added to the protocol before its first report-seed run). All share
  the exploitation model, the online learner and the candidate pools of
  `shoprec.simulation.simulate`; only the exploration differs;
- seeds: `TUNING_SEEDS` choose the best fixed epsilon per store (highest mean clicks) and fit
  the fitted rule's coefficients; the `REPORT_SEEDS` (disjoint) report greedy, that epsilon,
  dynamic, learned and fitted;
- statistics: per report seed, paired differences (same store, same random numbers) with 95%
  t-intervals over seeds, and relative differences against the baseline's mean;
- metrics: clicks per shopper (cumulative reward), clicks in the last 20% of rounds, the
  discoverable corpus (share of items with at least one click), rounds to the first click of an
  arriving item (censored at the end), regret in the first 10% of rounds;
- targets (issue 14), for each of learned and fitted: >= +10% over greedy and >= +5% over the
  best fixed epsilon, both intervals above zero, in >= 2 of 3 stores; first-10% regret within 3%
  of greedy's.

`--scenario default|shifting` runs the earlier uncalibrated benchmark (benchmarks/simulate_legacy.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT, write_json

STORES = ("online-retail", "taobao", "ml-1m")
ROUNDS = 200
TUNING_SEEDS = (100, 101)
REPORT_SEEDS = tuple(range(10))
EPSILONS = (0.05, 0.1, 0.2, 0.4)
FIT = {"generations": 3, "population": 8, "sigma": 1.5, "bound": 8.0, "seed": 0}
"""CMA-ES settings of the fitted rule (`shoprec.simulation.fit.FitConfig`): 25 candidates per store,
each scored by its mean clicks per shopper over the tuning seeds."""
LEARNERS = ("learned", "fitted")
METRICS = ("reward", "late_reward", "expected_reward", "discovered", "new_first_click", "early_regret", "regret",
           "explore_share", "new_item_exposure", "purchases")


def policies() -> dict:
    """Every policy of the protocol, by name."""
    from shoprec.explore import PolicyConfig

    out = {"greedy": PolicyConfig.parse("greedy")}
    for order in ("uniform", "ucb"):
        for eps in EPSILONS:
            name = f"egreedy:{eps:g}" if order == "uniform" else f"egreedy-ucb:{eps:g}"
            out[name] = PolicyConfig.parse(f"egreedy:{eps:g}", explore_order=order, label=name)
    out["dynamic"] = PolicyConfig.parse("dynamic")
    out["learned"] = PolicyConfig.parse("learned", explore_order="ucb")
    out["fitted"] = fitted_config(None)
    # Not in the protocol: added afterwards (--add-policy), reported apart as a secondary result.
    out["learned-uniform"] = PolicyConfig.parse("learned", explore_order="uniform", label="learned-uniform")
    return out


def fitted_config(weighting):
    """The fitted rule with the given coefficients (`WeightConfig`; None: the hand-set ones)."""
    from shoprec.explore import PolicyConfig
    from shoprec.explore.weighting import WeightConfig

    return PolicyConfig.parse("dynamic", explorer="egreedy", explore_order="uniform",
                              weighting=weighting or WeightConfig(), label="fitted")


FIXED = tuple(name for name in policies() if name.startswith("egreedy"))


def load_store(name: str):
    from shoprec.simulation.calibrate import load_store_config

    config, raw = load_store_config(ROOT / "benchmarks" / "stores" / f"{name}.json")
    return config, raw


def store_data(name: str):
    """The log a store is built on (benchmarks/calibrate_stores.py reads them)."""
    from calibrate_stores import logs

    for store, data, *_ in logs():
        if store == name:
            return data
    raise KeyError(name)


_STORES: dict = {}  # per worker process: the stores it built, by (name, seed); the newest few


def cached_store(name: str, seed: int):
    """(store, build seconds), built once per worker: the fit scores many candidates in the same
    tuning-seed stores."""
    from shoprec.simulation import SimulatedStore

    key = (name, seed)
    if key not in _STORES:
        if len(_STORES) >= 2 * len(STORES):
            _STORES.pop(next(iter(_STORES)))
        config, _ = load_store(name)
        t0 = time.perf_counter()
        _STORES[key] = (SimulatedStore.build(store_data(name), config, seed), time.perf_counter() - t0)
    return _STORES[key]


def run_cell(task: tuple) -> dict:
    """Run policies in one store for one seed: task = (store name, seed, policies), each policy
    a name of `policies()` or a (label, PolicyConfig) pair."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from shoprec.simulation import simulate

    name, seed, names = task
    store, build = cached_store(name, seed)
    table = policies()
    out = {"store": name, "seed": seed, "build_seconds": build, "n_shoppers": store.n_shoppers,
           "n_items": store.n_items, "n_new_items": len(store.new_items), "content": store.content_source,
           "runs": {}}
    for pol in names:
        label, config = (pol, table[pol]) if isinstance(pol, str) else pol
        res = simulate(store, config, ROUNDS, seed)
        out["runs"][label] = {**res.summary(), "seconds": res.seconds}
    return out


def fit_store(name: str, mapper, fit_settings: dict):
    """The fitted rule's coefficients for one store: CMA-ES (`FIT`) on the tuning seeds, each
    candidate scored by its mean clicks per shopper over them (common random numbers)."""
    from shoprec.simulation.fit import FitConfig, fit_weight_rule

    def objective(configs) -> list[float]:
        tasks = [(name, seed, (("fitted", fitted_config(c)),)) for c in configs for seed in TUNING_SEEDS]
        cells = list(mapper(run_cell, tasks))
        rewards = np.array([c["runs"]["fitted"]["reward"] for c in cells]).reshape(len(configs), len(TUNING_SEEDS))
        return list(rewards.mean(axis=1))

    fit = fit_weight_rule(objective, config=FitConfig(**fit_settings))
    print(f"{name}: fitted rule {fit.to_dict()['best']} -> {fit.best_value:.3f} on tuning seeds "
          f"(hand-set coefficients {fit.start_value:.3f})", flush=True)
    return fit


def paired(a: list[float], b: list[float]) -> dict:
    """Mean of a - b with a 95% t-interval over seeds, and relative to b's mean."""
    from shoprec.simulation.experiment import mean_ci

    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    mean, ci = mean_ci(list(d))
    base = float(np.mean(b))
    rel = mean / base if base else float("nan")
    return {"mean": mean, "ci95": ci, "relative": rel,
            "relative_ci95": [ci[0] / base, ci[1] / base] if base else [float("nan")] * 2,
            "wins": int((d > 0).sum()), "seeds": len(d)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "simulate-calibrated.json"))
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--report-seeds", type=int, default=len(REPORT_SEEDS), help="for a quick check only")
    parser.add_argument("--fit-generations", type=int, default=FIT["generations"], help="for a quick check only")
    parser.add_argument("--scenario", default="calibrated", choices=("calibrated", "default", "shifting"))
    parser.add_argument("--add-policy", default=None,
                        help="run one more policy on the report seeds of an existing --out file and add its paired "
                             "comparisons under 'secondary' (a result outside the protocol)")
    args, rest = parser.parse_known_args()
    if args.add_policy:
        return add_policy(args.add_policy, args.out, args.workers)
    if args.scenario != "calibrated":
        import subprocess

        return subprocess.call([sys.executable, str(ROOT / "benchmarks" / "simulate_legacy.py"),
                                "--scenario", args.scenario, *rest])
    from multiprocessing import get_context

    stores = args.stores.split(",")
    fit_settings = {**FIT, "generations": args.fit_generations}
    report_seeds = REPORT_SEEDS[: args.report_seeds]
    t0 = time.perf_counter()
    pool = get_context("spawn").Pool(args.workers) if args.workers > 1 else None
    mapper = pool.imap if pool else map
    tuning = {s: {} for s in stores}
    for cell in mapper(run_cell, [(s, seed, FIXED) for s in stores for seed in TUNING_SEEDS]):
        tuning[cell["store"]][cell["seed"]] = cell
        print(f"tuning {cell['store']} seed {cell['seed']}: " + ", ".join(
            f"{p} {r['reward']:.3f}" for p, r in cell["runs"].items()), flush=True)
    best = {}
    for s in stores:
        means = {p: float(np.mean([tuning[s][seed]["runs"][p]["reward"] for seed in TUNING_SEEDS])) for p in FIXED}
        best[s] = max(means, key=means.get)
        print(f"{s}: best fixed epsilon on tuning seeds {list(TUNING_SEEDS)}: {best[s]} ({means[best[s]]:.3f})")
    from concurrent.futures import ThreadPoolExecutor

    # The three stores' searches run side by side, each handing its generations to the pool.
    with ThreadPoolExecutor(len(stores)) as threads:
        fits = dict(zip(stores, threads.map(lambda s: fit_store(s, mapper, fit_settings), stores), strict=True))
    fit_seconds = time.perf_counter() - t0
    report = {s: {} for s in stores}
    tasks = [(s, seed, ("greedy", best[s], "dynamic", "learned", ("fitted", fitted_config(fits[s].best))))
             for s in stores for seed in report_seeds]
    for cell in mapper(run_cell, tasks):
        report[cell["store"]][cell["seed"]] = cell
        print(f"report {cell['store']} seed {cell['seed']} ({cell['build_seconds']:.0f}s build): " + ", ".join(
            f"{p} {r['reward']:.3f} ({r['seconds']:.0f}s)" for p, r in cell["runs"].items()), flush=True)
    if pool:
        pool.close()
    total = time.perf_counter() - t0

    results: dict = {"protocol": {"rounds": ROUNDS, "tuning_seeds": list(TUNING_SEEDS),
                                  "report_seeds": list(report_seeds), "fixed": list(FIXED), "metrics": list(METRICS),
                                  "workers": args.workers, "fit": fit_settings}, "stores": {}}
    run_seconds = shopper_rounds = 0.0
    for s in stores:
        _, raw = load_store(s)
        cells = [report[s][seed] for seed in report_seeds]
        names = ["greedy", best[s], "dynamic", *LEARNERS]
        per = {p: {m: [c["runs"][p][m] for c in cells] for m in METRICS} for p in names}
        summary = {p: {m: float(np.nanmean(v)) for m, v in per[p].items()} for p in names}
        comparisons = {}
        pairs = [(a, b) for a in LEARNERS for b in ("greedy", best[s], "dynamic")]
        pairs += [("fitted", "learned"), ("dynamic", "greedy"), ("dynamic", best[s]), (best[s], "greedy")]
        for a, b in pairs:
            comparisons[f"{a} - {b}"] = {m: paired(per[a][m], per[b][m]) for m in ("reward", "late_reward",
                                                                                   "expected_reward", "discovered",
                                                                                   "early_regret")}
        targets = {}
        for rule in LEARNERS:
            lg, lb = comparisons[f"{rule} - greedy"]["reward"], comparisons[f"{rule} - {best[s]}"]["reward"]
            early = summary[rule]["early_regret"] / summary["greedy"]["early_regret"] - 1
            targets[rule] = {"over_greedy": lg["relative"] >= 0.10 and lg["ci95"][0] > 0,
                             "over_best_fixed": lb["relative"] >= 0.05 and lb["ci95"][0] > 0,
                             "early_regret_vs_greedy": early, "early_regret_within_3pct": early <= 0.03}
        for c in cells + [tuning[s][seed] for seed in TUNING_SEEDS]:
            for r in c["runs"].values():
                run_seconds += r["seconds"]
                shopper_rounds += c["n_shoppers"] * ROUNDS
        results["stores"][s] = {
            "config": raw["config"], "fit": raw["fit"], "best_fixed": best[s],
            "tuning": {p: [tuning[s][seed]["runs"][p]["reward"] for seed in TUNING_SEEDS] for p in FIXED},
            "fitted_rule": fits[s].to_dict(),
            "summary": summary, "comparisons": comparisons, "targets": targets, "per_seed": per,
            "n_items": cells[0]["n_items"], "n_new_items": cells[0]["n_new_items"], "content": cells[0]["content"],
            "n_shoppers": cells[0]["n_shoppers"]}
    results["targets_reached_in_stores"] = {
        rule: int(sum(results["stores"][s]["targets"][rule]["over_greedy"]
                      and results["stores"][s]["targets"][rule]["over_best_fixed"] for s in stores))
        for rule in LEARNERS}
    results["timing"] = {"total_seconds": total, "tuning_and_fit_seconds": fit_seconds, "policy_run_seconds": run_seconds,
                         "ms_per_shopper_round": 1000 * run_seconds / max(shopper_rounds, 1)}
    write_json(args.out, results)
    print(markdown(results))
    print(f"\ntotal {total:.0f}s with {args.workers} workers; {results['timing']['ms_per_shopper_round']:.3f} ms "
          f"per shopper-round of policy simulation; written to {args.out}")
    return 0


def tuning_bandit(name: str, seed: int) -> dict:
    """The learned policy's level bandit at the end of its run in one tuning-seed store."""
    from shoprec.simulation import SimulatedStore, simulate

    config, _ = load_store(name)
    store = SimulatedStore.build(store_data(name), config, seed)
    res = simulate(store, policies()["learned"], ROUNDS, seed)
    return {"store": name, "seed": seed, "levels": res.learned.levels.to_arrays()}


def tuning_bandit_task(task: tuple[str, int]) -> dict:
    return tuning_bandit(*task)


def run_warm(task: tuple[str, int, dict]) -> dict:
    """One report-seed run of the learned policy whose bandit starts from `task[2]`'s arrays."""
    from shoprec.explore.learned import LevelBandit
    from shoprec.simulation import SimulatedStore, fresh_policy, simulate

    name, seed, arrays = task
    config, _ = load_store(name)
    store = SimulatedStore.build(store_data(name), config, seed)
    cfg = policies()["learned"]
    pol = fresh_policy(store, cfg)
    pol.levels = LevelBandit.from_arrays(arrays, cfg.levels)
    res = simulate(store, pol, ROUNDS, seed)
    return {"store": name, "seed": seed, "runs": {"learned-warm": {**res.summary(), "seconds": res.seconds}}}


def add_policy(name: str, path: str, workers: int) -> int:
    """Run `name` on the report seeds of the results in `path` and add, per store, its summary and
    paired differences against greedy, the best fixed epsilon and learned (same seeds, stores and
    random numbers as the protocol's runs)."""
    import json
    from multiprocessing import get_context

    results = json.loads(Path(path).read_text())
    seeds = results["protocol"]["report_seeds"]
    stores = list(results["stores"])
    with get_context("spawn").Pool(workers) as pool:
        if name == "learned-warm":
            # The learned rule with its bandit warm-started from its own runs on the tuning seeds
            # (their pooled statistics), then updated online as usual.
            warm = {}
            for b in pool.imap(tuning_bandit_task, [(s, seed) for s in stores for seed in TUNING_SEEDS]):
                prev = warm.get(b["store"])
                arrays = {k: np.asarray(v, np.float64) for k, v in b["levels"].items()}
                if prev is not None:
                    ridge = results["protocol"].get("ridge", 1.0) * np.eye(arrays["precision"].shape[1])
                    arrays = {"precision": prev["precision"] + arrays["precision"] - ridge,
                              "reward_sum": prev["reward_sum"] + arrays["reward_sum"],
                              "moments": prev["moments"] + arrays["moments"], "levels": arrays["levels"]}
                warm[b["store"]] = arrays
            cells = list(pool.imap(run_warm, [(s, seed, warm[s]) for s in stores for seed in seeds]))
        else:
            cells = list(pool.imap(run_cell, [(s, seed, (name,)) for s in stores for seed in seeds]))
    secondary = results.setdefault("secondary", {})
    for s in stores:
        r = results["stores"][s]
        mine = {m: [c["runs"][name][m] for c in cells if c["store"] == s] for m in METRICS}
        comps = {}
        for other in ("greedy", r["best_fixed"], "learned", "dynamic"):
            comps[f"{name} - {other}"] = {m: paired(mine[m], r["per_seed"][other][m])
                                          for m in ("reward", "late_reward", "expected_reward", "discovered",
                                                    "early_regret")}
        summary = {m: float(np.nanmean(v)) for m, v in mine.items()}
        secondary.setdefault(name, {})[s] = {"summary": summary, "comparisons": comps, "per_seed": mine}
        g, b = comps[f"{name} - greedy"]["reward"], comps[f"{name} - {r['best_fixed']}"]["reward"]
        print(f"{s}: {name} {summary['reward']:.3f}; vs greedy {g['relative']:+.1%} "
              f"[{g['relative_ci95'][0]:+.1%}, {g['relative_ci95'][1]:+.1%}]; vs {r['best_fixed']} "
              f"{b['relative']:+.1%} [{b['relative_ci95'][0]:+.1%}, {b['relative_ci95'][1]:+.1%}]; first-10% regret "
              f"{summary['early_regret'] / r['summary']['greedy']['early_regret'] - 1:+.1%} vs greedy")
    write_json(path, results)
    return 0


def markdown(results: dict) -> str:
    """The README/docs table: per store, each policy's metrics and the paired differences."""
    header = ("| store | policy | clicks/shopper | last 20% | discovered | rounds to 1st click (new) | "
              "first 10% regret | vs greedy (95% CI) | fitted vs it (95% CI) |")
    lines = [header, "|" + "---|" * 9]
    for s, r in results["stores"].items():
        for p, m in r["summary"].items():
            vs_g = r["comparisons"].get(f"{p} - greedy", {}).get("reward") if p != "greedy" else None
            vs_l = r["comparisons"].get(f"fitted - {p}", {}).get("reward") if p != "fitted" else None

            def fmt(d):
                return "" if d is None else f"{d['relative']:+.1%} [{d['relative_ci95'][0]:+.1%}, {d['relative_ci95'][1]:+.1%}]"

            wait = "n/a" if np.isnan(m["new_first_click"]) else f"{m['new_first_click']:.1f}"
            lines.append(f"| {s} | {p} | {m['reward']:.3f} | {m['late_reward']:.3f} | {m['discovered']:.3f} | {wait} | "
                         f"{m['early_regret']:.3f} | {fmt(vs_g)} | {fmt(vs_l)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
