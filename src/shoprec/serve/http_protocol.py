"""A deadline for receiving each request, below ASGI: uvicorn's HTTP protocol with one timer more.

uvicorn closes a keep-alive connection that stays idle after a response (`timeout_keep_alive`),
but has no timeout while a request arrives (uvicorn issue #157): its keep-alive timer is reset by
every received byte, so a client that opens a connection and sends nothing, or trickles a
request head or body one byte at a time (slowloris), holds a connection, and its memory, for as
long as it likes. ASGI middleware cannot help: it runs only once the head has been parsed.

`deadline_protocol(seconds)` returns uvicorn's protocol class (httptools when installed, else
h11) with a deadline: the head and the body of a request must have arrived within `seconds` of
the connection opening or of the previous response; otherwise the service answers 408 (when the
client sent something and no response has started) and closes the connection. The timer is
disarmed as soon as the request is complete, so a slow model never trips it.
"""

from __future__ import annotations

import json
import os

__all__ = ["DeadlineProtocol", "deadline_protocol"]

_TIMEOUT_BODY = json.dumps({"error": {"code": "request_timeout",
                                      "message": "The request did not arrive in time; the connection is closed."}})
_TIMEOUT_RESPONSE = (
    "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    f"content-length: {len(_TIMEOUT_BODY)}\r\n\r\n{_TIMEOUT_BODY}"
).encode("ascii")


class _ReceiptDeadline:
    """Mixed in before a uvicorn HTTP protocol class; `request_timeout_s` is set by the factory."""

    request_timeout_s: float = 10.0
    _deadline = None
    _armed_cycle = None
    _received_bytes = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._received_bytes += len(data)
        super().data_received(data)
        if self._deadline is not None and self._request_received():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ---- the timer ---------------------------------------------------------------------------
    def _request_received(self) -> bool:
        """A request newer than the one the timer was armed after has fully arrived."""
        cycle = self.cycle
        return cycle is not None and cycle is not self._armed_cycle and not cycle.more_body

    def _arm(self) -> None:
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # a pipelined request is already being handled: it has arrived
        self._armed_cycle = cycle
        self._received_bytes = 0
        self._deadline = self.loop.call_later(self.request_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._request_received():
            return
        cycle = self.cycle
        responding = cycle is not None and cycle is not self._armed_cycle and cycle.response_started
        if self._received_bytes and not responding:
            self.transport.write(_TIMEOUT_RESPONSE)
        if cycle is not None and cycle is not self._armed_cycle:
            cycle.disconnected = True  # the app, if it waits for the body, gets http.disconnect
            cycle.message_event.set()
        self.transport.close()


def deadline_protocol(request_timeout_s: float) -> type:
    """uvicorn's HTTP protocol class with a receipt deadline of `request_timeout_s` seconds."""
    try:
        import httptools  # noqa: F401 - what uvicorn's "auto" picks when it is installed
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    return type(f"Deadline{base.__name__}", (_ReceiptDeadline, base), {"request_timeout_s": float(request_timeout_s)})


DeadlineProtocol = deadline_protocol(float(os.environ.get("SHOPREC_REQUEST_TIMEOUT_S") or 10.0))
"""The protocol worker processes of `shoprec serve --workers N` load by name (uvicorn
"shoprec.serve.http_protocol:DeadlineProtocol"), its deadline from SHOPREC_REQUEST_TIMEOUT_S."""
