"""`shoprec simulate`: compare exploration policies in a store simulated from a real log.

    shoprec simulate --policies greedy,egreedy,linucb,thompson,dynamic --rounds 100 --seeds 5 \
        [--data demo | --data PATH --format FORMAT] [--shoppers 300] [--ope-rounds 50] \
        [--json FILE] [--plot FILE.png]

Wired into `shoprec.cli.build_parser` by `add_simulate_parser(sub)`. The work is done by
`shoprec.evaluate.simulator.run_experiment`; this module parses arguments, prints the tables and
writes the JSON and the plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from shoprec.errors import ConfigError, ShoprecError

DEFAULT_POLICIES = "greedy,egreedy,linucb,thompson,dynamic"


def policy_configs(spec: str, explorer: str = "thompson"):
    """PolicyConfigs from 'greedy,egreedy:0.05,linucb:2,...' ('kind[:main parameter]')."""
    from shoprec.explore import PolicyConfig

    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if not specs:
        raise ConfigError("--policies needs at least one policy, e.g. greedy,thompson,dynamic.")
    return [PolicyConfig.parse(s, **({"explorer": explorer} if s.split(":")[0] == "dynamic" else {})) for s in specs]


def policy_table(summary: dict[str, dict]) -> str:
    """A Markdown table of the per-policy results (means over seeds, 95% intervals)."""
    cols = ["policy", "reward (clicks/shopper)", "expected clicks", "regret", "purchases", "first 10% regret",
            "new-item exposure", "coverage", "diversity", "explore share"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, r in summary.items():
        lo, hi = r["reward_ci95"]
        rlo, rhi = r["regret_ci95"]
        elo, ehi = r["expected_reward_ci95"]
        lines.append("| " + " | ".join([
            name, f"{r['reward_mean']:.3f} [{lo:.3f}, {hi:.3f}]", f"{r['expected_reward_mean']:.3f} [{elo:.3f}, {ehi:.3f}]",
            f"{r['regret_mean']:.3f} [{rlo:.3f}, {rhi:.3f}]",
            f"{r['purchases_mean']:.3f}", f"{r['early_regret']:.3f}", f"{r['new_item_exposure']:.4f}",
            f"{r['coverage']:.3f}", f"{r['diversity']:.3f}", f"{r['explore_share']:.3f}",
        ]) + " |")
    return "\n".join(lines)


def ope_table(ope: dict[str, dict[str, dict]]) -> str:
    """A Markdown table of the off-policy validation: estimate, interval, truth, relative error."""
    lines = ["| policy | estimator | estimate | 95% interval | truth | relative error | truth covered |",
             "|---|---|---|---|---|---|---|"]
    for name, by_est in ope.items():
        for est, v in by_est.items():
            if "estimate" not in v:
                lines.append(f"| {name} | {est} | skipped: {v.get('skipped', '')} | | | | |")
                continue
            lines.append(f"| {name} | {est} | {v['estimate']:.4f} | [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}] | "
                         f"{v['truth']:.4f} | {v['relative_error']:.3f} | {v['covered']:.0%} |")
    return "\n".join(lines)


def _moving_average(x: np.ndarray, width: int = 5) -> np.ndarray:
    """Centred moving average that averages fewer points at the ends (no edge dips)."""
    kernel = np.ones(max(1, min(width, len(x))))
    return np.convolve(x, kernel, mode="same") / np.convolve(np.ones_like(x), kernel, mode="same")


def write_plot(series: dict[str, dict[str, np.ndarray]], path: str | Path, title: str = "",
               baseline: str = "greedy") -> Path:
    """Cumulative reward (and its difference from `baseline`, when that policy ran) and the share
    of exploratory slots over rounds, one line per policy (needs matplotlib)."""
    from shoprec.errors import require_extra

    require_extra("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_base = baseline in series
    fig, axes = plt.subplots(1, 3 if has_base else 2, figsize=(15 if has_base else 11, 4))
    for name, s in series.items():
        rounds = np.arange(1, len(s["reward"]) + 1)
        axes[0].plot(rounds, s["reward"], label=name)
        if has_base:
            axes[1].plot(rounds, s["reward"] - series[baseline]["reward"], label=name)
        axes[-1].plot(rounds, _moving_average(s["explore_share"]), label=name)
    axes[0].set(xlabel="round", ylabel="cumulative clicks per shopper", title="Cumulative reward")
    if has_base:
        axes[1].set(xlabel="round", ylabel=f"cumulative clicks per shopper minus {baseline}'s",
                    title=f"Cumulative reward relative to {baseline}")
        axes[1].axhline(0.0, color="grey", lw=0.8)
    axes[-1].set(xlabel="round", ylabel="share of slots exploring (5-round mean)", title="Exploration share")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _load_dataset(args: argparse.Namespace):
    from shoprec.data.readers import load, load_demo

    if args.data == "demo":
        return load_demo().dataset()
    return load(args.data, args.format).dataset()


def cmd_simulate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from shoprec.evaluate.simulator import StoreConfig, run_experiment
    from shoprec.explore import PolicyConfig

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    policies = policy_configs(args.policies, args.dynamic_explorer)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1. Got {args.seeds} instead.")
    data = _load_dataset(args)
    store = replace(StoreConfig(), n_shoppers=args.shoppers, truth_model=args.truth_model, content=args.content,
                    drift_fraction=args.drift_fraction, drift_strength=args.drift_strength,
                    new_item_fraction=args.new_item_fraction, new_item_every=args.new_item_every)
    logger = PolicyConfig(kind="greedy", uniform_mix=args.logger_uniform, label=f"greedy+{args.logger_uniform:.0%} uniform")
    log(f"{args.data}: {data.n_users:,} users, {data.n_items:,} items; {args.shoppers} shoppers x {args.rounds} rounds "
        f"x {args.seeds} seeds")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    exp = run_experiment(data, policies, args.rounds, seeds, store, ope_rounds=args.ope_rounds, logger=logger,
                         n_samples=args.propensity_samples, n_bootstrap=args.bootstrap, progress=log)
    exp.settings.update(data=str(args.data), command=getattr(args, "command_line", " ".join(sys.argv)))
    print(f"Policies: {args.data}, {args.shoppers} shoppers x {args.rounds} rounds, seeds {seeds} "
          "(mean [95% interval over seeds]; reward and regret per shopper over the run)")
    print(policy_table(exp.summary))
    if exp.ope:
        print(f"\nOff-policy estimates from a {args.ope_rounds}-round log of {logger.name} "
              f"(per-seed bootstrap intervals averaged over seeds; 'truth covered' = share of seeds)")
        print(ope_table(exp.ope))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(exp.to_json(), indent=2) + "\n")
        log(f"wrote {args.json}")
    if args.plot:
        write_plot(exp.series, args.plot, f"{args.data}: {args.shoppers} shoppers, mean of {len(seeds)} seeds")
        log(f"wrote {args.plot}")
    return 0


def add_simulate_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `simulate` subcommand to the `shoprec` parser's subparsers."""
    from shoprec.evaluate.simulator import StoreConfig

    p = subparsers.add_parser("simulate", help="compare exploration policies in a simulated store")
    p.add_argument("--policies", default=DEFAULT_POLICIES,
                   help="comma-separated kind[:parameter], e.g. greedy,egreedy:0.05,linucb:2,thompson,dynamic")
    p.add_argument("--rounds", type=int, default=100, help="rounds (every shopper gets one slate per round)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (stores); intervals are over seeds")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--data", default="demo", help="'demo' (bundled Online Retail shop) or a log path")
    p.add_argument("--format", default="shoprec", help="reader format of --data")
    p.add_argument("--shoppers", type=int, default=300, help="simulated shoppers, drawn from the log's users")
    p.add_argument("--truth-model", default="als", choices=("als", "svd"))
    p.add_argument("--content", default="auto", choices=("auto", "text", "synthetic"),
                   help="how new items are seen: MiniLM title embeddings (text) or synthetic vectors")
    p.add_argument("--dynamic-explorer", default="thompson", choices=("linucb", "thompson"))
    defaults = StoreConfig()
    p.add_argument("--drift-fraction", type=float, default=defaults.drift_fraction,
                   help="share of shoppers whose taste drifts")
    p.add_argument("--drift-strength", type=float, default=defaults.drift_strength,
                   help="how far (0-1) a drifting taste turns towards another shopper's")
    p.add_argument("--new-item-fraction", type=float, default=defaults.new_item_fraction,
                   help="share of the items held back to arrive during the run")
    p.add_argument("--new-item-every", type=int, default=defaults.new_item_every, help="rounds between arrivals")
    p.add_argument("--ope-rounds", type=int, default=0, help="rounds of logging for off-policy validation (0: skip)")
    p.add_argument("--logger-uniform", type=float, default=1.0,
                   help="share of uniformly random slates of the logging policy (1: uniform, which replay needs)")
    p.add_argument("--propensity-samples", type=int, default=100, help="Monte-Carlo draws for Thompson/softmax")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples of the OPE intervals")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--plot", help="write cumulative reward and exploration share over rounds (PNG)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run `simulate` on its own (until the subcommand is wired into `shoprec`)."""
    parser = argparse.ArgumentParser(prog="shoprec")
    add_simulate_parser(parser.add_subparsers(dest="command", required=True))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(["simulate", *argv])
    args.command_line = " ".join(["shoprec", "simulate", *argv])
    try:
        return int(args.func(args) or 0)
    except ShoprecError as exc:
        print(f"shoprec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
