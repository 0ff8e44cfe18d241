"""Connection limits of the service, measured on a real `shoprec serve` process.

    python benchmarks/edge.py [--json FILE] [--idle 200] [--duration 20] [--timeout 2]

On the bundled demo shop (item-kNN, SQLite), with `request_timeout_s` and `idle_timeout_s` both
set to `--timeout` seconds, it reports:
- how long the service takes to close a connection that sends nothing, one whose request head
  never ends (slowloris), one whose body trickles in a byte at a time, and a keep-alive
  connection left idle after a response (each should be about the configured timeout);
- the latency of one normal keep-alive client asking for recommendations (k=20, random known
  shoppers), first with no other connection, then while `--idle` other connections are held
  open and idle (each reopened as soon as the service closes it, so the idle load never drops):
  p50 and p99, and the ratio of the two p99s (target: at most 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from load import KEY, free_port, prepare, run_load, start_service, stop, wait_ready


def seconds_until_closed(port: int, send: list[tuple[float, bytes]], limit: float = 60.0) -> float:
    """Open a connection, send each (delay, bytes) in turn, and time until the server closes it."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(0.05)
        pending = list(send)
        next_at = t0 + (pending[0][0] if pending else 0)
        while time.perf_counter() - t0 < limit:
            if pending and time.perf_counter() >= next_at:
                try:
                    sock.sendall(pending.pop(0)[1])
                except OSError:
                    break
                if pending:
                    next_at = time.perf_counter() + pending[0][0]
            try:
                if sock.recv(4096) == b"" :
                    break
            except TimeoutError:
                continue
            except OSError:
                break
    return time.perf_counter() - t0


def closing_times(port: int, timeout: float) -> dict:
    head = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    body_head = (b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + KEY.encode() +
                 b"\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
    trickle = [(0.0, body_head)] + [(timeout / 10, b" ")] * 1000  # a byte every tenth of the timeout
    slow_head = [(0.0, head)] + [(timeout / 10, b"X")] * 1000  # the head never ends
    return {
        "nothing_sent_s": round(seconds_until_closed(port, []), 2),
        "slow_header_s": round(seconds_until_closed(port, slow_head), 2),
        "slow_body_s": round(seconds_until_closed(port, trickle), 2),
        "idle_after_response_s": round(seconds_until_closed(port, [(0.0, head + b"\r\n")]), 2),
    }


async def hold_idle(port: int, n: int, stop_at: float, opened: list[int]) -> None:
    """Keep n idle connections open until stop_at, reopening each as soon as the server closes it."""
    async def one() -> None:
        while time.perf_counter() < stop_at:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            opened[0] += 1
            try:
                await asyncio.wait_for(reader.read(), timeout=max(0.01, stop_at - time.perf_counter()))
            except (TimeoutError, OSError):
                pass
            writer.close()

    await asyncio.gather(*(one() for _ in range(n)))


def latency_with_idle(port: int, bodies: list[bytes], n_idle: int, duration: float) -> dict:
    """One normal client's latency while n_idle idle connections are held (in another thread)."""
    import threading

    headers = f"X-API-Key: {KEY}\r\nContent-Type: application/json\r\n".encode()
    opened = [0]
    stop_at = time.perf_counter() + duration + 6
    holder = threading.Thread(target=lambda: asyncio.run(hold_idle(port, n_idle, stop_at, opened)), daemon=True)
    if n_idle:
        holder.start()
        time.sleep(2)  # all of them open before measuring
    result = run_load(port, "/v1/recommendations", headers, bodies, clients=1, duration=duration)
    if n_idle:
        holder.join(timeout=duration + 30)
    return {**result, "idle_connections": n_idle, "idle_connections_opened": opened[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=2.0, help="request_timeout_s and idle_timeout_s")
    args = parser.parse_args(argv)
    os.environ.update({"SHOPREC_REQUEST_TIMEOUT_S": str(args.timeout), "SHOPREC_IDLE_TIMEOUT_S": str(args.timeout),
                       "HF_HUB_OFFLINE": "1"})
    with tempfile.TemporaryDirectory() as tmp:
        setup = prepare("demo", Path(tmp), lambda m: print(m, flush=True))
        port = free_port()
        proc = start_service(setup, "item-knn", port)
        try:
            wait_ready(proc, port, "/v1/health")
            rng = np.random.default_rng(0)
            shoppers = rng.choice(setup["shoppers"], size=500)
            bodies = [json.dumps({"shopper_id": str(s), "k": 20}).encode() for s in shoppers]
            closing = closing_times(port, args.timeout)
            print(f"closed after (configured timeout {args.timeout} s): {closing}", flush=True)
            alone = latency_with_idle(port, bodies, 0, args.duration)
            crowded = latency_with_idle(port, bodies, args.idle, args.duration)
        finally:
            stop(proc)
    ratio = crowded["p99_ms"] / alone["p99_ms"]
    print(f"one client alone:            p50 {alone['p50_ms']} ms, p99 {alone['p99_ms']} ms, {alone['errors']} errors")
    print(f"with {args.idle} idle connections: p50 {crowded['p50_ms']} ms, p99 {crowded['p99_ms']} ms, "
          f"{crowded['errors']} errors ({crowded['idle_connections_opened']} idle connections opened)")
    print(f"p99 ratio (crowded / alone): {ratio:.2f}  (target <= 2)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "timeout_s": args.timeout, "closed_after": closing, "alone": alone, "with_idle": crowded,
            "p99_ratio": round(ratio, 3),
            "setup": {"catalogue_items": setup["n_items"], "events": setup["n_events"], "model": "item-knn",
                      "database": "sqlite", "python": platform.python_version(), "cpus": os.cpu_count()},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
