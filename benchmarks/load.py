"""Load figures of the recommendation service: latency and throughput of POST /v1/recommendations.

    python benchmarks/load.py [--json FILE] [--sizes demo,100000] [--models item-knn,transformer]
                              [--clients 1,16,64] [--duration 10] [--workers 1,2] [--postgres URL]
    python benchmarks/load.py --ann-only            # only the exact-vs-HNSW switch point

For each catalogue (the bundled demo shop, about 4,000 items, and a synthetic 100,000-item shop)
it fills a fresh SQLite database through the library (pseudonymised shoppers), trains each model
on the stored events (the Transformer with sampled softmax and a two-minute budget), starts
`shoprec serve` on loopback in a subprocess, and drives it with 1, 16 and 64 concurrent
keep-alive clients (a small asyncio HTTP/1.1 client, so that the load generator costs little of
the 2 cores) asking for k=20 for random known shoppers: the full path, with per-shopper dynamic
exploration, explanations and impression logging. For each level it also reports the share of
responses the latency budget sent to the cheaper embedding path (read from each response's
`degraded` flag). `--workers 1,2` repeats the service runs with `shoprec serve --workers N`;
`--postgres URL` fills a fresh database on that PostgreSQL server instead of SQLite. Then the same
against a minimal baseline in the same run: the same model file behind a bare ASGI app under the
same uvicorn, with histories in memory, and no validation, auth, database, exploration,
explanations or impression logging. The server is stopped at the end.

It also measures where exact similar-item search becomes slower than FAISS HNSW (`--ann`).

`--json FILE` writes {"service": {size: {clients: {"p50_ms", "p99_ms", "rps", "errors"}}},
"baseline": {...same...}, "ann_switch": {...}, "setup": {...}}.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
KEY = "bench-admin-key-0123456789abcdef"
SECRET = "bench-pseudonym-secret-0123456789abcdef"


# ---- data ---------------------------------------------------------------------------------------
def synthetic_shop(n_items: int, seed: int = 0):
    """n_items in 250 categories; 40,000 shoppers with 12 views each in their 2 favourite
    categories, Zipf-like popularity inside a category. Returns (catalogue rows, event frame)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_cats, n_users, per_user = 250, 40_000, 12
    cat_of = np.arange(n_items) % n_cats
    size = n_items // n_cats
    weights = 1.0 / (1 + np.arange(size)) ** 0.9
    users = np.repeat(np.arange(n_users), per_user)
    fav = rng.integers(0, n_cats, size=(n_users, 2))
    cats = fav[users, rng.integers(0, 2, size=len(users))]
    pos = rng.choice(size, size=len(users), p=weights / weights.sum())
    items = pos * n_cats + cats
    frame = pd.DataFrame({"user": [f"s{u}" for u in users], "item": [f"p{i}" for i in items], "event": "view",
                          "timestamp": 1_700_000_000 + np.tile(np.arange(per_user), n_users) * 60, "value": np.nan})
    prices = np.round(rng.uniform(1, 100, n_items), 2)
    catalogue = [{"item_id": f"p{i}", "title": f"product {i}", "category": f"c{cat_of[i]}",
                  "price": float(prices[i]), "active": True} for i in range(n_items)]
    return catalogue, frame


def demo_shop():
    from shoprec.data.readers import load_demo

    loaded = load_demo()
    cat = loaded.catalogue.frame
    catalogue = [{"item_id": str(i), "title": str(t), "category": str(c),
                  "price": None if np.isnan(p) else float(p), "active": True}
                 for i, t, c, p in zip(cat["item"], cat["title"], cat["category"], cat["price"])]
    frame = loaded.interactions.frame
    frame = frame.assign(event=frame["event"].astype(str))
    return catalogue, frame


MODEL_SETTINGS = {
    "item-knn": {},
    # Sampled softmax: a full softmax over 100,000 items at every position is what a 2-core CPU
    # cannot train in minutes; two minutes of training, 50 recent events read.
    "transformer": {"loss": "sampled", "n_negatives": 512, "max_len": 50, "max_seconds": 120.0, "epochs": 50},
}


