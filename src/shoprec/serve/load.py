"""How loaded the service is: what the per-request latency budget decision reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["LoadGauge", "Ticket"]


@dataclass
class Ticket:
    """One request's view of the gauge: whether to take the cheaper path, and the path it took."""

    degrade: bool
    path: str | None = None


class LoadGauge:
    """Requests in flight and EWMAs of a request's compute time on the model path and on the
    quick (embedding) path: what the latency budget decision reads. The expected time of a
    new request on a path is the time it has already waited for a slate thread plus that
    path's cost times the requests in flight with it (their Python work holds one
    interpreter, so they share it). A request is degraded only when the model path would miss
    the budget and the quick path would meet it: when both miss (a long queue), the quick
    path would cost accuracy and still be late. Measured at 100,000 items the quick path saves
    only the model's encoding, about a sixth of a request's work (the rest is the service's
    own), and loses most of the accuracy (benchmarks/replay.py).

    Only model-path requests measure the model path's cost, so a gauge that degraded every
    request would never learn that the cost fell again (after a slow first request, a burst, a
    noisy neighbour): once every `probe_every_s` one request takes the model path anyway.
    clock and cpu_clock are injectable for tests (wall and thread CPU seconds).
    """

    def __init__(self, smoothing: float = 0.1, probe_every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.smoothing = smoothing
        self.probe_every_s = probe_every_s
        self.in_flight = 0
        self.model_ms = 0.0
        self.request_ms = 0.0
        self.quick_ms = 0.0  # 0 until a degraded request has measured it
        self.served = {"model": 0, "embedding": 0, "popularity": 0}
        self._clock, self._cpu_clock = clock, cpu_clock
        self._last_model_path = clock()
        self._lock = threading.Lock()

    def served_by(self, path: str, ticket: Ticket | None = None) -> None:
        """Count one slate served by a scoring path ("model", "embedding", "popularity"), and
        note it on the request's ticket (a model-path request teaches the cost when it ends)."""
        with self._lock:
            self.served[path] = self.served.get(path, 0) + 1
        if ticket is not None:
            ticket.path = path

    def record_model_seconds(self, seconds: float) -> None:
        ms = seconds * 1000.0
        with self._lock:
            self.model_ms = ms if self.model_ms == 0 else (1 - self.smoothing) * self.model_ms + self.smoothing * ms

    def now(self) -> float:
        """The gauge's clock (seconds): what `request(arrived=...)` takes."""
        return self._clock()

    @contextmanager
    def request(self, budget_ms: float = 0.0, arrived: float | None = None):
        """Count a request in flight; yields its `Ticket`: `degrade` when its expected
        milliseconds on the model path (waited since `arrived`, a `now()` reading, plus its cost
        under the current load) exceed `budget_ms` (0: never) and those on the quick path do
        not, unless a probe of the model path is due. The caller says which path it took with
        `served_by(path, ticket)`."""
        with self._lock:
            self.in_flight += 1
            now = self._clock()
            waited_ms = 0.0 if arrived is None else max(now - arrived, 0.0) * 1000.0
            degrade = (bool(budget_ms) and waited_ms + self.request_ms * self.in_flight > budget_ms
                       and waited_ms + self.quick_ms * self.in_flight <= budget_ms)
            if degrade and now - self._last_model_path >= self.probe_every_s:
                degrade = False  # this one re-measures the model path
            if not degrade:
                self._last_model_path = now
        ticket = Ticket(degrade)
        t0 = self._cpu_clock()  # CPU time of this request: waiting for the others does not count
        try:
            yield ticket
        finally:
            ms = (self._cpu_clock() - t0) * 1000.0
            with self._lock:
                self.in_flight -= 1
                a = self.smoothing
                if ticket.path == "model":  # only model-path requests teach the model's cost
                    self.request_ms = ms if self.request_ms == 0 else (1 - a) * self.request_ms + a * ms
                elif ticket.path == "embedding":
                    self.quick_ms = ms if self.quick_ms == 0 else (1 - a) * self.quick_ms + a * ms
