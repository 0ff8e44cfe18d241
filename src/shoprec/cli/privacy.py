"""`shoprec privacy-report`: privacy-utility curves, leakage and federated vs centralised.

    shoprec privacy-report --data PATH --format sequence [--epsilons 0.5,1,2,4,8,inf]
        [--models dp-mf,dp-transformer,dp-ease,dp-item-knn] [--baselines pop] [--epochs N]
        [--json FILE] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import time

from shoprec.cli.common import say
from shoprec.cli.params import parse_scoped_params

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    """Register the `privacy-report` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "privacy-report",
        help="privacy-utility curves, membership-inference AUC, federated vs centralised",
        description="Train the private models at each epsilon on a leave-one-out split, evaluate "
        "them (full ranking), attack them with a loss-threshold membership-inference attack, "
        "compare federated (Flower) with centralised training, print the tables and write plots.",
    )
    p.add_argument("--data", required=True, help="path to the log")
    p.add_argument("--format", default="sequence", help="reader format (see `shoprec data formats`)")
    p.add_argument("--epsilons", default="0.5,1,2,4,8,inf", help="comma-separated; inf = no DP")
    p.add_argument("--models", default="dp-mf,dp-transformer,dp-ease,dp-item-knn",
                   help="comma-separated private models (dp-mf, dp-transformer, dp-ease, dp-item-knn, dp-als)")
    p.add_argument("--baselines", default="pop",
                   help="comma-separated models run once without privacy on the same split ('' for none)")
    p.add_argument("--delta", type=float, default=None, help="default 1/n^1.1 for n training shoppers")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs for every run, private and reference (default: per model)")
    p.add_argument("--param", action="append", metavar="MODEL:KEY=VALUE",
                   help="a private run's hyperparameter, e.g. dp-transformer:d=64 (repeatable)")
    p.add_argument("--reference-param", action="append", metavar="MODEL:KEY=VALUE",
                   help="a hyperparameter of the non-private reference (epsilon=inf) run")
    p.add_argument("--mia-holdout", type=float, default=0.2,
                   help="share of shoppers held out of training for the attack")
    p.add_argument("--fed-clients", type=int, default=10)
    p.add_argument("--fed-rounds", type=int, default=20)
    p.add_argument("--no-federated", action="store_true", help="skip the Flower comparison")
    p.add_argument("--json", help="write the figures as JSON")
    p.add_argument("--plot", default="privacy_report.png", help="where to write the plots")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the report as the arguments say; prints the table to stdout."""
    from shoprec.data.readers import load
    from shoprec.privacy.report import (
        ReportSettings,
        format_table,
        parse_epsilons,
        plot_report,
        privacy_report,
        write_json,
    )

    if args.threads:
        import torch

        torch.set_num_threads(int(args.threads))
    params = parse_scoped_params(args.param)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    reference = parse_scoped_params(args.reference_param)
    if args.epochs is not None:
        for m in models:
            params.setdefault(m, {}).setdefault("epochs", int(args.epochs))
            reference.setdefault(m, {}).setdefault("epochs", int(args.epochs))
    settings = ReportSettings(
        models=models,
        baselines=[m.strip() for m in args.baselines.split(",") if m.strip()],
        epsilons=parse_epsilons(args.epsilons),
        delta=args.delta,
        model_params=params,
        reference_params=reference,
        mia_holdout=float(args.mia_holdout),
        federated=not args.no_federated,
        fed_clients=int(args.fed_clients),
        fed_rounds=int(args.fed_rounds),
        seed=int(args.seed),
    )
    t0 = time.perf_counter()
    data = load(args.data, args.format).dataset()
    say(args, f"loaded {args.data}: {data.n_users:,} users, {data.n_items:,} items, {len(data):,} events "
        f"in {time.perf_counter() - t0:.1f}s")
    report = privacy_report(data, settings, name=str(args.data), progress=lambda m: say(args, m))
    print(format_table(report))
    if args.json:
        say(args, f"wrote {write_json(report, args.json)}")
    if args.plot:
        say(args, f"wrote {plot_report(report, args.plot)}")
    return 0