def fresh_postgres_database(server_url: str, name: str) -> str:
    """A new, empty database named `name` on the PostgreSQL server of `server_url` (any database
    URL on it); an existing one of that name is dropped first. Returns its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def prepare(name: str, workdir: Path, log, models: tuple[str, ...] = ("item-knn",),
            postgres: str | None = None) -> dict:
    """Fill a database (SQLite in `workdir`, or a fresh database on the `postgres` server) and
    train the models for one catalogue; returns paths and shoppers."""
    from shoprec.privacy.pseudonym import Pseudonymizer
    from shoprec.serve.storage import Store
    from shoprec.serve.training import ModelChoice, train_from_store

    t0 = time.perf_counter()
    catalogue, frame = demo_shop() if name == "demo" else synthetic_shop(int(name))
    folder = workdir / name
    folder.mkdir(parents=True)
    url = fresh_postgres_database(postgres, f"shoprec_load_{name}") if postgres else f"sqlite:///{folder / 'shop.db'}"
    store = Store(url)
    store.migrate()
    for start in range(0, len(catalogue), 10_000):
        store.upsert_items(catalogue[start:start + 10_000])
    pseudo = Pseudonymizer.from_secret(SECRET)
    names = {u: pseudo(u) for u in frame["user"].unique()}
    users, items, events, ts = (frame["user"].to_numpy(), frame["item"].to_numpy(),
                                frame["event"].to_numpy(), frame["timestamp"].to_numpy())
    for start in range(0, len(frame), 50_000):
        stop = min(start + 50_000, len(frame))
        store.add_events([{"event_id": f"b{j}", "shopper": names[users[j]], "item_id": str(items[j]),
                           "event": events[j], "ts": int(ts[j]), "value": None, "impression_id": None,
                           "received_at": int(ts[j])} for j in range(start, stop)], returning=False)
    log(f"  {name}: {len(catalogue):,} items, {len(frame):,} events stored in {time.perf_counter() - t0:.0f}s")
    model_paths = {}
    for model in models:
        t1 = time.perf_counter()
        model_paths[model] = str(train_from_store(store, folder / f"{model}.npz",
                                                  ModelChoice(model, MODEL_SETTINGS.get(model, {}), "benchmark"),
                                                  evaluate=False))
        log(f"  {name}: {model} trained in {time.perf_counter() - t1:.0f}s")
    store.dispose()
    # Histories by raw id, for the baseline (which has no database) and to pick shoppers.
    grouped = frame.groupby("user", sort=False)
    histories = {u: (g["item"].astype(str).tolist()[-200:], g["event"].tolist()[-200:]) for u, g in grouped}
    (folder / "histories.json").write_text(json.dumps(histories))
    return {"url": url, "models": model_paths, "histories": str(folder / "histories.json"),
            "shoppers": list(histories), "n_items": len(catalogue), "n_events": len(frame)}


# ---- servers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(setup: dict, model: str, port: int, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "SHOPREC_PSEUDONYM_KEY": SECRET, "SHOPREC_ADMIN_KEY": KEY,
           "SHOPREC_RATE_LIMIT_PER_S": "0", "SHOPREC_RETRAIN_EVERY_S": "0", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "shoprec.cli", "serve", "--db", setup["url"], "--model", setup["models"][model],
           "--port", str(port), "--workers", str(workers), "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start_baseline(setup: dict, model: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--serve-baseline", setup["models"][model], "--histories", setup["histories"],
           "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(proc: subprocess.Popen, port: int, path: str, timeout: float = 600) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve_baseline(model_path: str, histories_path: str, port: int) -> None:
    """The minimal baseline: the model behind a bare ASGI app (no framework, DB, auth, logging)."""
    import uvicorn

    from shoprec.models.base import Recommender

    model = Recommender.load(model_path)
    histories = json.loads(Path(histories_path).read_text())

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/health":
            payload, status = b"{}", 200
        else:
            req = json.loads(body)
            items, events = histories.get(req["shopper_id"], ([], []))
            recs = model.recommend_history(items, k=req["k"], events=events)
            payload, status = json.dumps({"items": [{"item_id": i, "score": s} for i, s in recs]}).encode(), 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, ws="none")


# ---- load generator -----------------------------------------------------------------------------
async def _client(port: int, path: str, headers: bytes, bodies: list[bytes], deadline: float,
                  latencies: list[float], errors: list[int], degraded: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            body = bodies[rng.integers(len(bodies))]
            request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n").encode() + headers + b"\r\n" + body
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            # Read from each response, so that the share is right with several worker processes.
            if b'"degraded":true' in payload:
                degraded.append(1)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(int(head[9:12]))
    finally:
        writer.close()


def run_load(port: int, path: str, headers: bytes, bodies: list[bytes], clients: int, duration: float,
             warmup: float = 2.0) -> dict:
    async def go(seconds: float, record: bool):
        latencies: list[float] = []
        errors: list[int] = []
        degraded: list[int] = []
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(port, path, headers, bodies, deadline, latencies, errors, degraded, seed)
                               for seed in range(clients)))
        return latencies, errors, len(degraded), time.perf_counter() - t0

    asyncio.run(go(warmup, False))
    latencies, errors, n_degraded, elapsed = asyncio.run(go(duration, True))
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "rps": round(len(ms) / elapsed, 1), "errors": len(errors), "requests": len(ms),
            "degraded_share": round(n_degraded / max(len(ms), 1), 4)}


# ---- ANN switch point ---------------------------------------------------------------------------
def _timed_queries(index, vectors: np.ndarray, queries: np.ndarray) -> tuple[list[set], float]:
    """Top-10 sets of each query row and the median milliseconds per query."""
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(set(index.search(vectors[q], 10)[0].tolist()))
        times.append(time.perf_counter() - t)
    return out, 1000 * float(np.median(times))


def ann_switch(sizes=(2_000, 10_000, 50_000, 100_000, 200_000), dim: int = 64, queries: int = 300,
               budget_ms: float = 1.0, log=print) -> dict:
    """Per-query latency of exact search and HNSW (with build time and recall@10) by catalogue size.

    The switch point is the smallest size at which exact search costs more than `budget_ms` per
    query, a small slice of the 25 ms request budget; below it exact search is fast, perfect and
    needs no build.
    """
    from shoprec.serve.ann import ItemIndex

    rng = np.random.default_rng(0)
    rows = {}
    for n in sizes:
        # Clustered vectors, like item embeddings, rather than uniform noise.
        centres = rng.normal(size=(max(8, n // 400), dim))
        v = centres[rng.integers(len(centres), size=n)] + 0.5 * rng.normal(size=(n, dim))
        v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
        exact = ItemIndex(v, threshold=n + 1)
        t0 = time.perf_counter()
        hnsw = ItemIndex(v, threshold=1)
        build = time.perf_counter() - t0
        qs = rng.integers(n, size=queries)

        truth, exact_ms = _timed_queries(exact, v, qs)
        found, hnsw_ms = _timed_queries(hnsw, v, qs)
        recall = float(np.mean([len(a & b) / 10 for a, b in zip(truth, found)]))
        rows[str(n)] = {"exact_ms": round(exact_ms, 3), "hnsw_ms": round(hnsw_ms, 3),
                        "hnsw_build_s": round(build, 2), "hnsw_recall_at_10": round(recall, 4)}
        log(f"  ann n={n:>7,}: exact {exact_ms:6.3f} ms  hnsw {hnsw_ms:6.3f} ms  "
            f"build {build:5.1f} s  recall@10 {recall:.3f}")
    over = [int(n) for n, r in rows.items() if r["exact_ms"] > budget_ms]
    return {"dim": dim, "budget_ms": budget_ms, "sizes": rows, "switch_at": min(over) if over else None}


# ---- main ---------------------------------------------------------------------------------------
def table(results: dict) -> str:
    lines = [(f"{'catalogue':>10} {'model':>12} {'server':>9} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'req/s':>8} {'errors':>6} {'quick path':>10}")]
    for server in [s for s in results if s.startswith("service")] + ["baseline"]:
        for size, by_model in results.get(server, {}).items():
            for model, by_clients in by_model.items():
                for clients, r in by_clients.items():
                    quick = f"{r['degraded_share']:.1%}" if "degraded_share" in r else "-"
                    lines.append(f"{size:>10} {model:>12} {server:>9} {clients:>7} {r['p50_ms']:>8.2f} "
                                 f"{r['p99_ms']:>8.2f} {r['rps']:>8.1f} {r['errors']:>6} {quick:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results as JSON")
    parser.add_argument("--sizes", default="demo,100000", help="'demo' and/or synthetic catalogue sizes")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--models", default="item-knn,transformer", help="models to serve, one after the other")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--workers", default="1",
                        help="service worker processes, one run per count (e.g. 1,2; use --postgres above 1)")
    parser.add_argument("--postgres", metavar="URL",
                        help="fill a fresh database on this PostgreSQL server instead of SQLite, "
                             "e.g. postgresql+psycopg://user@127.0.0.1:5432/postgres")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--ann-only", action="store_true", help="only measure the exact/HNSW switch point")
    parser.add_argument("--no-ann", action="store_true")
    parser.add_argument("--serve-baseline", help=argparse.SUPPRESS)
    parser.add_argument("--histories", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.histories, args.port)
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results: dict = {"setup": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                               "k": args.k, "duration_s": args.duration, "models": args.models,
                               "database": "postgresql" if args.postgres else "sqlite (WAL)",
                               "server": f"uvicorn, {args.workers} worker process(es)"}}
    if not args.no_ann:
        log("exact vs HNSW similar-item search:")
        results["ann_switch"] = ann_switch(log=log)
        log(f"  switch point (exact > {results['ann_switch']['budget_ms']} ms/query): "
            f"{results['ann_switch']['switch_at']}")
    if not args.ann_only:
        clients = [int(c) for c in args.clients.split(",")]
        workdir = Path(tempfile.mkdtemp(prefix="shoprec-load-"))
        try:
            for name in args.sizes.split(","):
                log(f"catalogue {name}:")
                models = tuple(args.models.split(","))
                setup = prepare(name, workdir, log, models, postgres=args.postgres)
                size = str(setup["n_items"])
                results["setup"][size] = {"events": setup["n_events"], "source": name}
                rng = np.random.default_rng(1)
                shoppers = rng.choice(setup["shoppers"], size=min(2000, len(setup["shoppers"])), replace=False)
                bodies = [json.dumps({"shopper_id": str(s), "k": args.k}).encode() for s in shoppers]
                servers = [("service" if w == 1 else f"service-{w}w", functools.partial(start_service, workers=w),
                            "/v1/health", "/v1/recommendations", f"X-API-Key: {KEY}\r\n".encode())
                           for w in (int(w) for w in args.workers.split(","))]
                if not args.no_baseline:
                    servers.append(("baseline", start_baseline, "/health", "/recommend", b""))
                for model in models:
                    for server, start, health, path, headers in servers:
                        port = free_port()
                        proc = start(setup, model, port)
                        try:
                            t0 = time.perf_counter()
                            wait_ready(proc, port, health)
                            log(f"  {server} ({model}) ready in {time.perf_counter() - t0:.1f}s")
                            for c in clients:
                                r = run_load(port, path, headers, bodies, c, args.duration)
                                if server == "baseline":
                                    r.pop("degraded_share")
                                results.setdefault(server, {}).setdefault(size, {}).setdefault(model, {})[str(c)] = r
                                log(f"  {server:>10} {model:>11} {c:>2} clients: p50 {r['p50_ms']:.2f} ms  "
                                    f"p99 {r['p99_ms']:.2f} ms  {r['rps']:.0f} req/s  errors {r['errors']}"
                                    + (f"  quick path {r['degraded_share']:.1%}" if "degraded_share" in r else ""))
                        finally:
                            stop(proc)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(table(results))
    if args.json:
        from common import write_json

        write_json(args.json, results)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
