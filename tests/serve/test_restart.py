"""kill -9 during a stream of feedback: after a restart, every acknowledged click's effect on the
shopper's exploration state is there (the state is written in the click's own transaction)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from serve_helpers import ADMIN, ADMIN_KEY, SECRET, catalogue_rows

from shoprec.explore.online import unpack_state
from shoprec.serve.storage import Store


def _start(database_url: str, model_path: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SHOPREC_PSEUDONYM_KEY": SECRET, "SHOPREC_ADMIN_KEY": ADMIN_KEY,
           "SHOPREC_RATE_LIMIT_PER_S": "0", "SHOPREC_RETRAIN_EVERY_S": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shoprec.cli", "serve", "--db", database_url, "--model",
                             model_path, "--port", str(port), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the service did not start")


@pytest.mark.slow
def test_acknowledged_clicks_survive_kill_9_in_the_exploration_state(database_url, synthetic_shop, tmp_path):
    from shoprec.models.knn import ItemKNN

    model_path = str(ItemKNN(neighbors=20).fit(synthetic_shop).save(tmp_path / "item-knn.npz"))
    proc, url = _start(database_url, model_path)
    acknowledged: dict[str, int] = {}
    clients: list[httpx.Client] = []
    shown: list[tuple[str, str, str]] = []
    try:
        client = httpx.Client(base_url=url, headers=ADMIN, timeout=10)
        clients = [client]
        client.post("/v1/items/batch", json={"items": catalogue_rows(synthetic_shop)}).raise_for_status()
        rng = np.random.default_rng(0)
        for j in range(200):
            shopper = f"s{j % 5}"
            body = client.post("/v1/recommendations", json={"shopper_id": shopper, "k": 4}).json()
            item = body["items"][int(rng.integers(0, len(body["items"])))]["item_id"]
            r = client.post("/v1/events", json={"event_id": f"c{j}", "shopper_id": shopper, "item_id": item,
                                                "event": "view", "impression_id": body["impression_id"]})
            if r.status_code == 200 and r.json()["accepted"] == 1:
                acknowledged[shopper] = acknowledged.get(shopper, 0) + 1
                shown.append((shopper, body["impression_id"], item))
            if j == 120:
                proc.kill()  # SIGKILL: no shutdown, no flush, in the middle of the stream
                proc.wait(timeout=30)
                break
    finally:
        for c in clients:
            c.close()
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert sum(acknowledged.values()) >= 100
    proc, url = _start(database_url, model_path)  # the same database, a new process
    try:
        store = Store(database_url)
        from shoprec.privacy.pseudonym import Pseudonymizer

        pseudo = Pseudonymizer.from_secret(SECRET)
        for shopper, clicks in acknowledged.items():
            row = store.shopper_state([pseudo.pseudonymize(shopper)])
            state = unpack_state(row["state"], row["dim"])
            assert int(state.n_positive) == clicks, (shopper, int(state.n_positive), clicks)
        store.dispose()
        # The restarted service serves these shoppers from their restored states.
        with httpx.Client(base_url=url, headers=ADMIN, timeout=10) as client:
            body = client.post("/v1/recommendations", json={"shopper_id": "s1", "k": 4}).json()
        assert body["exploration"]["signals"]["history"] < 1.0
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()


WRITERS = 4
KILL_RUNS = 3


def _write_until_stopped(url, prefix, writer, items, stop, lock, acknowledged: set[str]) -> None:
    """Send batches of 10 new events until told to stop or the service is gone; record each
    acknowledged (200) batch's ids."""
    with httpx.Client(base_url=url, headers=ADMIN, timeout=10) as client:
        for batch in range(10_000):
            if stop.is_set():
                return
            ids = [f"{prefix}-b{batch}-{j}" for j in range(10)]
            events = [{"event_id": e, "shopper_id": f"s{writer}-{j % 3}", "item_id": items[j * 5 % 50],
                       "event": "view"} for j, e in enumerate(ids)]
            try:
                r = client.post("/v1/events/batch", json={"events": events})
            except httpx.HTTPError:
                return  # the service is gone: this batch was not acknowledged
            if r.status_code == 200:
                with lock:
                    acknowledged.update(ids)


@pytest.mark.slow
def test_no_acknowledged_event_is_lost_when_the_service_is_killed_under_four_writers(database_url, synthetic_shop,
                                                                                      tmp_path):
    """Three times: four clients send event batches at once, the service gets SIGKILL in the
    middle, and every event it acknowledged (a 200) is in the database afterwards."""
    import threading

    from sqlalchemy import create_engine, text

    from shoprec.models.knn import ItemKNN

    model_path = str(ItemKNN(neighbors=20).fit(synthetic_shop).save(tmp_path / "item-knn.npz"))
    items = [str(i) for i in synthetic_shop.items.ids[:50]]
    acknowledged: set[str] = set()
    for run in range(KILL_RUNS):
        proc, url = _start(database_url, model_path)
        lock = threading.Lock()
        stop = threading.Event()

        before = len(acknowledged)
        threads = [threading.Thread(target=_write_until_stopped, args=(url, f"r{run}-w{w}", w, items, stop, lock,
                                                                         acknowledged)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) - before < 400 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()  # SIGKILL while all four are writing
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        proc.stderr.close()
        assert len(acknowledged) - before >= 400, f"run {run}: too few events acknowledged before the kill"
    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = {row[0] for row in conn.execute(text("SELECT event_id FROM events"))}
    engine.dispose()
    assert acknowledged - stored == set()
