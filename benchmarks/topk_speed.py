"""Top-k selection of the evaluator (`shoprec.evaluate.metrics.top_k`) against np.argpartition.

    python benchmarks/topk_speed.py [--rows 1024] [--items 10000,100000,1000000] [--json FILE]
                                    [--validation 5000]

For each catalogue width, a block of `rows` users' float32 scores (normal noise, the first 50
items of every row at -inf as if seen) is ranked to the top 10 by `top_k` (torch's top-k
selection, then the tie rule) and by the same tie rule after np.argpartition of the negated
scores (what `top_k` did before), in this process; both must return the same items. Prints the
best of three timings of each and their ratio. Block scoring and ranking are what full-ranking
evaluation and the training loop's validation spend their time on at a million items.

--validation N also times what the training loop's validation does at the widest size:
`evaluate_scores` for N shoppers with 10 history events each, scored by a dot product of
random 64-d shopper and item vectors (the Transformer's output layer), once with each selection.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json

from shoprec.evaluate import metrics
from shoprec.evaluate.metrics import top_k


def argpartition_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The former selection: argpartition on -scores, the cut's ties by index, winners sorted."""
    n_rows = scores.shape[0]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    cut = scores[np.arange(n_rows)[:, None], part].min(axis=1)
    n_above = (scores > cut[:, None]).sum(axis=1)
    n_at = (scores == cut[:, None]).sum(axis=1)
    fix = np.flatnonzero(n_above + n_at > k)
    if fix.size:
        s = scores[fix]
        at = s == cut[fix, None]
        keep = (s > cut[fix, None]) | (at & (np.cumsum(at, axis=1) <= (k - n_above[fix])[:, None]))
        part[fix] = np.nonzero(keep)[1].reshape(fix.size, k)
    part = np.sort(part, axis=1)
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    part[np.take_along_axis(vals, order, axis=1) == -np.inf] = -1
    return part


def best_of(fn, scores: np.ndarray, repeat: int = 3) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(scores, 10)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1024)
    p.add_argument("--items", default="10000,100000,1000000")
    p.add_argument("--validation", type=int, default=0, help="also time evaluate_scores for this many shoppers")
    p.add_argument("--json")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    results = []
    for n_items in (int(x) for x in args.items.split(",")):
        scores = rng.standard_normal((args.rows, n_items), dtype=np.float32)
        scores[:, :50] = -np.inf
        new_s, new = best_of(top_k, scores)
        old_s, old = best_of(argpartition_top_k, scores)
        if not np.array_equal(new, old):
            raise SystemExit(f"top_k and the argpartition selection disagree at {n_items} items")
        results.append({"items": n_items, "rows": args.rows, "top_k_s": round(new_s, 4),
                        "argpartition_s": round(old_s, 4), "speedup": round(old_s / new_s, 1)})
        print(f"{n_items:>9,} items x {args.rows} rows: top_k {new_s:.3f} s, argpartition {old_s:.3f} s, "
              f"{old_s / new_s:.1f}x", flush=True)
    out = {"results": results}
    if args.validation:
        out["validation"] = validation_seconds(args.validation, n_items, rng)
    if args.json:
        write_json(args.json, out)
    return 0


def validation_seconds(n_users: int, n_items: int, rng: np.random.Generator) -> dict:
    """Seconds of `evaluate_scores` (NDCG@10, full ranking) with each selection, same scores."""
    import pandas as pd
    import scipy.sparse as sp

    from shoprec.data.dataset import Dataset
    from shoprec.data.schema import Interactions
    from shoprec.data.vocab import Vocabulary
    from shoprec.evaluate.protocol import evaluate_scores

    per_user = 10
    users = np.repeat(np.arange(n_users), per_user)
    frame = pd.DataFrame({"user": users.astype(str), "item": rng.integers(0, n_items, len(users)).astype(str),
                          "event": "view", "timestamp": np.tile(np.arange(per_user), n_users)})
    history = Dataset.from_interactions(Interactions.from_frame(frame, "synthetic"),
                                        items=Vocabulary(np.arange(n_items).astype(str), "item"))
    targets = sp.csr_matrix((np.ones(n_users), (np.arange(n_users), rng.integers(0, n_items, n_users))),
                            shape=(history.n_users, n_items))
    user_vectors = rng.standard_normal((history.n_users, 64), dtype=np.float32)
    item_vectors = rng.standard_normal((n_items, 64), dtype=np.float32)

    def score(rows: np.ndarray) -> np.ndarray:
        return user_vectors[rows] @ item_vectors.T

    out = {"users": n_users, "items": n_items}
    for label, select in (("top_k", top_k), ("argpartition", argpartition_top_k)):
        original, metrics.top_k = metrics.top_k, select
        try:
            t0 = time.perf_counter()
            result = evaluate_scores(score, history, targets, (10,))
            out[f"{label}_s"] = round(time.perf_counter() - t0, 1)
            out[f"{label}_ndcg"] = result.metrics["NDCG@10"]
        finally:
            metrics.top_k = original
        print(f"validation of {n_users:,} shoppers at {n_items:,} items with {label}: {out[f'{label}_s']} s", flush=True)
    if out["top_k_ndcg"] != out["argpartition_ndcg"]:
        raise SystemExit("the two selections gave different NDCG@10")
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
