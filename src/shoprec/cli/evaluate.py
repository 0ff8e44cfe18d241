"""`shoprec evaluate`: train a model on a split, evaluate it, print a table, write JSON/exports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shoprec.cli.common import add_data_args, check_model_params, fit_named, prepare, say, table
from shoprec.cli.params import parse_params
from shoprec.errors import ConfigError

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="train a model, evaluate it and print a table")
    add_data_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="model hyperparameter (see `shoprec models --params NAME`)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--extra-k", type=int, nargs="*", default=[], help="more cut-offs, e.g. 5 20")
    p.add_argument("--sampled", type=int, default=0, metavar="N",
                   help="use the sampled protocol with N negatives (labelled as sampled)")
    p.add_argument("--sampled-by", default="uniform", choices=("uniform", "popularity"))
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--export", help="write per-user top-K lists (user<TAB>items) for re-scoring")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from shoprec.evaluate.export import export_topk
    from shoprec.evaluate.protocol import SampledProtocol, evaluate

    if args.export and args.sampled:
        raise ConfigError("--export writes full-ranking top-K lists; drop --sampled to export.")
    params = parse_params(args.param)
    check_model_params(args.model, params)
    _, data, parts = prepare(args)
    ks = tuple(sorted({args.k, *args.extra_k}))
    model, fit_seconds = fit_named(args, args.model, parts.train, parts.valid, params)
    say(args, f"fitted {args.model} in {fit_seconds:.1f}s")
    sampled = SampledProtocol(n_negatives=args.sampled, by=args.sampled_by, seed=args.seed) if args.sampled else None
    result = evaluate(model, parts, k=ks, sampled=sampled, catalogue=data.catalogue, progress=not args.quiet)
    report = {
        "model": args.model,
        "params": model.get_params(),
        "data": str(args.data),
        "format": args.format,
        "protocol": args.protocol,
        "sampled": result.sampled,
        "metrics": result.metrics,
        "fit_seconds": round(fit_seconds, 3),
        "eval_seconds": round(result.eval_seconds, 3),
        "n_users": int(data.n_users),
        "n_items": int(data.n_items),
        "n_users_evaluated": int(result.n_users),
    }
    if result.sampled:
        report["sampled_protocol"] = {"n_negatives": args.sampled, "by": args.sampled_by}
    kind = (f"SAMPLED ({args.sampled} {args.sampled_by} negatives; not comparable with full ranking)"
            if result.sampled else "full ranking")
    print(table([{"model": args.model, **result.metrics}], title=f"{args.data} | protocol {args.protocol} | {kind}"))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        say(args, f"wrote {args.json}")
    if args.export:
        export_topk(result, data.users, data.items, args.export)
        say(args, f"wrote {args.export}")
    return 0
