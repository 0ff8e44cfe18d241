"""API keys with roles, and a token-bucket rate limit per key.

A key looks like `sr_<key id>_<secret>`. The database keeps the key id, the SHA-256 of the secret
and the roles, never the secret itself; a presented key is hashed and compared with
`hmac.compare_digest`, so the comparison takes the same time wherever the first difference is,
and an unknown key id costs the same comparison as a known one.

Roles: `ingest` (events, catalogue writes), `read` (recommendations, similar items, catalogue
reads, model status, stats), `history` (a read key with it sees the shopper's history in
explanations and `recent`; without it, explanations name no history item), `admin` (everything,
including export/erase, model reload and keys). Shopper and dashboard tokens
(`shoprec.serve.tokens`) authenticate here too, as principals of their own kind.

The stored keys are cached and re-read every few seconds on a background thread, so a request
never waits for the database to authenticate (a revoked key stops working within `refresh_s`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from shoprec.errors import ConfigError
from shoprec.serve.storage import Store, StoredKey
from shoprec.serve.tokens import PREFIX as TOKEN_PREFIX
from shoprec.serve.tokens import TokenSigner

__all__ = ["ROLES", "KeyRing", "Principal", "RateLimiter"]

ROLES = ("ingest", "read", "history", "admin")
_KEY = re.compile(r"^sr_([0-9a-f]{12})_([0-9a-f]{64})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()
_BOOTSTRAP_ID = "bootstrap"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and id, and its roles.

    kind: "key" (an API key), "shopper" (a token bound to the shopper pseudonym `shopper`) or
    "dashboard" (a token for the aggregate figures). source: the id of the key that sent it, or
    that issued the token: client event ids are unique per source.
    """

    name: str
    key_id: str
    roles: frozenset[str]
    kind: str = "key"
    shopper: str | None = None
    source: str = ""

    def allows(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles

    @property
    def sees_history(self) -> bool:
        """Whether responses may name items of the shopper's history: the shopper's own token,
        an admin key, or a key with the `history` role."""
        return self.kind == "shopper" or self.allows("history")

    @property
    def event_source(self) -> str:
        return self.source or self.key_id


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class KeyRing:
    """Authenticates presented keys against the stored ones (cached, refreshed every few seconds).

    admin_key: an optional bootstrap key with every role, held in memory only (from settings).
    """

    def __init__(self, store: Store, admin_key: str | None = None, refresh_s: float = 5.0,
                 tokens: TokenSigner | None = None) -> None:
        self.store = store
        self.tokens = tokens
        self._admin_hash = _sha256(admin_key) if admin_key else None
        self._refresh_s = refresh_s
        self._cache: dict[str, StoredKey] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self._refreshing = False
        self._extra: dict[str, tuple[str, frozenset[str]]] = {}

    def refresh(self) -> None:
        """Re-read the stored keys now (at start, and after this process creates or revokes one)."""
        keys = {k.key_id: k for k in self.store.list_keys()}
        with self._lock:
            self._cache = keys
            self._loaded_at = time.monotonic()

    def _refresh_in_background(self) -> None:
        """Start one re-read on a thread of its own when the cache is stale; requests go on with
        the cache as it is (a slow database must not stall the event loop)."""
        with self._lock:
            if self._refreshing or time.monotonic() - self._loaded_at <= self._refresh_s:
                return
            self._refreshing = True

        def run() -> None:
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a failed re-read keeps the cache; the next request retries
                with self._lock:
                    self._loaded_at = time.monotonic() - self._refresh_s / 2
            finally:
                with self._lock:
                    self._refreshing = False

        self._thread = threading.Thread(target=run, name="shoprec-key-refresh", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Wait for a refresh under way, so that no query runs after the store is disposed."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout)

    def add_memory_key(self, name: str, secret: str, roles: frozenset[str]) -> None:
        """A key that lives only in this process (the demo page's key)."""
        self._extra[_sha256(secret)] = (name, roles)

    def authenticate(self, presented: str | None) -> Principal | None:
        """The principal of a presented key, or None when it is missing, unknown or revoked."""
        if not presented:
            return None
        if presented.startswith(TOKEN_PREFIX):
            claims = self.tokens.verify(presented) if self.tokens is not None else None
            if claims is None:
                return None
            label = "shopper token" if claims.kind == "shopper" else "dashboard token"
            # One rate-limit bucket per shopper (or per issuing key for dashboards).
            bucket = f"token:{claims.shopper or claims.source}"
            return Principal(label, bucket, claims.roles, kind=claims.kind, shopper=claims.shopper,
                             source=claims.source)
        digest = _sha256(presented)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal("admin", _BOOTSTRAP_ID, frozenset({"admin"}))
        for known, (name, roles) in self._extra.items():
            if hmac.compare_digest(digest, known):
                return Principal(name, "memory", roles, source=f"memory-{name}"[:32])
        match = _KEY.match(presented)
        self._refresh_in_background()
        stored = self._cache.get(match.group(1)) if match else None
        expected = stored.secret_sha256 if stored else _DUMMY_HASH
        secret_hash = _sha256(match.group(2)) if match else digest
        if hmac.compare_digest(secret_hash, expected) and stored is not None:
            return Principal(stored.name, stored.key_id, stored.roles)
        return None

    def create(self, name: str, roles: list[str]) -> tuple[StoredKey, str]:
        """Create and store a key; returns it and the plaintext key (shown once, never stored)."""
        bad = sorted(set(roles) - set(ROLES))
        if bad or not roles:
            raise ConfigError(f"API key roles must be a non-empty subset of {list(ROLES)}. Got {roles!r} instead.")
        key_id, secret = secrets.token_hex(6), secrets.token_hex(32)
        stored = self.store.add_key(key_id, name, _sha256(secret), roles)
        self.refresh()
        return stored, f"sr_{key_id}_{secret}"

    def revoke(self, name: str) -> bool:
        done = self.store.revoke_key(name)
        self.refresh()
        return done


class RateLimiter:
    """A token bucket per key: `rate` requests per second on average, bursts up to `burst`.

    rate 0 disables the limit.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0 when allowed, else the seconds to wait before retrying."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
