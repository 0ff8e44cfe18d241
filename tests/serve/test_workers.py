"""Several worker processes on one port: each listens on its own SO_REUSEPORT socket, so the
kernel spreads keep-alive connections over the workers instead of one worker taking them all."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from serve_helpers import ADMIN, ADMIN_KEY, SECRET

from shoprec.errors import ConfigError
from shoprec.serve.workers import reuse_port_socket, serve_workers

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="SO_REUSEPORT is Linux/BSD only")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_processes(port: int) -> int:
    """How many processes hold a listening socket on the port (`ss`)."""
    held = subprocess.run(["ss", "-tlnpH", f"( sport = :{port} )"], capture_output=True, text=True, check=True).stdout
    return len(set(re.findall(r"pid=(\d+)", held)))


def test_two_reuse_port_sockets_listen_on_one_port():
    port = _free_port()
    first, second = reuse_port_socket("127.0.0.1", port), reuse_port_socket("127.0.0.1", port)
    try:
        first.listen()
        second.listen()
        assert first.getsockname() == second.getsockname() == ("127.0.0.1", port)
    finally:
        first.close()
        second.close()


def test_a_port_held_by_another_service_is_refused_by_name():
    import uvicorn

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        config = uvicorn.Config("shoprec.serve.app:app_from_env", factory=True, workers=2, port=port)
        with pytest.raises(ConfigError, match=f"Port {port} on 127.0.0.1 is already in use"):
            serve_workers(config)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs the ss tool to see which process holds a connection")
def test_keep_alive_connections_reach_both_workers(tmp_path, synthetic_shop):
    from shoprec.models.knn import ItemKNN

    model = str(ItemKNN(neighbors=20).fit(synthetic_shop).save(tmp_path / "item-knn.npz"))
    port = _free_port()
    env = {**os.environ, "SHOPREC_PSEUDONYM_KEY": SECRET, "SHOPREC_ADMIN_KEY": ADMIN_KEY,
           "SHOPREC_RATE_LIMIT_PER_S": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "shoprec.cli", "serve", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                             "--model", model, "--port", str(port), "--workers", "2", "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clients: list[httpx.Client] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the workers did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        # The first worker answering does not mean the second listens yet (it may still be
        # loading): wait until both workers' sockets are listening.
        while _listening_processes(port) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"{_listening_processes(port)} of 2 workers listen"
            time.sleep(0.3)
        # 24 keep-alive clients connect in a burst, as a load generator's do.
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=ADMIN, timeout=10) for _ in range(24)]
        for c in clients:
            assert c.get("/v1/health").status_code == 200
        held = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
                              capture_output=True, text=True, check=True).stdout
        per_worker = sorted(re.findall(r"pid=(\d+)", held).count(pid) for pid in set(re.findall(r"pid=(\d+)", held)))
        assert sum(per_worker) == 24
        # Both workers hold connections; a 24:0 split under an even hash has probability 2^-23.
        assert len(per_worker) == 2 and per_worker[0] >= 1, per_worker
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stderr.close()
