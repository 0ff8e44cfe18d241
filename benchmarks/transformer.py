"""The behaviour Transformer (SASRec+) and the neural baselines NCF and Caser, leave-one-out.

    python benchmarks/transformer.py --dataset ml-1m|beauty|games|all [--models transformer,ncf,caser]
                                     [--json FILE] [--threads 2]

Protocol: leave-one-out (last event test, the one before validation; SASRec/BERT4Rec), the test
item ranked against every item the user has not interacted with (full ranking, K=10), and beside
it the papers' sampled protocol (the test item among 100 uniformly drawn unseen items; SASRec
reports HR@10 0.8245 / NDCG@10 0.5905 on ML-1M that way). Early stopping uses validation NDCG@10
predicted from the training histories; the test ranking conditions on training + validation
events. Each (dataset, model) runs in a fresh subprocess so its peak memory (maxrss) is its own.
"games" compares the Transformer without text, with text-initialised item embeddings and with
text fusion on Amazon Games (LLMRank), whose catalogue has titles (MiniLM vectors, 384-d).

Reference figures: SASRec+ (Klenitskiy & Vasilev, RecSys 2023) NDCG@10 0.182 / HR@10 0.315 on
ML-1M, and 0.0327 / 0.0533 on BERT4Rec's Amazon Beauty.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dataset_path, peak_rss_mb, table, write_json

# SASRec+'s own settings (its code's defaults): the SASRec block, dropout 0.1 on embeddings,
# feed-forward and attention weights, Adam 1e-3, batch 128, early stopping after 10 epochs.
SASREC_PLUS = {"d": 64, "n_layers": 2, "n_heads": 1, "block": "sasrec", "dropout": 0.1, "attn_dropout": 0.1,
               "lr": 1e-3, "batch_size": 128, "epochs": 200, "patience": 5, "eval_every": 2}

# Settings per dataset and model (chosen on validation NDCG, never on test). The first ML-1M
# Transformer follows SASRec+ (max_len 200, d 64, 2 blocks, 1 head, batch 128, full softmax at every
# position) with Adam at 2e-3 and dropout 0.1 rather than 1e-3 / 0.2: on validation that reached in
# 4 epochs what 1e-3 / 0.2 reached in 10, and training must fit a 45-minute budget on 2 cores.
# "transformer-sasrec-d128" is the best on validation: the SASRec block at twice the width.
CONFIGS: dict[str, dict[str, tuple[str, dict]]] = {
    "ml-1m": {
        "transformer": ("transformer", {
            "max_len": 200, "d": 64, "n_layers": 2, "n_heads": 1, "block": "pre_ln", "dropout": 0.1, "lr": 2e-3, "batch_size": 128,
            "epochs": 200, "patience": 5, "eval_every": 2, "valid_users": 3000, "max_seconds": 45 * 60}),
        # The SASRec+ paper's own settings (lr 1e-3, dropout 0.1, early stopping on every validation
        # user), under the same 45-minute budget.
        "transformer-paper-lr": ("transformer", {
            "max_len": 200, "d": 64, "n_layers": 2, "n_heads": 1, "block": "pre_ln", "dropout": 0.1, "lr": 1e-3, "batch_size": 128,
            "epochs": 200, "patience": 5, "eval_every": 2, "valid_users": None, "max_seconds": 45 * 60}),
        "transformer-sasrec": ("transformer", {
            **SASREC_PLUS, "max_len": 200, "valid_users": None, "max_seconds": 45 * 60}),
        # The same at twice SASRec+'s width, same budget.
        "transformer-sasrec-d128": ("transformer", {
            **SASREC_PLUS, "max_len": 200, "d": 128, "valid_users": None, "max_seconds": 45 * 60}),
        "ncf": ("ncf", {
            "max_len": 50, "d": 64, "hidden": [64, 32], "dropout": 0.2, "loss": "sampled", "n_negatives": 256,
            "lr": 1e-3, "batch_size": 128, "epochs": 60, "patience": 3, "eval_every": 2, "valid_users": 3000,
            "max_seconds": 10 * 60}),
        "caser": ("caser", {
            "max_len": 200, "d": 64, "window": 5, "n_v": 4, "n_h": 16, "dropout": 0.5, "lr": 1e-3, "batch_size": 128,
            "epochs": 60, "patience": 3, "eval_every": 2, "valid_users": 3000, "max_seconds": 10 * 60}),
    },
    "beauty": {
        "transformer": ("transformer", {
            "max_len": 50, "d": 64, "n_layers": 2, "n_heads": 1, "block": "pre_ln", "dropout": 0.5, "lr": 1e-3, "batch_size": 128,
            "epochs": 200, "patience": 5, "eval_every": 2, "valid_users": 5000, "max_seconds": 40 * 60}),
        # SASRec+'s settings with its Beauty sequence length and 10,000 validation users. The issue
        # sets no time limit for Beauty; an hour covers the epochs SASRec+'s early stopping needs.
        "transformer-sasrec": ("transformer", {
            **SASREC_PLUS, "max_len": 50, "valid_users": 10000, "max_seconds": 60 * 60}),
        # At dropout 0.1 validation NDCG@10 peaked at epoch 6 and then fell (over-fitting), so the
        # same with dropout 0.3 on embeddings, feed-forward and attention.
        "transformer-sasrec-dropout0.3": ("transformer", {
            **SASREC_PLUS, "max_len": 50, "dropout": 0.3, "attn_dropout": 0.3, "patience": 3,
            "valid_users": 10000, "max_seconds": 35 * 60}),
        # The same with a sampled softmax over 3,000 uniform negatives (as "SASRec+ 3000
        # negatives" in the eSASRec study) and sparse item updates: cheaper epochs, so more of
        # them in the same budget (the full-softmax run above was stopped by its budget).
        "transformer-sasrec-dropout0.3-sampled3000": ("transformer", {
            **SASREC_PLUS, "max_len": 50, "dropout": 0.3, "attn_dropout": 0.3, "patience": 3,
            "valid_users": 10000, "max_seconds": 35 * 60, "loss": "sampled", "n_negatives": 3000,
            "sparse_item_grads": True}),
        "ncf": ("ncf", {
            "max_len": 50, "d": 64, "hidden": [64, 32], "dropout": 0.2, "loss": "sampled", "n_negatives": 256,
            "lr": 1e-3, "batch_size": 128, "epochs": 60, "patience": 3, "eval_every": 2, "valid_users": 5000,
            "max_seconds": 10 * 60}),
        "caser": ("caser", {
            "max_len": 50, "d": 64, "window": 5, "n_v": 4, "n_h": 16, "dropout": 0.5, "lr": 1e-3, "batch_size": 128,
            "epochs": 60, "patience": 3, "eval_every": 2, "valid_users": 5000, "max_seconds": 10 * 60}),
    },
    "games": {
        "transformer": ("transformer", {
            "max_len": 50, "d": 64, "n_layers": 2, "n_heads": 1, "block": "pre_ln", "dropout": 0.5, "lr": 1e-3, "batch_size": 128,
            "epochs": 100, "patience": 4, "eval_every": 2, "valid_users": 5000, "max_seconds": 12 * 60}),
        "transformer+text_init": ("transformer", {
            "max_len": 50, "d": 64, "n_layers": 2, "n_heads": 1, "block": "pre_ln", "dropout": 0.5, "lr": 1e-3, "batch_size": 128,
            "epochs": 100, "patience": 4, "eval_every": 2, "valid_users": 5000, "max_seconds": 12 * 60,
            "text_init": True}),
        "transformer+text_fusion": ("transformer", {
            "max_len": 50, "d": 64, "n_layers": 2, "n_heads": 1, "block": "pre_ln", "dropout": 0.5, "lr": 1e-3, "batch_size": 128,
            "epochs": 100, "patience": 4, "eval_every": 2, "valid_users": 5000, "max_seconds": 12 * 60,
            "text_fusion": True}),
    },
}
SAMPLED_NEGATIVES = 100
COLUMNS = ["dataset", "model", "HR@10", "NDCG@10", "sampled_HR@10", "sampled_NDCG@10", "sec_per_epoch",
           "epochs_run", "best_epoch", "stopped_by", "fit_s", "eval_s", "peak_mb", "note"]


def run_one(dataset: str, key: str, threads: int) -> dict:
    """Load, split, fit and evaluate one configuration; runs inside the child process."""
    import torch

    from shoprec.data.readers import load
    from shoprec.data.split import leave_one_out
    from shoprec.evaluate.protocol import SampledProtocol, evaluate
    from shoprec.models.registry import make_model

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    name, params = CONFIGS[dataset][key]
    path, fmt = dataset_path(dataset)
    t0 = time.perf_counter()
    data = load(path, fmt).dataset()
    parts = leave_one_out(data)
    row: dict = {"dataset": dataset, "model": key, "users": data.n_users, "items": data.n_items,
                 "events": len(data), "load_s": round(time.perf_counter() - t0, 2), "params": params,
                 "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    model = make_model(name, device="cpu", **params)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(parts.train, parts.valid)
    row["fit_s"] = round(time.perf_counter() - t0, 1)
    row["fit_cpu_s"] = round(time.process_time() - c0, 1)
    log = model.training_log
    train_seconds = [e["seconds"] for e in log]
    row.update(
        sec_per_epoch=round(sum(train_seconds) / max(len(train_seconds), 1), 1),
        epochs_run=len(log),
        best_epoch=model.best_epoch_,
        stopped_by=model.stopped_by_,
        valid_eval_s=round(sum(e.get("valid_seconds", 0.0) for e in log), 1),
        log=[{k: (round(v, 5) if isinstance(v, float) else v) for k, v in e.items()} for e in log],
    )
    t0 = time.perf_counter()
    full = evaluate(model, parts, k=(10,))
    sampled = evaluate(model, parts, k=(10,), sampled=SampledProtocol(SAMPLED_NEGATIVES, "uniform", seed=0))
    row["eval_s"] = round(time.perf_counter() - t0, 1)
    row.update({m: full.metrics[m] for m in ("HR@10", "NDCG@10", "coverage@10")})
    row.update({m: sampled.metrics[m] for m in ("sampled_HR@10", "sampled_NDCG@10")})
    row["n_test_users"] = full.n_users
    row["peak_mb"] = round(peak_rss_mb(), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-1m", choices=[*CONFIGS, "all"])
    parser.add_argument("--models", default=None, help="comma-separated keys of CONFIGS (default: all)")
    parser.add_argument("--json", default=None, help="default: benchmarks/results/transformer-<dataset>.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, threads=args.threads)))
        return

    datasets = list(CONFIGS) if args.dataset == "all" else [args.dataset]
    rows = []
    for dataset in datasets:
        keys = args.models.split(",") if args.models else list(CONFIGS[dataset])
        for key in keys:
            if key not in CONFIGS[dataset]:
                sys.exit(f"unknown model {key!r} for {dataset}; choose from {list(CONFIGS[dataset])}")
            print(f"== {dataset} {key}", file=sys.stderr, flush=True)
            cmd = [sys.executable, __file__, "--one", dataset, key, "--threads", str(args.threads)]
            # Idle OpenMP threads sleep instead of spinning: on a shared machine spinning burnt
            # half the CPU time of a training step for no speed-up.
            env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, check=False, env=env)
            if proc.returncode != 0:
                rows.append({"dataset": dataset, "model": key, "note": f"failed (exit {proc.returncode})"})
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(table([row], COLUMNS), file=sys.stderr, flush=True)
    print(table(rows, COLUMNS))
    out = args.json or RESULTS / f"transformer-{args.dataset}.json"
    write_json(out, {
        "protocol": "leave-one-out; full ranking over all items (seen items excluded), K=10; "
                    f"sampled: test item vs {SAMPLED_NEGATIVES} uniformly drawn unseen items",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "rows": rows,
    })


if __name__ == "__main__":
    main()
