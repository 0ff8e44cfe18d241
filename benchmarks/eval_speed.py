"""Speed and memory of `shoprec.evaluate` on ML-1M against a naive full-sort evaluator.

    python benchmarks/eval_speed.py [--repeat 3] [--block-size 1024] [--json FILE]

Loads the SASRec copy of ML-1M (6,040 users, 3,416 items), splits it leave-one-out, fits
Popularity and times, for every test user with full ranking over all items:

* shoprec: `evaluate` (blockwise scores, -inf mask, torch top-K selection);
* naive: the whole users x items score matrix at once, a dense seen mask, and a full
  `argsort` of every row (stable, so it follows the same tie rule).

Time is the best of --repeat runs; peak memory is what tracemalloc saw during one more run
(numpy reports its buffers to tracemalloc), measured apart from the timed runs. Ratios are
against the naive baseline of the same process. Both evaluators must agree on HR@10 and NDCG@10.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, dataset_path, peak_rss_mb, table, write_json

from shoprec.data.dataset import Dataset
from shoprec.data.split import Split, leave_one_out
from shoprec.data.vocab import Vocabulary
from shoprec.evaluate.protocol import SampledProtocol, evaluate
from shoprec.models.popularity import Popularity


def load_ml1m() -> Dataset:
    """`user item` per line, line order = time order (the SASRec preprocessing)."""
    path, _ = dataset_path("ml-1m")
    frame = pd.read_csv(path, sep=" ", header=None, names=["user", "item"], dtype=str)
    users = Vocabulary.from_values(frame["user"].to_numpy(), "user")
    items = Vocabulary.from_values(frame["item"].to_numpy(), "item")
    return Dataset.from_arrays(
        users,
        items,
        users.index(frame["user"].to_numpy()),
        items.index(frame["item"].to_numpy()),
        name="ml-1m",
    )


def naive_evaluate(model, split: Split, k: int = 10) -> dict[str, float]:
    """Every test user's full score row at once, then a full stable argsort per row."""
    users = split.test_users
    scores = model.score_users(users, history=split.test_history).astype(np.float64)
    seen = split.test_history.matrix(binary=True)[users].toarray() > 0
    scores[seen] = -np.inf
    ranking = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    truth = split.test[users].toarray() > 0
    hits = np.take_along_axis(truth, ranking, axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = np.array([discount[: min(n, k)].sum() for n in truth.sum(axis=1)])
    return {
        f"HR@{k}": float(hits.any(axis=1).mean()),
        f"NDCG@{k}": float(((hits * discount).sum(axis=1) / idcg).mean()),
    }


def measure(fn, repeat: int) -> tuple[float, float, object]:
    """(best seconds, tracemalloc peak MiB, last result) of fn()."""
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / 2**20, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--json", default=str(RESULTS / "eval_speed.json"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = load_ml1m()
    split = leave_one_out(data)
    model = Popularity().fit(split.train)
    load_s = time.perf_counter() - t0
    n_test = int(split.test_users.size)
    print(
        f"ML-1M: {data.n_users:,} users, {data.n_items:,} items, {len(data):,} events, "
        f"{n_test:,} test users; loaded, split and fitted Popularity in {load_s:.1f}s",
        file=sys.stderr,
    )

    bs = args.block_size
    cases = {
        "naive: full matrix + argsort, K=10": lambda: naive_evaluate(model, split, 10),
        f"evaluate full ranking, K=10 (block {bs})": lambda: evaluate(
            model, split, k=(10,), block_size=bs
        ),
        f"evaluate full ranking, K=5,10,20 (block {bs})": lambda: evaluate(
            model, split, k=(5, 10, 20), block_size=bs
        ),
        f"evaluate SAMPLED 100 uniform, K=10 (block {bs})": lambda: evaluate(
            model, split, k=(10,), block_size=bs, sampled=SampledProtocol(100, "uniform", seed=0)
        ),
    }
    rows, naive = [], None
    for name, fn in cases.items():
        seconds, peak_mb, out = measure(fn, args.repeat)
        metrics = out if isinstance(out, dict) else out.metrics
        hr = metrics.get("HR@10", metrics.get("sampled_HR@10"))
        ndcg = metrics.get("NDCG@10", metrics.get("sampled_NDCG@10"))
        row = {
            "method": name,
            "seconds": round(seconds, 3),
            "peak_mb": round(peak_mb, 1),
            "HR@10": hr,
            "NDCG@10": ndcg,
        }
        if naive is None:
            naive = row
        row["time_vs_naive"] = round(seconds / naive["seconds"], 3)
        row["memory_vs_naive"] = round(peak_mb / naive["peak_mb"], 3)
        rows.append(row)
    full = rows[1]
    agree = (
        abs(full["HR@10"] - naive["HR@10"]) < 1e-12
        and abs(full["NDCG@10"] - naive["NDCG@10"]) < 1e-12
    )
    print(
        table(
            rows,
            [
                "method",
                "seconds",
                "peak_mb",
                "time_vs_naive",
                "memory_vs_naive",
                "HR@10",
                "NDCG@10",
            ],
        )
    )
    print(
        f"\nfull-ranking evaluate and naive agree on HR@10 and NDCG@10: {agree}; "
        f"process peak RSS {peak_rss_mb():.0f} MiB; best of {args.repeat} runs; "
        "the SAMPLED row is not comparable with full ranking."
    )
    write_json(
        args.json,
        {
            "dataset": "ml-1m",
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_test_users": n_test,
            "repeat": args.repeat,
            "rows": rows,
            "agree": agree,
        },
    )
    if not agree:
        sys.exit("evaluate and the naive baseline disagree")


if __name__ == "__main__":
    main()
