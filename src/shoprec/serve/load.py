"""How loaded the service is: what the per-request latency budget decision reads."""

from __future__ import annotations

import threading
from contextlib import contextmanager

__all__ = ["LoadGauge"]


class LoadGauge:
    """Requests in flight and an EWMA of the model path's compute time: what the latency budget
    decision reads. The expected time of a new request is the model path's cost times the
    requests ahead of it (scoring holds the interpreter, so concurrent requests queue)."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = smoothing
        self.in_flight = 0
        self.model_ms = 0.0
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
        with self._lock:
            self.in_flight += 1
            expected = self.model_ms * self.in_flight
        try:
            yield expected
        finally:
            with self._lock:
                self.in_flight -= 1
