"""How much the private release models' test NDCG@10 moves with the noise seed (no choice rests on it).

    python benchmarks/privacy_gram_seeds.py [--dataset ml-1m] [--seeds 0,1,2,3,4] [--epsilons 2,8]
                                            [--models dp-ease,dp-item-knn]

The privacy report's split and members (seed 0), the report's private settings; only the seed
of the Gaussian noise changes. Prints NDCG@10 and coverage@10 per seed and their mean and
standard deviation, and the share of the non-private counterpart (EASE / ItemKNN / implicit ALS,
run once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset_path

from shoprec.data.readers import load
from shoprec.data.split import leave_one_out
from shoprec.evaluate.protocol import evaluate
from shoprec.models.registry import make_model
from shoprec.privacy.mia import split_members
from shoprec.privacy.report import DEFAULT_PARAMS, REFERENCE_PARAMS


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--epsilons", default="2,8")
    p.add_argument("--models", default="dp-ease,dp-item-knn")
    args = p.parse_args(argv)
    path, fmt = dataset_path(args.dataset)
    data = load(path, fmt).dataset()
    split = leave_one_out(data)
    members = split_members(data, 0.2, 0)
    train = split.train.subset(members[split.train.user_idx], f"{data.name}[members]")
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in (m for m in args.models.split(",") if m):
        ref = evaluate(make_model(name, **REFERENCE_PARAMS[name]).fit(train), split, k=(10,)).metrics["NDCG@10"]
        for eps in (float(e) for e in args.epsilons.split(",")):
            ndcg, cov = [], []
            for seed in seeds:
                model = make_model(name, **DEFAULT_PARAMS[name], target_epsilon=eps, seed=seed).fit(train)
                m = evaluate(model, split, k=(10,)).metrics
                ndcg.append(m["NDCG@10"])
                cov.append(m["coverage@10"])
            print(f"{args.dataset} {name} epsilon={eps:g}: NDCG@10 {np.mean(ndcg):.4f} ± {np.std(ndcg, ddof=1):.4f} "
                  f"({100 * np.mean(ndcg) / ref:.0f}% of {ref:.4f}; per seed {[round(x, 4) for x in ndcg]}), "
                  f"coverage@10 {np.mean(cov):.3f} ± {np.std(cov, ddof=1):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
