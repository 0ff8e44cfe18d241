"""Validation NDCG@10 of model configurations on the privacy report's split, never its test items.

    python benchmarks/privacy_gram_validation.py DATASET '[["dp-ease", {"target_epsilon": 8}], ...]'

DATASET is a name from benchmarks/common.py (ml-1m, games). The split is the report's:
leave-one-out, 20% of shoppers held out (seed 0); models are fitted on the members' training
events and scored, for every shopper, on their validation item (the second-to-last event) from
their training events, full ranking with seen items excluded (NDCG@10, and coverage@10 of the
validation rankings). This is how the Gram models'
settings were chosen (benchmarks/results/privacy-gram-validation.log); the test items stay unseen.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import dataset_path

from shoprec.data.readers import load
from shoprec.data.split import leave_one_out
from shoprec.models.registry import make_model
from shoprec.privacy.mia import split_members


def validation_ndcg(model, split, block: int = 1000) -> tuple[float, float]:
    """NDCG@10 of each shopper's validation item given their training events (full ranking),
    and coverage@10: the share of the catalogue in at least one shopper's top 10."""
    valid = split.valid
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    targets = valid.indices[valid.indptr[users]]
    seen_all = split.train.matrix(binary=True)
    gains, shown = [], np.zeros(seen_all.shape[1], bool)
    for s in range(0, len(users), block):
        u = users[s : s + block]
        scores = np.asarray(model.score_users(u, history=split.train), np.float64)
        scores[seen_all[u].nonzero()] = -np.inf
        t = targets[s : s + block]
        own = scores[np.arange(len(u)), t]
        # Ties go to the lower item index, as shoprec.evaluate's top_k breaks them.
        lower = np.arange(scores.shape[1])[None, :] < t[:, None]
        rank = (scores > own[:, None]).sum(axis=1) + ((scores == own[:, None]) & lower).sum(axis=1)
        gains.append(np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0))
        shown[np.argpartition(-scores, 10, axis=1)[:, :10].ravel()] = True
    return float(np.concatenate(gains).mean()), float(shown.mean())


def main(argv: list[str]) -> int:
    name, configs = argv[0], json.loads(argv[1])
    path, fmt = dataset_path(name)
    data = load(path, fmt).dataset()
    split = leave_one_out(data)
    members = split_members(data, 0.2, 0)
    train = split.train.subset(members[split.train.user_idx], f"{data.name}[members]")
    for model_name, params in configs:
        t0 = time.perf_counter()
        model = make_model(model_name, **params).fit(train)
        ndcg, coverage = validation_ndcg(model, split)
        print(f"{name} {model_name} {params} valid NDCG@10 {ndcg:.4f} coverage@10 {coverage:.3f} "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
