"""How time and peak memory grow with the data: the whole pipeline on synthetic shops.

    python benchmarks/scale.py [--sizes 1000000:10000,3000000:100000,10000000:1000000]
                               [--transformer-seconds 600] [--eval-users 5000] [--json FILE]

Each size is EVENTS:ITEMS. For each, in a fresh process (so that peaks do not carry over), on the
shop `scripts/make_shop.py` writes (power-law popularity, sessions, a view/cart/purchase funnel, a
titled catalogue): generate and write it; load and clean it with shoprec's CSV reader; split it
leave-one-out; fit item-kNN, EASE (dense; refused above 30,000 items, as the model says; where it
refuses, sparse EASE with 50 neighbours runs after everything else), ALS and the behaviour Transformer with sampled
softmax (512 negatives, 50 events, sparse item-table updates, early stopping on a seeded sample of
5,000 validation shoppers, stopped after `--transformer-seconds`, inside an epoch if need be);
evaluate each with full ranking over every item for a seeded sample of `--eval-users` test shoppers
(stated: full ranking of every shopper at 1M items is hours on its own); build the FAISS HNSW index
over the Transformer's item vectors; and serve 200 recommendations through `ServingEngine`. After
each stage the process's peak resident memory so far is read (`ru_maxrss`), so each stage's figure
is the peak up to and including it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))


# Its cost is neighbors^2 Gram lookups per item: 50 keeps a million items to minutes.
SPARSE_EASE_NEIGHBORS = 50


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_size(n_events: int, n_items: int, transformer_s: float, eval_users: int, workdir: Path) -> dict:
    from make_shop import make_shop

    from shoprec.data.readers import load
    from shoprec.data.split import leave_one_out
    from shoprec.errors import ConfigError
    from shoprec.evaluate.protocol import evaluate
    from shoprec.models.registry import make_model

    stages: list[dict] = []

    def stage(name: str, t0: float, **extra) -> None:
        stages.append({"stage": name, "seconds": round(time.perf_counter() - t0, 2), "peak_mb": round(peak_mb()),
                       **extra})
        print(f"  {n_events:>10,} events {n_items:>9,} items  {name:<28} {stages[-1]['seconds']:>8.1f} s  "
              f"peak {stages[-1]['peak_mb']:>6} MB  {extra or ''}", flush=True)

    t0 = time.perf_counter()
    log, items = make_shop(n_events, n_items, seed=0)
    log.to_csv(workdir / "events.csv.gz", index=False, compression={"method": "gzip", "compresslevel": 1})
    items.to_csv(workdir / "catalogue.csv", index=False)
    n_rows = len(log)
    del log, items
    stage("generate", t0, events=n_rows)
    t0 = time.perf_counter()
    data = load(workdir / "events.csv.gz", "csv", catalogue=workdir / "catalogue.csv").dataset()
    stage("load and clean", t0, events=len(data), shoppers=int(data.n_users), items=int(data.n_items))
    t0 = time.perf_counter()
    split = leave_one_out(data)
    rng = np.random.default_rng(0)
    test_users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    keep = np.zeros(split.test.shape[0], bool)
    keep[rng.choice(test_users, size=min(eval_users, len(test_users)), replace=False)] = True
    sampled = dataclasses.replace(split, test=split.test.multiply(keep[:, None]).tocsr())
    stage("split (leave-one-out)", t0, evaluated_shoppers=int(keep.sum()))
    models = {
        "item-knn": {},
        "ease": {},
        "als": {},
        "transformer": {"loss": "sampled", "n_negatives": 512, "max_len": 50, "sparse_item_grads": True,
                        "valid_users": 5000, "max_seconds": transformer_s, "epochs": 200, "verbose": False},
    }
    transformer = None
    for name, params in models.items():
        t0 = time.perf_counter()
        try:
            model = make_model(name, **params).fit(split.train, split.valid)
        except (ConfigError, MemoryError) as exc:
            stage(f"fit {name}", t0, refused=str(exc)[:160])
            continue
        extra = {}
        if name == "transformer":
            log = model.training_log
            extra = {"epochs": len(log), "best_epoch": model.best_epoch_, "stopped_by": model.stopped_by_,
                     "targets_per_s": round(sum(e["targets"] for e in log) / max(sum(e["seconds"] for e in log), 1e-9)),
                     "validation_seconds": round(sum(e.get("valid_seconds", 0.0) for e in log), 1)}
        stage(f"fit {name}", t0, **extra)
        t0 = time.perf_counter()
        result = evaluate(model, sampled, k=(10,))
        stage(f"evaluate {name}", t0, NDCG_at_10=round(result.metrics["NDCG@10"], 4),
              HR_at_10=round(result.metrics["HR@10"], 4))
        if name == "transformer":
            transformer = model
        else:
            del model
    if transformer is not None:
        from shoprec.serve.ann import ItemIndex

        vectors = np.ascontiguousarray(transformer.item_embeddings(), dtype=np.float32)
        t0 = time.perf_counter()
        index = ItemIndex(vectors, threshold=1)
        stage("build HNSW index", t0, kind=index.kind)
        from shoprec.serve.engine import ServingEngine

        t0 = time.perf_counter()
        engine = ServingEngine()
        engine.set_catalogue([(str(i), "", "", None, True, 0) for i in data.items.ids])
        engine.set_model(transformer)
        histories = [data.items.ids[data.history(u)][-50:].tolist() for u in rng.choice(data.n_users, 200)]
        t1 = time.perf_counter()
        for history in histories:
            engine.recommend(history, ["view"] * len(history), 20)
        per_call = (time.perf_counter() - t1) / len(histories) * 1000
        stage("serve 200 recommendations", t0, ms_per_recommendation=round(per_call, 2))
        del engine, transformer
    if any(s["stage"] == "fit ease" and "refused" in s for s in stages):
        # Last, so that its Gram's memory does not raise the peaks reported for the stages above.
        t0 = time.perf_counter()
        model = make_model("sparse-ease", neighbors=SPARSE_EASE_NEIGHBORS).fit(split.train)
        stage("fit sparse-ease", t0)
        t0 = time.perf_counter()
        result = evaluate(model, sampled, k=(10,))
        stage("evaluate sparse-ease", t0, NDCG_at_10=round(result.metrics["NDCG@10"], 4),
              HR_at_10=round(result.metrics["HR@10"], 4))
    return {"events": n_events, "items": n_items, "stages": stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000:10000,3000000:100000,10000000:1000000")
    parser.add_argument("--transformer-seconds", type=float, default=600.0)
    parser.add_argument("--eval-users", type=int, default=5000)
    parser.add_argument("--json", help="write the stages of every size to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # EVENTS:ITEMS, run in this process
    args = parser.parse_args(argv)
    if args.one:
        n_events, n_items = (int(x) for x in args.one.split(":"))
        with tempfile.TemporaryDirectory() as tmp:
            result = one_size(n_events, n_items, args.transformer_seconds, args.eval_users, Path(tmp))
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    results = []
    for size in args.sizes.split(","):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--one", size, "--transformer-seconds",
                               str(args.transformer_seconds), "--eval-users", str(args.eval_users)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              check=False)
        lines = proc.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("RESULT ")), flush=True)
        found = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
        if proc.returncode != 0 or not found:
            results.append({"size": size, "failed": f"exit code {proc.returncode}"})
            continue
        results.append({**found[0], "total_seconds": round(time.perf_counter() - t0, 1)})
    if args.json:
        Path(args.json).write_text(json.dumps({
            "results": results, "transformer_seconds": args.transformer_seconds, "eval_users": args.eval_users,
            "setup": {"python": platform.python_version(), "cpus": os.cpu_count()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
