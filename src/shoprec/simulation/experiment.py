"""Experiments: several policies over several seeded stores, summarised with 95% intervals over
seeds, with the off-policy estimators validated against the stores' truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError
from shoprec.explore.config import PolicyConfig
from shoprec.explore.pools import PoolConfig
from shoprec.simulation.run import simulate
from shoprec.simulation.store import SimulatedStore, StoreConfig
from shoprec.simulation.validation import off_policy_validation

__all__ = ["Experiment", "mean_ci", "run_experiment"]


def mean_ci(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95% t-interval over seeds."""
    from scipy.stats import t

    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float(v.mean()), [float(v.mean()), float(v.mean())]
    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return float(v.mean()), [float(v.mean() - half), float(v.mean() + half)]


@dataclass
class Experiment:
    """Several policies over several seeds: summaries with 95% intervals over seeds, per-round
    series (mean over seeds) for plotting, and off-policy validation results."""

    summary: dict[str, dict]
    series: dict[str, dict[str, np.ndarray]]
    ope: dict[str, dict[str, dict]]
    settings: dict

    def to_json(self) -> dict:
        """{policy: {reward_mean, reward_ci95, regret_mean, ...}, "ope": {...}, "settings": {...}}."""
        return {**self.summary, "ope": self.ope, "settings": self.settings}


def run_experiment(
    data: Dataset,
    policies: list[PolicyConfig],
    rounds: int,
    seeds: list[int],
    store_config: StoreConfig | None = None,
    pools: PoolConfig | None = None,
    ope_rounds: int = 0,
    logger: PolicyConfig | None = None,
    n_samples: int = 100,
    n_bootstrap: int = 500,
    progress=None,
) -> Experiment:
    """Build one store per seed, run every policy in it, and (if ope_rounds) validate the
    off-policy estimators: each policy, as it stands at the end of its run, is evaluated from a
    fresh `ope_rounds`-round log of `logger` (default: greedy with 30% of slates uniformly
    random) and compared with its true value on those requests. progress: an optional callable
    taking a message string."""
    store_config = store_config or StoreConfig()
    logger = logger or PolicyConfig(kind="greedy", uniform_mix=0.3, label="greedy+30%uniform")
    names = [p.name for p in policies]
    if len(set(names)) != len(names) or {"ope", "settings"} & set(names):
        raise ConfigError(f"Policy names must be distinct and not 'ope' or 'settings'. Got {names}.")
    runs: dict[str, list[dict]] = {nm: [] for nm in names}
    curves: dict[str, dict[str, list[np.ndarray]]] = {nm: {"reward": [], "explore_share": []} for nm in names}
    ope_runs: dict[str, dict[str, list[dict]]] = {}
    for seed in seeds:
        store = SimulatedStore.build(data, store_config, seed)
        learned = []
        for cfg in policies:
            res = simulate(store, cfg, rounds, seed, pools)
            learned.append(res.learned)
            runs[cfg.name].append(res.summary())
            curves[cfg.name]["reward"].append(np.cumsum(res.clicks) / res.n_shoppers)
            curves[cfg.name]["explore_share"].append(res.explore_share)
            if progress:
                progress(f"seed {seed} {cfg.name}: reward {runs[cfg.name][-1]['reward']:.3f} ({res.seconds:.1f}s)")
        if ope_rounds:
            for target, estimates in off_policy_validation(store, logger, learned, ope_rounds, seed, n_samples,
                                                           n_bootstrap).items():
                for est, value in estimates.items():
                    ope_runs.setdefault(target, {}).setdefault(est, []).append(value)
            if progress:
                progress(f"seed {seed}: off-policy validation done")
    summary = {}
    for nm, rs in runs.items():
        row: dict = {}
        for key in ("reward", "expected_reward", "regret", "purchases"):
            mean, ci = mean_ci([r[key] for r in rs])
            row[f"{key}_mean"], row[f"{key}_ci95"] = mean, ci
        for key in ("new_item_exposure", "new_item_coverage", "coverage", "tail_exposure", "diversity",
                    "explore_share", "early_reward", "early_regret"):
            row[key] = float(np.mean([r[key] for r in rs]))
        row["per_seed"] = rs
        summary[nm] = row
    ope: dict[str, dict[str, dict]] = {}
    for target, by_est in ope_runs.items():
        ope[target] = {}
        for est, all_vals in by_est.items():
            vals = [v for v in all_vals if "estimate" in v]
            if not vals:
                ope[target][est] = {"skipped": all_vals[0].get("skipped", ""), "seeds": 0}
                continue
            ope[target][est] = {
                "estimate": float(np.mean([v["estimate"] for v in vals])),
                "ci95": [float(np.mean([v["ci95"][0] for v in vals])), float(np.mean([v["ci95"][1] for v in vals]))],
                "truth": float(np.mean([v["truth"] for v in vals])),
                "relative_error": float(np.mean([v["relative_error"] for v in vals])),
                "covered": float(np.mean([v["covered"] for v in vals])),
                "seeds": len(vals),
                "per_seed": all_vals,
            }
    series = {nm: {key: np.mean(np.stack(v), axis=0) for key, v in c.items()} for nm, c in curves.items()}
    settings = {"rounds": rounds, "seeds": list(seeds), "store": store_config.__dict__.copy(),
                "content_source": store.content_source, "n_new_items": len(store.new_items),
                "policies": names, "ope_rounds": ope_rounds, "logger": logger.name,
                "n_shoppers": store_config.n_shoppers}
    return Experiment(summary, series, ope, settings)
