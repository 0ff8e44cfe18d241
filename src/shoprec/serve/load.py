"""How loaded the service is: what the per-request latency budget decision reads."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

__all__ = ["LoadGauge"]


class LoadGauge:
    """Requests in flight and EWMAs of a request's compute time on the model path: what the
    latency budget decision reads. The expected time of a new request is that cost times the
    requests in flight with it (their Python work holds one interpreter, so they queue)."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = smoothing
        self.in_flight = 0
        self.model_ms = 0.0
        self.request_ms = 0.0
        self.served = {"model": 0, "embedding": 0, "popularity": 0}
        self._lock = threading.Lock()

    def served_by(self, path: str) -> None:
        """Count one slate served by a scoring path ("model", "embedding", "popularity")."""
        with self._lock:
            self.served[path] = self.served.get(path, 0) + 1

    def record_model_seconds(self, seconds: float) -> None:
        ms = seconds * 1000.0
        with self._lock:
            self.model_ms = ms if self.model_ms == 0 else (1 - self.smoothing) * self.model_ms + self.smoothing * ms

    @contextmanager
    def request(self):
        """Count a request in flight; yields the expected milliseconds it would take on the model
        path. The caller says which path it took with `served_by`."""
        with self._lock:
            self.in_flight += 1
            expected = self.request_ms * self.in_flight
            served_before = self.served.get("model", 0)
        t0 = time.thread_time()  # CPU time of this request: waiting for the others does not count
        try:
            yield expected
        finally:
            ms = (time.thread_time() - t0) * 1000.0
            with self._lock:
                self.in_flight -= 1
                if self.served.get("model", 0) > served_before:  # only model-path requests teach the cost
                    a = self.smoothing
                    self.request_ms = ms if self.request_ms == 0 else (1 - a) * self.request_ms + a * ms
