"""Write a synthetic shop: a behaviour log and a catalogue at a chosen size (for scale runs).

    python scripts/make_shop.py --events 1000000 --items 10000 --out /tmp/shop-1m

What makes it shop-like (all vectorised; 10M events take about a minute):
- a catalogue of `--items` products in items/50 categories, each with a title ("<adjective>
  <noun> <number>", the noun fixed per category, so titles carry the category) and a log-normal
  price around a category-level mean;
- item popularity that follows a power law inside each category (Zipf exponent 1.1) and a
  power law over categories;
- shoppers (events / 25 by default) with one to three favourite categories and a Zipf-like
  activity level; their events come in sessions (a few to a few dozen events, mostly within the
  favourite categories, 15% anywhere), spread over 180 days in time order;
- a funnel: every event is a view; 12% of views are followed by an add-to-cart of the same item,
  and 35% of carts by a purchase, each a few minutes later.

Writes `events.csv.gz` (user,item,event,timestamp) and `catalogue.csv` (item,title,category,
price) to `--out`; `shoprec evaluate --data OUT/events.csv.gz --format csv` reads them.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ADJECTIVES = np.array(["classic", "compact", "deluxe", "eco", "family", "folding", "handmade", "large", "light",
                       "mini", "modern", "organic", "portable", "premium", "retro", "slim", "smart", "soft",
                       "sturdy", "vintage"])
NOUNS = np.array(["backpack", "blender", "candle", "chair", "coffee mug", "cushion", "desk lamp", "dress", "drill",
                  "garden hose", "headphones", "jacket", "kettle", "notebook", "plant pot", "rug", "scarf",
                  "sneakers", "teapot", "toy car", "umbrella", "wallet", "watch", "yoga mat"])
DAY = 86_400


def catalogue(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    n_cats = max(1, n_items // 50)
    category = np.sort(rng.integers(0, n_cats, size=n_items))
    noun = NOUNS[category % len(NOUNS)]
    adjective = ADJECTIVES[rng.integers(0, len(ADJECTIVES), size=n_items)]
    title = np.char.add(np.char.add(np.char.add(adjective, " "), noun), np.char.add(" ", np.arange(n_items).astype(str)))
    price = np.round(np.exp(rng.normal(np.log(5 + category % 40 * 3.0), 0.5)), 2)
    return pd.DataFrame({"item": np.char.add("p", np.arange(n_items).astype(str)), "title": title,
                         "category": np.char.add("cat", category.astype(str)), "price": price})


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def behaviour(n_events: int, items: pd.DataFrame, n_shoppers: int, rng: np.random.Generator) -> pd.DataFrame:
    """About n_events rows: views in sessions, then the carts and purchases the funnel adds."""
    n_views = int(n_events / (1 + 0.12 + 0.12 * 0.35))
    cats = items["category"].str[3:].astype(int).to_numpy()
    n_cats = int(cats.max()) + 1
    starts = np.searchsorted(cats, np.arange(n_cats + 1))  # items of category c: starts[c]:starts[c+1]
    sizes = np.diff(starts)
    # Shoppers: activity (Zipf-like), 1-3 favourite categories drawn by category popularity.
    activity = rng.permutation(zipf_weights(n_shoppers, 0.8))
    shopper = rng.choice(n_shoppers, size=n_views, p=activity)
    cat_pop = rng.permutation(zipf_weights(n_cats, 0.9))
    favourites = rng.choice(n_cats, size=(n_shoppers, 3), p=cat_pop)
    n_fav = rng.integers(1, 4, size=n_shoppers)
    pick = rng.integers(0, 3, size=n_views) % n_fav[shopper]
    category = favourites[shopper, pick]
    anywhere = rng.random(n_views) < 0.15
    category[anywhere] = rng.choice(n_cats, size=int(anywhere.sum()), p=cat_pop)
    # Inside a category, a power law over its items (rank by a fixed shuffle of the category).
    u = rng.random(n_views)
    rank = np.minimum((sizes[category] * u ** 2.2).astype(np.int64), sizes[category] - 1)  # heavy head
    item = starts[category] + rank
    # Time: each shopper's events in time order, grouped into sessions of a few minutes each.
    order = np.lexsort((rng.random(n_views), shopper))
    shopper, item = shopper[order], item[order]
    first = np.r_[True, shopper[1:] != shopper[:-1]]
    new_session = first | (rng.random(n_views) < 0.12)
    session_id = np.cumsum(new_session) - 1
    opens = np.flatnonzero(new_session)  # the first event of each session
    start = rng.integers(0, 180 * DAY, size=len(opens))
    start = start[np.lexsort((start, shopper[opens]))]  # a shopper's sessions follow each other in time
    ts = start[session_id] + 45 * (np.arange(n_views) - opens[session_id])
    views = pd.DataFrame({"user": shopper, "item": item, "event": "view", "timestamp": ts})
    carts = views[rng.random(n_views) < 0.12].assign(event="cart")
    carts["timestamp"] += rng.integers(30, 600, size=len(carts))
    purchases = carts[rng.random(len(carts)) < 0.35].assign(event="purchase")
    purchases["timestamp"] += rng.integers(60, 1800, size=len(purchases))
    log = pd.concat([views, carts, purchases], ignore_index=True).sort_values(["user", "timestamp"], kind="stable")
    log["user"] = np.char.add("s", log["user"].to_numpy().astype(str))
    log["item"] = items["item"].to_numpy()[log["item"].to_numpy()]
    log["timestamp"] += 1_700_000_000
    return log.reset_index(drop=True)


def make_shop(n_events: int, n_items: int, n_shoppers: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    items = catalogue(n_items, rng)
    return behaviour(n_events, items, n_shoppers or max(100, n_events // 25), rng), items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--shoppers", type=int, help="default: events / 25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.events < 1000 or args.items < 100:
        parser.error("--events must be at least 1000 and --items at least 100")
    t0 = time.perf_counter()
    log, items = make_shop(args.events, args.items, args.shoppers, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "events.csv.gz", "wt", compresslevel=1) as fh:
        log.to_csv(fh, index=False)
    items.to_csv(out / "catalogue.csv", index=False)
    print(f"{len(log):,} events of {log['user'].nunique():,} shoppers on {len(items):,} items "
          f"({(log['event'] == 'purchase').sum():,} purchases) written to {out} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
