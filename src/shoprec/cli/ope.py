"""`shoprec ope`: off-policy estimates of exploration policies on the service's stored slates.

    shoprec ope --db URL --policy greedy,fixed:0.05,logged [--reward click|purchase] \\
        [--since 2026-11-01] [--until 2026-12-01] [--experiment ID [--variant V]] [--model VERSION] \\
        [--policy-logged LABEL] [--explore-budget 3] [--bootstrap 1000] [--resample shoppers|slates] \\
        [--seed 0] [--json FILE]

Reads the impressions and the events attributed to them (`shoprec.serve.storage.logged`, opened
read-only), computes each target's probability of every logged action
(`shoprec.explore.offpolicy`, whose docstring says what each target means and what the log can
and cannot answer), and prints IPS, SNIPS, DM and DR with 95% bootstrap intervals (resampling
shoppers, each with all their slates, by default: one shopper's slates are not independent; or
slates one by one with `--resample slates`), in reward per slate, with the weights' effective sample size and the share of slots the target
would never show as logged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from shoprec.cli.common import say, table
from shoprec.errors import ConfigError, check_int

__all__ = ["add_parser", "parse_time"]


def add_parser(sub) -> None:
    p = sub.add_parser("ope", help="off-policy estimates of exploration policies on the service's logged slates")
    p.add_argument("--db", required=True, help="the service's database URL (opened read-only)")
    p.add_argument("--policy", required=True,
                   help="comma-separated target policies: logged (the logging policy, a sanity check), greedy "
                        "(no exploration), fixed:EPS (epsilon-greedy at EPS; epsilon-greedy logs only)")
    p.add_argument("--reward", default="click", choices=("click", "purchase"),
                   help="click: a view, cart, favourite or purchase attributed to the slot; purchase: a purchase")
    p.add_argument("--since", default=None, help="slates served at or after this time (ISO date/time, UTC, or Unix s)")
    p.add_argument("--until", default=None, help="slates served before this time (ISO date/time, UTC, or Unix s)")
    p.add_argument("--experiment", default=None, help="only slates served in this A/B experiment")
    p.add_argument("--variant", default=None, help="only this variant of --experiment")
    p.add_argument("--model", default=None, help="only slates of this model version")
    p.add_argument("--policy-logged", default=None,
                   help="only slates of this logging policy label (e.g. egreedy:0.1, dynamic-thompson)")
    p.add_argument("--explore-budget", type=int, default=None,
                   help="the service's explore budget (default: $SHOPREC_EXPLORE_BUDGET, else 3); fixed:EPS needs it")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the intervals")
    p.add_argument("--resample", choices=("shoppers", "slates"), default="shoppers",
                   help="what the bootstrap resamples: shoppers with all their slates (default), or single slates")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--json", default=None, help="write the estimates and diagnostics as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def parse_time(option: str, value: str | None) -> int | None:
    """Unix seconds from an integer, or an ISO 8601 date or date-time (UTC unless it says)."""
    if value is None:
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} must be an ISO date or date-time (2026-11-30, 2026-11-30T12:00) or Unix "
                          f"seconds. Got {value!r} instead.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _budget(args: argparse.Namespace) -> int:
    if args.explore_budget is not None:
        return check_int("explore_budget", args.explore_budget, 0, 100, "shoprec ope")
    raw = os.environ.get("SHOPREC_EXPLORE_BUDGET", "")
    if not raw:
        from shoprec.explore.online import OnlineConfig

        return OnlineConfig().explore_budget
    try:
        return check_int("explore_budget", int(raw), 0, 100, "shoprec ope (SHOPREC_EXPLORE_BUDGET)")
    except ValueError:
        raise ConfigError(f"SHOPREC_EXPLORE_BUDGET must be an int. Got {raw!r} instead.") from None


def run(args: argparse.Namespace) -> int:
    from shoprec.explore.offpolicy import TargetPolicy, evaluate_logged
    from shoprec.serve.storage.logged import LogFilter, read_logged_slates

    # Everything that can be refused is refused before the database is read.
    specs = [s.strip() for s in args.policy.split(",") if s.strip()]
    if not specs:
        raise ConfigError("--policy needs at least one target policy, e.g. greedy or fixed:0.05.")
    targets = [TargetPolicy.parse(s) for s in specs]
    check_int("bootstrap", args.bootstrap, 10, 1_000_000, "shoprec ope")
    budget = _budget(args)
    where = LogFilter(since=parse_time("--since", args.since), until=parse_time("--until", args.until),
                      experiment=args.experiment, variant=args.variant, model=args.model,
                      policy=args.policy_logged, reward=args.reward)
    log = read_logged_slates(args.db, where)
    labels = sorted({str(p) for p in log.policy})
    say(args, f"read {len(log):,} slates ({log.n_slots:,} slots) logged by {', '.join(labels)}; {where.describe()}")
    reports = [evaluate_logged(log, t, budget, n_bootstrap=args.bootstrap, seed=args.seed, resample=args.resample)
               for t in targets]

    print(f"Off-policy estimates of the {args.reward}s per slate ({where.describe()}): {len(log):,} slates, "
          f"{log.n_slots:,} slots, logged by {', '.join(labels)}; observed {reports[0].observed:.4f} per slate")
    rows = []
    for report in reports:
        for name, est in report.estimates.items():
            rows.append({"policy": report.target, "estimator": name,
                         "value": est.value if est else "n/a",
                         "ci95": f"[{est.ci[0]:.4f}, {est.ci[1]:.4f}]" if est else "n/a"})
    print(table(rows))
    print()
    print(table([{"policy": r.target, "slates": r.n_slates, "slots": r.n_slots, "ess": round(r.ess),
                  "zero_target_share": r.zero_share, "max_weight": r.max_weight} for r in reports],
                "Weights (ess: effective sample size of the slot weights; zero_target_share: logged slots the "
                "policy would not show as logged)"))
    for report in reports:
        for warning in report.warnings:
            print(f"warning: {report.target}: {warning}")
    if args.json:
        out = {"command": getattr(args, "command_line", " ".join(sys.argv)), "reward": args.reward,
               "filter": {k: v for k, v in where.__dict__.items() if k != "reward"}, "explore_budget": budget,
               "logged_policies": labels, "n_slates": len(log), "n_slots": log.n_slots,
               "policies": [r.as_dict() for r in reports]}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        say(args, f"wrote {args.json}")
    return 0
