"""An online A/B test in the service, with simulated shoppers as the traffic.

    python benchmarks/ab_service.py [--weight-rule dynamic|learned] [--shoppers 400] [--rounds 30]
                                    [--seed 0] [--json FILE]

The store simulator (`shoprec.simulation.store`, calibrated on the bundled Online Retail shop:
hidden true preferences, position bias, fatigue, drift) supplies the shoppers; the service
(`create_app`, SQLite, item-kNN trained on the shop, the shoppers' histories imported) serves
them through its HTTP API in process. An experiment splits the shoppers 50/50 between greedy
(exploration weight 0) and the service's weight rule (`--weight-rule`). Every round each shopper
asks for a slate of 10; the simulator decides which shown items they click (examination
1/log2(slot + 2) times their true click probability, fatigue included) and the clicks are sent
back as events with the slate's impression id, which is what the exploration learner and the
experiment report read. At the end, `GET /v1/experiments/{id}` gives per-arm click-through with
delta-method 95% intervals and the difference; the simulator's own count of clicks per arm is
printed beside it as the truth the report should agree with.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))  # the in-process ASGI client of the tests

ADMIN = {"X-API-Key": "bench-admin-key-0123456789abcdef"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weight-rule", default="dynamic")
    parser.add_argument("--shoppers", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    from serve_helpers import ASGIClient

    from shoprec.data.readers import load_demo
    from shoprec.models.knn import ItemKNN
    from shoprec.privacy.pseudonym import Pseudonymizer
    from shoprec.serve.app import create_app
    from shoprec.serve.settings import ServeSettings
    from shoprec.simulation.store import SimulatedStore, StoreConfig

    t0 = time.perf_counter()
    data = load_demo().dataset()
    sim = SimulatedStore.build(data, StoreConfig(n_shoppers=args.shoppers, new_item_fraction=0.0), seed=args.seed)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        settings = ServeSettings(database_url=f"sqlite:///{tmp}/ab.db", admin_key=ADMIN["X-API-Key"],
                                 rate_limit_per_s=0, retrain_every_s=0, weight_rule=args.weight_rule,
                                 latency_budget_ms=0)
        pseudo = Pseudonymizer.from_secret("bench-pseudonym-secret-0123456789abcdef")
        client = ASGIClient(create_app(settings, pseudonymizer=pseudo, model=ItemKNN().fit(data)))
        cat = data.catalogue.frame
        items = [{"item_id": str(i), "title": str(t), "category": str(c)}
                 for i, t, c in zip(cat["item"], cat["title"], cat["category"])]
        for start in range(0, len(items), 1000):
            client.post("/v1/items/batch", json={"items": items[start:start + 1000]}, headers=ADMIN).raise_for_status()
        store = client.app.state.service.store
        raw_of = {str(u): str(u) for u in sim.shopper_ids}
        rows = []
        for u in data.users.index(np.asarray(sim.shopper_ids, dtype=str)):
            hist = data.history(u)
            rows += [{"event_id": f"h{u}-{j}", "shopper": pseudo.pseudonymize(str(data.users.ids[u])),
                      "item_id": str(data.items.ids[i]), "event": "purchase", "ts": 1_000_000 + j, "value": None,
                      "impression_id": None} for j, i in enumerate(hist)]
        store.add_events(rows, returning=False)
        client.post("/v1/experiments", json={"id": "ab", "variants": {"greedy": {"exploration": 0.0},
                                                                      args.weight_rule: {}}},
                    headers=ADMIN).raise_for_status()
        position = {str(i): n for n, i in enumerate(data.items.ids)}
        examine = 1.0 / np.log2(np.arange(args.k) + 2)
        exposure = np.zeros((sim.n_shoppers, sim.n_items))
        truth: dict[str, list[int]] = {}
        n_event = 0
        for round_ in range(args.rounds):
            p_click = sim.click_probability(round_, exposure)
            exposure *= sim.config.fatigue_recovery
            for s, raw in enumerate(sim.shopper_ids):
                body = client.post("/v1/recommendations", json={"shopper_id": raw_of[str(raw)], "k": args.k},
                                   headers=ADMIN).json()
                shown = np.array([position[i["item_id"]] for i in body["items"]])
                exposure[s, shown] += examine[:len(shown)]
                clicked = rng.random(len(shown)) < examine[:len(shown)] * p_click[s, shown]
                variant = body["experiment"]["variant"]
                truth.setdefault(variant, [0, 0])
                truth[variant][0] += 1
                truth[variant][1] += int(clicked.any())
                events = [{"event_id": f"c{(n_event := n_event + 1)}", "shopper_id": raw_of[str(raw)],
                           "item_id": body["items"][j]["item_id"], "event": "view",
                           "impression_id": body["impression_id"]} for j in np.flatnonzero(clicked)]
                if events:
                    client.post("/v1/events/batch", json={"events": events}, headers=ADMIN).raise_for_status()
            print(f"round {round_ + 1}/{args.rounds}: {time.perf_counter() - t0:.0f}s", flush=True)
        report = client.get("/v1/experiments/ab", headers=ADMIN).json()
        client.close()
    for v in report["variants"]:
        ctr = v["click_through"]
        slates, clicked = truth[v["name"]]
        print(f"{v['name']:>10}: {v['shoppers']} shoppers, {v['slates']} slates, click-through "
              f"{ctr['value']:.4f} [{ctr['low']:.4f}, {ctr['high']:.4f}] (simulator: {clicked / slates:.4f})")
    def f(x, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    for c in report["comparisons"]:
        print(f"{c['variant']} - {report['control']} ({c['metric']}): {f(c['difference'], '+.4f')} "
              f"[{f(c['low'], '+.4f')}, {f(c['high'], '+.4f')}], relative {f(c['relative'], '+.1%')}, "
              f"p = {f(c['p_value'], '.4f')}")
    srm = report["sample_ratio"]
    print(f"sample ratio: p = {f(srm['p_value'], '.3f')}, mismatch {srm['mismatch']}; {time.perf_counter() - t0:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"report": report, "simulator_truth": truth, "args": vars(args),
                                               "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
