"""Short-lived signed tokens: what a browser or an app holds instead of an API key.

The shop's backend, which holds an API key, exchanges it (`POST /v1/tokens`) for a token bound
to one shopper (or to a new anonymous session) with some of its own roles; the browser sends
the token as `Authorization: Bearer st_...` and can then read recommendations and send events
for that shopper only, and read the catalogue. A "dashboard" token reads only the aggregate
figures (stats, model status, online learning runs), never a shopper's data.

Tokens are JSON Web Tokens (PyJWT, HS256) prefixed with `st_`. The signing secret is derived from
the current pseudonym key (HMAC with a label of its own), so a token is valid in every worker
process that holds that key, and a key rotation ends every token issued before it. The claims
hold the shopper's pseudonym, never the raw id: `sub` (pseudonym, or "" for a dashboard token),
`knd` ("shopper" or "dashboard"), `scp` (roles), `src` (the issuing key's id: the scope of the
event ids the token's events carry), `iat`, `exp`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from shoprec.errors import ConfigError, check_int

__all__ = ["PREFIX", "TOKEN_KINDS", "TokenClaims", "TokenSigner"]

PREFIX = "st_"
TOKEN_KINDS = ("shopper", "dashboard")
_ALGORITHM = "HS256"
_AUDIENCE = "shoprec"


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    kind: str
    shopper: str | None
    roles: frozenset[str]
    source: str
    expires_at: int


class TokenSigner:
    """Issues and verifies tokens with one secret. max_ttl_s: the longest lifetime a token may ask for."""

    def __init__(self, secret: bytes, max_ttl_s: int = 3600) -> None:
        if len(secret) < 32:
            raise ConfigError(f"A token signing secret needs at least 32 bytes. Got {len(secret)} instead.")
        self._secret = secret
        self.max_ttl_s = max_ttl_s

    def issue(self, kind: str, shopper: str | None, roles: frozenset[str], source: str, ttl_s: int,
              now: float | None = None) -> tuple[str, int]:
        """A token and its expiry time (Unix seconds)."""
        if kind not in TOKEN_KINDS:
            raise ConfigError(f"A token kind must be one of {list(TOKEN_KINDS)}. Got {kind!r} instead.")
        check_int("ttl_s", ttl_s, 1, self.max_ttl_s, "a token")
        issued = int(time.time() if now is None else now)
        claims = {"sub": shopper or "", "knd": kind, "scp": sorted(roles), "src": source, "aud": _AUDIENCE,
                  "iat": issued, "exp": issued + ttl_s}
        return PREFIX + jwt.encode(claims, self._secret, algorithm=_ALGORITHM), issued + ttl_s

    def verify(self, presented: str) -> TokenClaims | None:
        """The claims of a valid, unexpired token; None for anything else (never raises)."""
        if not presented.startswith(PREFIX):
            return None
        try:
            claims = jwt.decode(presented[len(PREFIX):], self._secret, algorithms=[_ALGORITHM], audience=_AUDIENCE,
                                options={"require": ["exp", "iat", "sub", "knd", "scp", "src"]})
        except jwt.PyJWTError:
            return None
        kind, scopes = claims.get("knd"), claims.get("scp")
        if kind not in TOKEN_KINDS or not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            return None
        shopper = claims["sub"] if kind == "shopper" else None
        if kind == "shopper" and not (isinstance(shopper, str) and shopper):
            return None
        return TokenClaims(kind, shopper, frozenset(scopes), str(claims["src"]), int(claims["exp"]))
