"""`shoprec demo`: the bundled Online Retail shop, end to end.

Loads the demo shop, splits it leave-one-out by time, fits the default models, prints a
full-ranking leaderboard and shows a few shoppers' recent purchases and recommendations by
product title.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from shoprec.cli.common import table

__all__ = ["DEFAULT_MODELS", "add_parser", "run_demo"]

DEFAULT_MODELS = ("pop", "item-knn", "ease", "als", "transformer")
DEMO_PARAMS = {
    # The behaviour Transformer within a one-minute budget, item embeddings from product titles.
    "transformer": {"max_seconds": 60.0, "epochs": 200, "eval_every": 2, "patience": 3, "text_init": True},
}
"""Per-model settings of the demo leaderboard (the others run at their defaults)."""


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train and evaluate the default models on the bundled shop")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=lambda args: run_demo(models=tuple(args.models.split(",")), quiet=args.quiet))


def run_demo(models: tuple[str, ...] = DEFAULT_MODELS, k: int = 10, n_shoppers: int = 3,
             quiet: bool = False, out=sys.stdout) -> int:
    """Run the demo and print to `out`. Returns 0 (the CLI's exit status)."""
    from shoprec.data.readers import load_demo
    from shoprec.data.split import leave_one_out
    from shoprec.evaluate.protocol import evaluate
    from shoprec.models.registry import make_model

    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    loaded = load_demo()
    data = loaded.dataset()
    parts = leave_one_out(data)
    log(f"demo shop: {data.n_users:,} shoppers, {data.n_items:,} products, {len(data):,} purchases "
        f"(loaded in {time.perf_counter() - t0:.1f}s)")

    rows, fitted = [], {}
    for name in models:
        params = dict(DEMO_PARAMS.get(name, {}))
        if "verbose" in make_model(name).get_params():
            params["verbose"] = not quiet
        model = make_model(name, **params)
        t0 = time.perf_counter()
        model.fit(parts.train, parts.valid)
        fit_s = time.perf_counter() - t0
        result = evaluate(model, parts, k=(k,), catalogue=data.catalogue)
        fitted[name] = (model, result)
        m = result.metrics
        rows.append({"model": name, f"HR@{k}": m[f"HR@{k}"], f"NDCG@{k}": m[f"NDCG@{k}"],
                     f"coverage@{k}": m[f"coverage@{k}"], "fit_s": round(fit_s, 2),
                     "eval_s": round(result.eval_seconds, 2)})
        log(f"  {name}: fitted in {fit_s:.1f}s")
    rows.sort(key=lambda r: -r[f"NDCG@{k}"])
    print(table(rows, title=f"Leaderboard: bundled Online Retail shop, leave-one-out, full ranking "
                            f"over {data.n_items:,} products, {parts.test_users.size:,} test shoppers"),
          file=out)

    best_name = rows[0]["model"]
    best, _ = fitted[best_name]
    catalogue = data.catalogue
    rng = np.random.default_rng(0)
    shoppers = rng.choice(parts.test_users, size=min(n_shoppers, parts.test_users.size), replace=False)
    print(f"\nRecommendations from the best model ({best_name}) for {len(shoppers)} shoppers:", file=out)
    for u in shoppers:
        user_id = data.users.id_of([u])[0]
        history = parts.test_history.history(u)
        recent = data.items.id_of(history[-3:])
        print(f"\nShopper {user_id}: recently bought", file=out)
        for title in catalogue.lookup(recent):
            print(f"    - {title}", file=out)
        scores = best.score_users(np.array([u]), history=parts.test_history)[0]
        scores[history] = -np.inf
        top = np.argsort(-scores, kind="stable")[:5]
        target = data.items.id_of(parts.test[u].indices)
        print("  recommended:", file=out)
        for item, title in zip(data.items.id_of(top), catalogue.lookup(data.items.id_of(top))):
            mark = "  <- bought next" if item in set(target) else ""
            print(f"    {item:>8}  {title}{mark}", file=out)
    return 0
