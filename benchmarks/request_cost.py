"""Where a Transformer recommendation request's CPU goes, and what batching requests would save.

    python benchmarks/request_cost.py [--workdir DIR] [--service-runs 2] [--json FILE]

Builds the synthetic 100,000-item shop of `benchmarks/load.py` and trains its Transformer (two
minutes, sampled softmax, 50 events read), or reuses them from `--workdir` when a previous run
left them there. Then, in one process with one BLAS thread:

- encoding a request's explanation variants (the history and the 10 histories with one of its
  last events removed), for histories of 12, 30 and 50 events: as the service does now (padded
  only to the longest history) and padded to max_len (what it did before 2026-12-04);
- the same for 8 requests at once against 8 separate calls (what batching concurrent requests
  through the model would save), and scoring 8 encoded rows over the catalogue at once against
  one by one;

and, with `--service-runs N`, N runs of `shoprec serve --workers 2` under 16 keep-alive clients
for 10 s: requests/s and the service's CPU per request (user and system time of the worker
processes, read from /proc, over the requests answered).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def timed(fn, repeats: int = 300) -> float:
    """Milliseconds per call, after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - t0) / repeats


def model_costs(model) -> dict:
    import torch

    from shoprec.models.neural.sequences import UNKNOWN_GAP, pad_left
    from shoprec.serve.explain import removal_histories

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n_items, width = model.net_.item_emb.num_embeddings - 1, model.config_.max_len
    out: dict = {"encode": {}}

    def padded(histories, events):  # the encoding padded to max_len, as before the change
        items = torch.as_tensor(pad_left(histories, width, 1))
        evs = torch.as_tensor(pad_left(events, width, 1))
        with torch.no_grad():
            return model.net_(items, evs, torch.where(items > 0, UNKNOWN_GAP, 0))[:, -1]

    for length in (12, 30, 50):
        _, histories, events = removal_histories(rng.integers(0, n_items, length), np.ones(length, np.int8))
        out["encode"][length] = {"variants": len(histories),
                                 "trimmed_ms": timed(lambda h=histories, e=events: model.encode_histories(h, e)),
                                 "max_len_ms": timed(lambda h=histories, e=events: padded(h, e))}
    requests = [removal_histories(rng.integers(0, n_items, 12), np.ones(12, np.int8)) for _ in range(8)]
    one = timed(lambda: model.encode_histories(requests[0][1], requests[0][2]))
    all_h = [h for r in requests for h in r[1]]
    all_e = [e for r in requests for e in r[2]]
    eight = timed(lambda: model.encode_histories(all_h, all_e))
    rows = model.encode_histories(all_h, all_e)[:: len(requests[0][1])]
    score_one = timed(lambda: model.score_encoded(rows[:1]))
    score_eight = timed(lambda: model.score_encoded(rows))
    out["batching"] = {"encode_alone_ms": one, "encode_in_8_per_request_ms": eight / 8,
                       "score_alone_ms": score_one, "score_in_8_per_request_ms": score_eight / 8}
    return out


def service_cpu(setup: dict, runs: int, clients: int = 16, seconds: float = 10.0) -> list[dict]:
    import load

    def tree_cpu(pid: int) -> tuple[float, float]:
        children = subprocess.run(["pgrep", "-P", str(pid)], check=False, capture_output=True,
                                  text=True).stdout.split()
        user = system = 0
        for p in [pid, *map(int, children)]:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            user, system = user + int(fields[11]), system + int(fields[12])
        tick = os.sysconf("SC_CLK_TCK")
        return user / tick, system / tick

    rng = np.random.default_rng(1)
    shoppers = rng.choice(setup["shoppers"], size=2000, replace=False)
    bodies = [json.dumps({"shopper_id": str(s), "k": 20}).encode() for s in shoppers]
    headers = f"X-API-Key: {load.KEY}\r\n".encode()
    results = []
    for _ in range(runs):
        port = load.free_port()
        proc = load.start_service(setup, "transformer", port, workers=2)
        try:
            load.wait_ready(proc, port, "/v1/health")
            load.run_load(port, "/v1/recommendations", headers, bodies, clients, 3)
            u0, s0 = tree_cpu(proc.pid)
            g0 = resource.getrusage(resource.RUSAGE_SELF)
            r = load.run_load(port, "/v1/recommendations", headers, bodies, clients, seconds, warmup=0.01)
            u1, s1 = tree_cpu(proc.pid)
            g1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            load.stop(proc)
        n = r["requests"]
        r.update(user_ms_per_request=1000 * (u1 - u0) / n, system_ms_per_request=1000 * (s1 - s0) / n,
                 generator_ms_per_request=1000 * ((g1.ru_utime + g1.ru_stime) - (g0.ru_utime + g0.ru_stime)) / n)
        results.append(r)
        print(f"  2 workers, {clients} clients: {r['rps']:.1f} req/s, service CPU {r['user_ms_per_request']:.2f} user + "
              f"{r['system_ms_per_request']:.2f} system ms per request, load generator "
              f"{r['generator_ms_per_request']:.2f}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=None, help="where the shop and model are built (reused when present)")
    parser.add_argument("--service-runs", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import tempfile

    import load

    from shoprec.serve.engine import ServingEngine
    from shoprec.serve.storage import Store

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="shoprec-cost-"))
    saved = workdir / "setup.json"
    if saved.exists():
        setup = json.loads(saved.read_text())
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        setup = load.prepare("100000", workdir, print, ("transformer",))
        saved.write_text(json.dumps(setup))
    store = Store(setup["url"])
    engine = ServingEngine()
    engine.set_catalogue(store.all_items())
    store.dispose()
    model = engine.load_model(setup["models"]["transformer"]).model
    costs = model_costs(model)
    for length, c in costs["encode"].items():
        print(f"history of {length}: {c['variants']} variants encoded in {c['trimmed_ms']:.3f} ms "
              f"(padded to max_len: {c['max_len_ms']:.3f} ms)")
    b = costs["batching"]
    print(f"8 requests at once: encoding {b['encode_in_8_per_request_ms']:.3f} ms per request "
          f"(alone {b['encode_alone_ms']:.3f}); scoring {b['score_in_8_per_request_ms']:.3f} "
          f"(alone {b['score_alone_ms']:.3f})")
    if args.service_runs:
        costs["service"] = service_cpu(setup, args.service_runs)
    if args.json:
        from common import write_json

        write_json(args.json, costs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
