"""Item cold start: can a model recommend products nobody has interacted with yet?

    python benchmarks/cold_start.py [--datasets retail,games] [--seeds 0,1,2] [--fraction 0.1]
                                    [--k 20] [--cache-dir DIR] [--json FILE]

Protocol (`shoprec.models.content.hold_out_items`): a seeded random 10% of the items that have
events are held out of training entirely. For every user who interacted with a held-out item and
has at least one training event, all catalogue items outside their training history are ranked,
and Recall@20 = (their held-out items in the top 20) / (their held-out items). A second column
ranks only the held-out items ("which new product?"). Means (and standard deviations) over seeds.

Methods, all fitted on the training part only:
  text          TextContentRecommender: MiniLM "title. category" vectors, cosine to the shopper's
                last 10 items weighted by recency (defaults, not tuned on these figures).
  popularity    distinct training users per item. Held-out items have no training events, so
                popularity gives them no signal: they tie at zero, and ties are broken at random
                (seeded), so among held-out items it is a random ranking.
  category-pop  popularity with a category backoff: an item with no training events scores
                the mean training popularity of the items in its catalogue category (catalogue
                data, known at training time). Only where the catalogue has categories: the demo
                shop's are read from the description; the Games titles have none.
  random        uniform random scores.

Data: the bundled Online Retail demo shop (`load_demo()`) and Amazon Games (LLMRank, titles from
Games.item) from ../shared/datasets. Embeddings are cached (`--cache-dir`, default
$SHOPREC_CACHE/text or ~/.cache/shoprec/text); the first run embeds ~20k titles (about a
minute on 2 cores), later runs read them back.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, RESULTS, table, write_json

DATASET_NAMES = ("retail", "games")
METHODS = ("text", "category-pop", "popularity", "random")


def load_dataset(name: str):
    """The dataset as a shoprec Dataset with its catalogue."""
    from shoprec.data.readers import load, load_demo

    if name == "retail":
        return load_demo().dataset()
    path = DATASETS / "amazon-games-llmrank" / "Games-6k.test.inter.gz"
    if not path.exists():
        sys.exit(f"Amazon Games not found at {path}; set SHOPREC_DATASETS to ../shared/datasets")
    return load(path, "llmrank").dataset()


def jittered(scores_fn, seed: int):
    """Scores plus seeded noise in [0, 0.5): breaks ties among integer popularity counts at random."""

    def score(users: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores_fn(users), dtype=np.float64)
        rng = np.random.default_rng([seed, int(users[0]) if len(users) else 0])
        return scores + 0.5 * rng.random(scores.shape)

    return score


def category_popularity(train) -> np.ndarray | None:
    """Own training popularity, or for items without events their category's mean; None without categories."""
    if train.catalogue is None:
        return None
    categories = np.asarray(train.catalogue.lookup(train.items.ids, "category"), dtype=object)
    if not (categories != "").any():
        return None
    pop = train.item_popularity().astype(np.float64)
    codes, uniques = _factorize(categories)
    warm = pop > 0
    sums = np.bincount(codes[warm], weights=pop[warm], minlength=len(uniques))
    counts = np.bincount(codes[warm], minlength=len(uniques))
    mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    backoff = np.where(categories != "", mean[codes], 0.0)
    return np.where(warm, pop, backoff)


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniques, codes = np.unique(values.astype(str), return_inverse=True)
    return codes.reshape(-1), uniques


def run_seed(data, seed: int, fraction: float, k: int, cache_dir: str | None) -> dict:
    from shoprec.evaluate.cold_start import cold_start_evaluate, hold_out_items
    from shoprec.models.content import TextContentRecommender
    from shoprec.models.popularity import Popularity, RandomRecommender

    split = hold_out_items(data, fraction=fraction, seed=seed)
    t0 = time.perf_counter()
    text = TextContentRecommender(cache_dir=cache_dir).fit(split.train)
    text_fit_s = time.perf_counter() - t0
    pop = Popularity().fit(split.train)
    rand = RandomRecommender(seed=seed).fit(split.train)
    score_fns = {
        "text": text.score_users,
        "popularity": jittered(pop.score_users, seed),
        "random": rand.score_users,
    }
    cat_pop = category_popularity(split.train)
    if cat_pop is not None:
        score_fns["category-pop"] = jittered(
            lambda users: np.broadcast_to(cat_pop, (len(users), len(cat_pop))), seed
        )
    out: dict = {
        "seed": seed,
        "held_out_items": len(split.held_out),
        "targets": int(split.targets.nnz),
        "text_fit_s": round(text_fit_s, 2),
        "methods": {},
    }
    for name, fn in score_fns.items():
        every = cold_start_evaluate(fn, split, k=(k,), candidates="all")
        among = cold_start_evaluate(fn, split, k=(k,), candidates="held_out")
        out["users"] = every.n_users
        out["methods"][name] = {
            f"Recall@{k}": every.metrics[f"Recall@{k}"],
            f"HR@{k}": every.metrics[f"HR@{k}"],
            f"Recall@{k} among held-out": among.metrics[f"Recall@{k}"],
        }
    return out


def summarise(dataset: str, data, runs: list[dict], k: int) -> list[dict]:
    rows = []
    for method in METHODS:
        per_seed = [r["methods"][method] for r in runs if method in r["methods"]]
        if not per_seed:
            continue
        row = {"dataset": dataset, "method": method}
        for metric in per_seed[0]:
            values = np.array([m[metric] for m in per_seed])
            row[metric] = float(values.mean())
            row[f"{metric} sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row.update(
            users=data.n_users,
            items=data.n_items,
            held_out=runs[0]["held_out_items"],
            evaluated=int(np.mean([r["users"] for r in runs])),
        )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASET_NAMES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--cache-dir", default=None, help="text embedding cache (default: $SHOPREC_CACHE/text)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASET_NAMES))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {list(DATASET_NAMES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    k = args.k

    rows, details = [], {}
    for name in names:
        t0 = time.perf_counter()
        data = load_dataset(name)
        load_s = time.perf_counter() - t0
        runs = []
        for seed in seeds:
            runs.append(run_seed(data, seed, args.fraction, k, args.cache_dir))
            print(f"{name} seed {seed}: text fit {runs[-1]['text_fit_s']} s", file=sys.stderr)
        rows += summarise(name, data, runs, k)
        details[name] = {"load_s": round(load_s, 2), "runs": runs}

    columns = ["dataset", "method", f"Recall@{k}", f"Recall@{k} sd", f"HR@{k}",
               f"Recall@{k} among held-out", "users", "items", "held_out", "evaluated"]
    print(
        f"Item cold start: {args.fraction:.0%} of items held out of training, "
        f"mean over seeds {seeds}; ranking all items unless noted"
    )
    print(table(rows, columns))
    payload = {
        "benchmark": "cold_start",
        "command": "python benchmarks/cold_start.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "fraction": args.fraction,
        "k": k,
        "seeds": seeds,
        "rows": rows,
        "details": details,
    }
    write_json(RESULTS / "cold_start.json", payload)
    if args.json:
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
