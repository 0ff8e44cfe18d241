"""`shoprec ope` on a log the service wrote itself, against a click model whose truth is known.

    python benchmarks/ope_service.py [--shoppers 150] [--slates 4] [--epsilon 0.2] [--db PATH]
                                     [--weight-rule fixed|fitted] [--seed 0] [--json FILE]

The service (`create_app`, SQLite, item-kNN on the bundled Online Retail shop, explore budget 3;
`--weight-rule fixed`: epsilon-greedy at --epsilon; `--weight-rule fitted`: the default served
rule, epsilon-greedy slots at a per-shopper, per-request weight) serves slates of 10 through its HTTP API in
process to demo shoppers whose last 8 events were imported. Each shown item is clicked with
probability 0.25 / (slot + 1), times 0.6 when it was an exploratory item, and the click is sent
back with the slate's impression id. Then `shoprec ope` estimates logged, greedy and fixed:EPS
from the database, and the click model's true value of each target is printed beside it:
sum over slots of 0.25 / (slot + 1) * (1 - 0.4 P(the target explores the slot)); for the
fitted rule's own ("logged") value, its mean over the slates at each slate's logged weight.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))  # the in-process ASGI client of the tests

ADMIN = {"X-API-Key": "bench-admin-key-0123456789abcdef"}
K, BASE, EXPLORED_FACTOR = 10, 0.25, 0.6


def fill(url: str, shoppers: int, slates: int, epsilon: float, seed: int, weight_rule: str = "fixed") -> int:
    """Serve and click through the API; returns the clicks sent."""
    from serve_helpers import ASGIClient

    from shoprec.data.readers import load_demo
    from shoprec.models.knn import ItemKNN
    from shoprec.privacy.pseudonym import Pseudonymizer
    from shoprec.serve.app import create_app
    from shoprec.serve.settings import ServeSettings

    data = load_demo().dataset()
    settings = ServeSettings(database_url=url, admin_key=ADMIN["X-API-Key"], weight_rule=weight_rule, epsilon=epsilon,
                             explore_budget=3, exploration=None)
    client = ASGIClient(create_app(settings, pseudonymizer=Pseudonymizer.from_secret("b" * 32, key_id="bench"),
                                   model=ItemKNN(neighbors=50).fit(data)))
    frame = data.catalogue.frame
    items = [{"item_id": r.item, "title": r.title, "category": r.category,
              "price": float(r.price) if r.price == r.price else None} for r in frame.itertuples()]
    for i in range(0, len(items), 1000):
        assert client.post("/v1/items/batch", json={"items": items[i:i + 1000]}, headers=ADMIN).status_code == 200
    rng = np.random.default_rng(seed)
    clicks = 0
    for u in rng.choice(data.n_users, shoppers, replace=False):
        sid = str(data.users.ids[u])
        history = data.item_idx[data.user_idx == u][-8:]
        batch = [{"event_id": f"h{sid}-{j}", "shopper_id": sid, "item_id": str(data.items.ids[i]), "event": "view"}
                 for j, i in enumerate(history)]
        assert client.post("/v1/events/batch", json={"events": batch}, headers=ADMIN).status_code == 200
        for _ in range(slates):
            body = client.post("/v1/recommendations", json={"k": K, "shopper_id": sid}, headers=ADMIN).json()
            for j, item in enumerate(body["items"]):
                if rng.random() < BASE / (j + 1) * (EXPLORED_FACTOR if item["explored"] else 1.0):
                    clicks += 1
                    r = client.post("/v1/events", headers=ADMIN, json={
                        "event_id": f"c{clicks}", "shopper_id": sid, "item_id": item["item_id"], "event": "view",
                        "impression_id": body["impression_id"]})
                    assert r.status_code == 200, r.text
    client.close()
    return clicks


def truth(epsilon: float) -> float:
    """The click model's value of epsilon-greedy at `epsilon` on slates of K (every slate has
    more outside candidates than the budget in this shop)."""
    from shoprec.explore.offpolicy import _pattern_probabilities

    p_explore, _ = _pattern_probabilities(np.array([epsilon]), K, 3)
    rate = BASE / (np.arange(K) + 1)
    return float((rate * (1 - (1 - EXPLORED_FACTOR) * p_explore[0])).sum())


def slate_weights(url: str) -> np.ndarray:
    """Each logged slate's exploration weight, as the service stored it (read-only)."""
    from shoprec.serve.storage.logged import read_logged_slates

    return np.asarray(read_logged_slates(url).weight, np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=150)
    parser.add_argument("--slates", type=int, default=4, help="slates per shopper")
    parser.add_argument("--epsilon", type=float, default=0.2, help="the service's fixed exploration rate")
    parser.add_argument("--weight-rule", choices=("fixed", "fitted"), default="fixed",
                        help="the service's rule: fixed epsilon, or the default fitted per-shopper weight")
    parser.add_argument("--db", default=None, help="keep the database here (default: a temporary file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from shoprec.cli import main as shoprec

    targets = ["logged", "greedy", "fixed:0.05", "fixed:0.5"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{args.db or Path(tmp) / 'ope.db'}"
        clicks = fill(url, args.shoppers, args.slates, args.epsilon, args.seed, args.weight_rule)
        rule = f"fixed rule at {args.epsilon}" if args.weight_rule == "fixed" else "fitted rule"
        print(f"{args.shoppers} shoppers x {args.slates} slates of {K}, {rule}: {clicks} clicks")
        logged_weights = slate_weights(url)
        out = Path(args.json) if args.json else Path(tmp) / "ope.json"
        code = shoprec(["ope", "--db", url, "--policy", ",".join(targets), "--json", str(out), "--quiet"])
        if code:
            return code
    values = {"logged": float(np.mean([truth(w) for w in logged_weights])), "greedy": truth(0.0),
              "fixed:0.05": truth(0.05), "fixed:0.5": truth(0.5)}
    print(f"\nlogged weights: mean {np.mean(logged_weights):.3f}, range [{np.min(logged_weights):.3f}, "
          f"{np.max(logged_weights):.3f}] over {len(logged_weights)} slates")
    print("true value of the click model: " + ", ".join(f"{t} {values[t]:.4f}" for t in targets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
