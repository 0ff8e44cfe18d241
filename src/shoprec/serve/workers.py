"""Several uvicorn worker processes on one port, each with its own listening socket.

uvicorn's `--workers N` binds one socket in the supervisor and hands it to every worker; then
whichever worker's event loop wakes first accepts a new connection. Keep-alive clients stay on
the worker that accepted them, so a burst of connections can land on one worker and leave the
other idle for the whole life of the connections: with 16 keep-alive clients on 2 workers we
counted 9:7, 14:2 and 13:3 splits (`ss`), and one benchmark cell served 89 requests/s, the
throughput of a single worker, against 142-164 in the other runs.

Here uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`: spawning, health pings,
restarts, signals) runs the workers, but each worker binds its own socket with SO_REUSEPORT
(Linux 3.9+), and the kernel spreads new connections over the sockets of the group by a hash of
each connection's addresses, so a split of 16:0 has probability 2^-15. Caveat of SO_REUSEPORT:
connections waiting in a worker's accept queue when that worker dies are reset (the supervisor
restarts it); the group only admits sockets of the same user. Where SO_REUSEPORT is missing,
`serve_workers` falls back to uvicorn's shared socket.
"""

from __future__ import annotations

import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

from shoprec.errors import ConfigError

__all__ = ["ReusePortServer", "reuse_port_socket", "serve_workers"]


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT, not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot bind {host}:{port} for the workers: {exc.strerror or exc}.") from exc
    return sock


class ReusePortServer(uvicorn.Server):
    """A uvicorn server that listens on a socket of its own (SO_REUSEPORT) rather than the one
    the supervisor passes (none is passed, see `serve_workers`)."""

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        sock = reuse_port_socket(self.config.host, self.config.port)
        super().run(sockets=[sock])


def _port_is_taken(host: str, port: int) -> bool:
    """Whether something already accepts connections on (host, port): a socket of another
    service in the same reuse-port group would otherwise share the port silently."""
    family, kind, proto, _, address = socket.getaddrinfo(host if host not in ("0.0.0.0", "::") else "localhost",
                                                         port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(address) == 0


def serve_workers(config: uvicorn.Config) -> None:
    """Run `config.workers` worker processes of the app import string in `config` on one port."""
    if not hasattr(socket, "SO_REUSEPORT"):
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[config.bind_socket()]).run()
        return
    if _port_is_taken(config.host, config.port):
        raise ConfigError(f"Port {config.port} on {config.host} is already in use; choose another with --port.")
    reuse_port_socket(config.host, config.port).close()  # fail here, not in every worker, if it cannot bind
    Multiprocess(config, target=ReusePortServer(config).run, sockets=[]).run()
