"""Every baseline on ML-1M and Amazon Beauty: leave-one-out, full ranking over all items, K=10.

    python benchmarks/baselines.py [--datasets ml-1m,beauty] [--models pop,item-knn,...] [--json FILE]

Each (dataset, model) runs in a fresh subprocess so that its peak memory is its own; the "data
only" row is the same subprocess that loads and splits the data and fits nothing, the baseline
the other peaks are compared with.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dataset_path, peak_rss_mb, table, write_json

# Hyperparameters: usual values for these datasets (not tuned on the test set).
MODELS = {
    "random": {},
    "pop": {},
    "item-knn": {"neighbors": 100, "shrink": 10.0},
    "user-knn": {"neighbors": 100, "min_similarity": 0.0},
    "ease": {"l2": 500.0},
    "sparse-ease": {"l2": 500.0, "neighbors": 100},
    "als": {"factors": 64, "iterations": 15, "regularization": 0.05, "alpha": 1.0},
    "bpr": {"factors": 64, "iterations": 100, "learning_rate": 0.05, "regularization": 0.01},
}
SKIP = {("beauty", "ease"): "54,542 items: the dense item x item matrix needs ~12 GB (float32) and its inverse "
                            "more; sparse-ease is its sparse form"}


def run_one(dataset: str, model_name: str) -> dict:
    """Load, split, fit and evaluate one model; runs inside the child process."""
    import threadpoolctl

    from shoprec.data.readers import load
    from shoprec.data.split import leave_one_out
    from shoprec.evaluate.protocol import evaluate
    from shoprec.models.registry import make_model

    path, fmt = dataset_path(dataset)
    t0 = time.perf_counter()
    data = load(path, fmt).dataset()
    parts = leave_one_out(data)
    load_s = time.perf_counter() - t0
    row = {"dataset": dataset, "model": model_name, "users": data.n_users, "items": data.n_items,
           "load_s": round(load_s, 2)}
    if model_name == "data-only":
        row["peak_mb"] = round(peak_rss_mb(), 1)
        return row
    model = make_model(model_name, **MODELS[model_name])
    with threadpoolctl.threadpool_limits(2):
        t0 = time.perf_counter()
        model.fit(parts.train, parts.valid)
        row["fit_s"] = round(time.perf_counter() - t0, 2)
        result = evaluate(model, parts, k=(10,))
    row.update({"HR@10": result.metrics["HR@10"], "NDCG@10": result.metrics["NDCG@10"],
                "coverage@10": result.metrics["coverage@10"], "eval_s": round(result.eval_seconds, 2),
                "n_test_users": result.n_users, "peak_mb": round(peak_rss_mb(), 1),
                "params": MODELS[model_name]})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-1m,beauty")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", default=str(RESULTS / "baselines.json"))
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return

    rows = []
    for dataset in args.datasets.split(","):
        for model_name in ["data-only", *args.models.split(",")]:
            if (dataset, model_name) in SKIP:
                rows.append({"dataset": dataset, "model": model_name, "note": "skipped: " + SKIP[dataset, model_name]})
                print(f"{dataset} {model_name}: skipped ({SKIP[dataset, model_name]})", file=sys.stderr)
                continue
            proc = subprocess.run([sys.executable, __file__, "--one", dataset, model_name],
                                  check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                rows.append({"dataset": dataset, "model": model_name, "note": "failed: " + proc.stderr.strip().splitlines()[-1]})
                print(proc.stderr, file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{dataset} {model_name}: {row}", file=sys.stderr, flush=True)
    base = {r["dataset"]: r["peak_mb"] for r in rows if r["model"] == "data-only"}
    for r in rows:
        if "peak_mb" in r and r["dataset"] in base:
            r["peak_vs_data"] = round(r["peak_mb"] / base[r["dataset"]], 2)
    print(table([r for r in rows if r["model"] != "data-only" or True],
                ["dataset", "model", "HR@10", "NDCG@10", "coverage@10", "fit_s", "eval_s", "peak_mb", "peak_vs_data", "note"]))
    write_json(args.json, {"protocol": "leave-one-out, full ranking over all items, K=10",
                           "command": "python benchmarks/baselines.py", "rows": rows})


if __name__ == "__main__":
    main()
