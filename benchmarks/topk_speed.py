"""Top-k selection of the evaluator (`shoprec.evaluate.metrics.top_k`) against np.argpartition.

    python benchmarks/topk_speed.py [--rows 1024] [--items 10000,100000,1000000] [--json FILE]

For each catalogue width, a block of `rows` users' float32 scores (normal noise, the first 50
items of every row at -inf as if seen) is ranked to the top 10 by `top_k` (torch's top-k
selection, then the tie rule) and by the same tie rule after np.argpartition of the negated
scores (what `top_k` did before), in this process; both must return the same items. Prints the
best of three timings of each and their ratio. Block scoring and ranking are what full-ranking
evaluation and the training loop's validation spend their time on at a million items.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_json

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
    if args.json:
        write_json(args.json, {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
