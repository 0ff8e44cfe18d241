"""`shoprec simulate`: compare exploration policies in a store simulated from a real log.

    shoprec simulate --policies greedy,egreedy,linucb,thompson,dynamic --rounds 100 --seeds 5 \\
        [--data demo | --data PATH --format FORMAT] [--shoppers 300] [--ope-rounds 50] \\
        [--json FILE] [--plot FILE.png]

The work is done by `shoprec.simulation.run_experiment`; this module parses arguments, prints
the tables and writes the JSON and the plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from shoprec.cli.common import load_data, say
from shoprec.errors import ConfigError

__all__ = ["DEFAULT_POLICIES", "add_parser", "policy_configs"]

DEFAULT_POLICIES = "greedy,egreedy,linucb,thompson,dynamic"


def policy_configs(spec: str, explorer: str = "thompson"):
    """PolicyConfigs from 'greedy,egreedy:0.05,linucb:2,...' ('kind[:main parameter]')."""
    from shoprec.explore import PolicyConfig

    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if not specs:
        raise ConfigError("--policies needs at least one policy, e.g. greedy,thompson,dynamic.")
    return [PolicyConfig.parse(s, **({"explorer": explorer} if s.split(":")[0] == "dynamic" else {})) for s in specs]


def add_parser(subparsers) -> None:
    """Add the `simulate` subcommand to the `shoprec` parser's subparsers."""
    from shoprec.simulation import StoreConfig

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shoprec.explore import PolicyConfig
    from shoprec.simulation import StoreConfig, run_experiment
    from shoprec.simulation.report import ope_table, policy_table, write_plot

    policies = policy_configs(args.policies, args.dynamic_explorer)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1. Got {args.seeds} instead.")
    data = load_data(args).dataset()
    store = replace(StoreConfig(), n_shoppers=args.shoppers, truth_model=args.truth_model, content=args.content,
                    drift_fraction=args.drift_fraction, drift_strength=args.drift_strength,
                    new_item_fraction=args.new_item_fraction, new_item_every=args.new_item_every)
    logger = PolicyConfig(kind="greedy", uniform_mix=args.logger_uniform, label=f"greedy+{args.logger_uniform:.0%} uniform")
    say(args, f"{args.data}: {data.n_users:,} users, {data.n_items:,} items; {args.shoppers} shoppers x "
              f"{args.rounds} rounds x {args.seeds} seeds")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    exp = run_experiment(data, policies, args.rounds, seeds, store, ope_rounds=args.ope_rounds, logger=logger,
                         n_samples=args.propensity_samples, n_bootstrap=args.bootstrap,
                         progress=lambda m: say(args, m))
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
        say(args, f"wrote {args.json}")
    if args.plot:
        write_plot(exp.series, args.plot, f"{args.data}: {args.shoppers} shoppers, mean of {len(seeds)} seeds")
        say(args, f"wrote {args.plot}")
    return 0
