"""The `shoprec` command: thin argument parsing over the library.

    shoprec evaluate --data PATH --format FORMAT --model NAME [--protocol loo] [--k 10] [--json F] [--export F]
    shoprec train    --data PATH --format FORMAT --model NAME --out DIR
    shoprec recommend --model-path FILE (--user ID | --history ID,ID,...) [--k 10]
    shoprec data report --data PATH --format FORMAT [--json F]
    shoprec models
    shoprec demo
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from shoprec.errors import ShoprecError

DEFAULT_DEMO_MODELS = ("pop", "item-knn", "ease", "als")


def _parse_value(text: str) -> Any:
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_params(pairs: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ShoprecError(f"--param expects key=value. Got {pair!r} instead.")
        params[key.replace("-", "_")] = _parse_value(value)
    return params


def _log(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _load(args: argparse.Namespace):
    from shoprec.data.readers import load, load_demo

    if args.data == "demo":
        return load_demo()
    mapping = None
    if getattr(args, "mapping", None):
        mapping = dict(pair.split("=", 1) for pair in args.mapping.split(",") if "=" in pair)
    return load(args.data, args.format, catalogue=getattr(args, "catalogue", None), mapping=mapping)


def _prepare(args: argparse.Namespace):
    """Load, optionally k-core filter, and split the data named on the command line."""
    from shoprec.data.split import k_core, split

    t0 = time.perf_counter()
    loaded = _load(args)
    data = loaded.dataset()
    if getattr(args, "kcore", 0):
        data = k_core(data, args.kcore, args.kcore)
    parts = split(data, args.protocol, seed=args.seed)
    _log(args, f"loaded {args.data}: {data.n_users:,} users, {data.n_items:,} items, "
               f"{len(data):,} events in {time.perf_counter() - t0:.1f}s")
    return loaded, data, parts


def _fit(args: argparse.Namespace, name: str, parts, params: dict[str, Any]):
    from shoprec.models.registry import make_model

    model = make_model(name, **params)
    if "verbose" in model.get_params() and not args.quiet:
        model.verbose = True
    t0 = time.perf_counter()
    model.fit(parts.train, parts.valid)
    return model, time.perf_counter() - t0


def _sampled(args: argparse.Namespace):
    if not args.sampled:
        return None
    from shoprec.evaluate.protocol import SampledProtocol

    return SampledProtocol(n_negatives=args.sampled, by=args.sampled_by, seed=args.seed)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from shoprec.evaluate.export import export_topk
    from shoprec.evaluate.protocol import evaluate

    loaded, data, parts = _prepare(args)
    ks = tuple(sorted({args.k, *args.extra_k}))
    model, fit_seconds = _fit(args, args.model, parts, _parse_params(args.param))
    _log(args, f"fitted {args.model} in {fit_seconds:.1f}s")
    result = evaluate(
        model, parts, k=ks, sampled=_sampled(args), catalogue=data.catalogue, progress=not args.quiet
    )
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
    print(_table([{"model": args.model, **result.metrics}], title=_title(args, result.sampled)))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        _log(args, f"wrote {args.json}")
    if args.export:
        if result.sampled:
            raise ShoprecError("--export writes full-ranking top-K lists; drop --sampled to export.")
        export_topk(result, data.users, data.items, args.export)
        _log(args, f"wrote {args.export}")
    return 0


def _title(args: argparse.Namespace, sampled: bool) -> str:
    kind = f"SAMPLED ({args.sampled} {args.sampled_by} negatives; not comparable with full ranking)" if sampled else "full ranking"
    return f"{args.data} | protocol {args.protocol} | {kind}"


def _table(rows: list[dict[str, Any]], title: str = "") -> str:
    """A plain-text table; floats with 4 decimals."""
    if not rows:
        return title
    cols = list(rows[0])
    for row in rows[1:]:
        cols += [c for c in row if c not in cols]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def cmd_train(args: argparse.Namespace) -> int:
    _, data, parts = _prepare(args)
    model, fit_seconds = _fit(args, args.model, parts, _parse_params(args.param))
    if args.full:
        # Refit on every event (train + valid + test) for serving, with the same parameters.
        from shoprec.models.registry import make_model

        t0 = time.perf_counter()
        model = make_model(args.model, **model.get_params()).fit(data)
        fit_seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = model.save(out / f"{args.model}.npz")
    _log(args, f"fitted {args.model} in {fit_seconds:.1f}s")
    print(path)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from shoprec.models.base import Recommender

    model = Recommender.load(args.model_path)
    if args.user is not None:
        recs = model.recommend(args.user, k=args.k)
    else:
        history = [h.strip() for h in (args.history or "").split(",") if h.strip()]
        import numpy as np

        known = model.items_.index(np.asarray(history, dtype=str), missing="drop") if history else []
        if len(known) < len(history):
            unknown = sorted(set(history) - set(model.items_.id_of(np.asarray(known, dtype=np.int64))))
            print(f"note: the model does not know these item ids and ignores them: {', '.join(unknown[:10])}",
                  file=sys.stderr)
        recs = model.recommend_history(history, k=args.k)
    for item, score in recs:
        print(f"{item}\t{score:.6g}")
    return 0


def cmd_data_report(args: argparse.Namespace) -> int:
    loaded = _load(args)
    data = loaded.dataset()
    lengths = data.indptr[1:] - data.indptr[:-1]
    stats = {
        "events": int(len(data)),
        "users": int(data.n_users),
        "items": int(data.n_items),
        "items_with_events": int((data.item_popularity() > 0).sum()),
        "density": float(len(data) / max(1, data.n_users * data.n_items)),
        "events_per_user_mean": float(lengths.mean()),
        "events_per_user_median": float(__import__("numpy").median(lengths)),
        "event_types": {
            name: int(count)
            for name, count in loaded.interactions.frame["event"].value_counts().items()
            if count
        },
        "catalogue_items": int(len(loaded.catalogue)) if loaded.catalogue is not None else 0,
    }
    report = {"quality": loaded.report.as_dict(), "stats": stats}
    print(f"Data-quality report for {args.data} ({args.format})")
    q = report["quality"]
    print(f"  rows read {q['rows_read']:,}, kept {q['rows_kept']:,}")
    for finding, info in q["findings"].items():
        print(f"  {finding:<32} {info['rows']:>10,}  {info['action']}")
    print("Stats")
    for key, value in stats.items():
        print(f"  {key:<24} {value if not isinstance(value, float) else f'{value:.6g}'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from shoprec.models.registry import model_names

    print("\n".join(model_names()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from shoprec.demo_job import run_demo

    return run_demo(models=tuple(args.models.split(",")), quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    from shoprec.data.split import PROTOCOLS

    parser = argparse.ArgumentParser(prog="shoprec", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"shoprec {__import__('shoprec').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, help="path to the log, or 'demo' for the bundled shop")
        p.add_argument("--format", default="shoprec", help="reader format (see `shoprec data formats`)")
        p.add_argument("--catalogue", default=None, help="optional catalogue file for the format")
        p.add_argument("--mapping", default=None,
                       help="csv/parquet column mapping, e.g. user=customer_id,item=sku,timestamp=ts")
        p.add_argument("--protocol", default="loo", choices=PROTOCOLS)
        p.add_argument("--kcore", type=int, default=0, help="k-core filter users and items first")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--quiet", action="store_true", help="no progress output on stderr")

    p = sub.add_parser("evaluate", help="train a model, evaluate it and print a table")
    data_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="model hyperparameter")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--extra-k", type=int, nargs="*", default=[], help="more cut-offs, e.g. 5 20")
    p.add_argument("--sampled", type=int, default=0, metavar="N",
                   help="use the sampled protocol with N negatives (labelled as sampled)")
    p.add_argument("--sampled-by", default="uniform", choices=("uniform", "popularity"))
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--export", help="write per-user top-K lists (user<TAB>items) for re-scoring")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="fit a model and save it")
    data_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--param", action="append", metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="directory to write the model file into")
    p.add_argument("--full", action="store_true", help="refit on all data after validation")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recommend", help="recommend from a saved model")
    p.add_argument("--model-path", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--user")
    group.add_argument("--history", help="comma-separated item ids, oldest first")
    p.add_argument("--k", type=int, default=10)
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("data", help="inspect data")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    r = data_sub.add_parser("report", help="data-quality report and dataset stats")
    r.add_argument("--data", required=True)
    r.add_argument("--format", default="shoprec")
    r.add_argument("--catalogue", default=None)
    r.add_argument("--mapping", default=None)
    r.add_argument("--json")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_data_report)
    f = data_sub.add_parser("formats", help="list the reader formats")
    f.set_defaults(func=lambda a: print("\n".join(__import__("shoprec.data.readers", fromlist=["FORMATS"]).FORMATS)) or 0)

    from shoprec.privacy_cli import add_privacy_parser
    from shoprec.serve_cli import add_serve_parser
    from shoprec.simulate_cli import add_simulate_parser

    add_simulate_parser(sub)
    add_serve_parser(sub)
    add_privacy_parser(sub)

    p = sub.add_parser("models", help="list the model names")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="train and evaluate the default models on the bundled shop")
    p.add_argument("--models", default=",".join(DEFAULT_DEMO_MODELS))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ShoprecError as exc:
        print(f"shoprec: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"shoprec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
