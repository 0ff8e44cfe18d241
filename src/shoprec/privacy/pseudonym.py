"""Keyed pseudonymisation of shopper ids (HMAC-SHA256).

A shop's raw shopper ids (customer numbers, e-mail hashes, session ids) are replaced at the edge
by `HMAC-SHA256(key, raw_id)`, so that the stored log links a shopper's events together without
holding the id itself. Without the key, a pseudonym cannot be turned back into the id, nor can an
attacker who knows a candidate id check it against the log (which an unkeyed hash would allow).

The key never lives with the data: it comes from the environment variable
`SHOPREC_PSEUDONYM_KEY` or from a key file (`SHOPREC_PSEUDONYM_KEY_FILE`) kept outside the data
directory. Each key has a short id that is written into every pseudonym (`"<key id>.<hex>"`), so
that a key can be rotated: a `Pseudonymizer` pseudonymises with its current key and can still find
the data written under the previous keys it is given (`candidates`), for export and erasure.

Key file format: one key per line, `KEY_ID SECRET` (or just `SECRET`, whose id is then derived
from the secret); the first line is the current key, later lines are previous keys. Blank lines
and lines starting with `#` are ignored. A secret is at least 32 bytes: UTF-8 text, or hex after
a `hex:` prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shoprec.errors import ConfigError

__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_KEY_ID",
    "MIN_KEY_BYTES",
    "Pseudonymizer",
    "check_key_outside",
    "generate_key_file",
]

ENV_KEY = "SHOPREC_PSEUDONYM_KEY"
ENV_KEY_ID = "SHOPREC_PSEUDONYM_KEY_ID"
ENV_KEY_FILE = "SHOPREC_PSEUDONYM_KEY_FILE"
MIN_KEY_BYTES = 32
MAX_RAW_ID_CHARS = 256
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_DIGEST_HEX = 32  # 128 bits: collisions are out of reach for any shop's number of shoppers


@dataclass(frozen=True)
class _Key:
    key_id: str
    secret: bytes


def _parse_secret(text: str, where: str) -> bytes:
    text = text.strip()
    if text.startswith("hex:"):
        try:
            secret = bytes.fromhex(text[4:])
        except ValueError:
            raise ConfigError(f"The pseudonym key in {where} starts with 'hex:' but is not hex.") from None
    else:
        secret = text.encode("utf-8")
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigError(
            f"The pseudonym key in {where} must be at least {MIN_KEY_BYTES} bytes. "
            f"Got {len(secret)} bytes instead. Generate one with: "
            f"python -c \"import secrets; print(secrets.token_hex(32))\""
        )
    return secret


def _derived_key_id(secret: bytes) -> str:
    # A fingerprint of the key under a fixed label: names the key without revealing it.
    return hmac.new(secret, b"shoprec pseudonym key id", hashlib.sha256).hexdigest()[:8]


def _check_key_id(key_id: str, where: str) -> str:
    if not _KEY_ID.match(key_id):
        raise ConfigError(
            f"The pseudonym key id in {where} must be 1-16 characters from [A-Za-z0-9_-]. "
            f"Got {key_id!r} instead."
        )
    return key_id


class Pseudonymizer:
    """Turns raw shopper ids into keyed pseudonyms `"<key id>.<32 hex digits>"`.

    keys: (key id, secret) pairs, current key first; older keys are only used by `candidates`,
    to find data written before a rotation. Secrets are bytes of at least 32 bytes.
    """

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError(
                f"No pseudonym key given. Set {ENV_KEY} (at least {MIN_KEY_BYTES} bytes) or "
                f"{ENV_KEY_FILE} (a file outside the data directory)."
            )
        parsed: list[_Key] = []
        for key_id, secret in keys:
            _check_key_id(key_id, "the key list")
            if not isinstance(secret, bytes) or len(secret) < MIN_KEY_BYTES:
                raise ConfigError(
                    f"The pseudonym key {key_id!r} must be at least {MIN_KEY_BYTES} bytes. "
                    f"Got {len(secret) if isinstance(secret, bytes) else type(secret).__name__} instead."
                )
            if any(k.key_id == key_id for k in parsed):
                raise ConfigError(f"The pseudonym key id {key_id!r} is used twice.")
            parsed.append(_Key(key_id, secret))
        self._keys = tuple(parsed)

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_secret(cls, secret: str | bytes, key_id: str | None = None) -> Pseudonymizer:
        """One key from a secret (str: UTF-8 or 'hex:...'; bytes: used as is)."""
        raw = secret if isinstance(secret, bytes) else _parse_secret(secret, "the given secret")
        if len(raw) < MIN_KEY_BYTES:
            raise ConfigError(
                f"The pseudonym key must be at least {MIN_KEY_BYTES} bytes. Got {len(raw)} bytes instead."
            )
        return cls([(_check_key_id(key_id, "key_id") if key_id else _derived_key_id(raw), raw)])

    @classmethod
    def from_file(cls, path: str | Path) -> Pseudonymizer:
        """Keys from a key file (see the module docstring for the format)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Cannot read the pseudonym key file {path}: {exc.strerror or exc}.") from None
        keys: list[tuple[str, bytes]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}, line {number}"
            parts = line.split()
            if len(parts) == 1:
                secret = _parse_secret(parts[0], where)
                keys.append((_derived_key_id(secret), secret))
            elif len(parts) == 2:
                keys.append((_check_key_id(parts[0], where), _parse_secret(parts[1], where)))
            else:
                raise ConfigError(f"{where}: expected 'KEY_ID SECRET' or 'SECRET'.")
        if not keys:
            raise ConfigError(f"The pseudonym key file {path} holds no key.")
        return cls(keys)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, data_dir: str | Path | None = None
    ) -> Pseudonymizer:
        """The key from SHOPREC_PSEUDONYM_KEY (with optional SHOPREC_PSEUDONYM_KEY_ID) or from
        the file named by SHOPREC_PSEUDONYM_KEY_FILE.

        data_dir: where the service keeps its data; a key file inside it is refused, because a
        key stored next to the pseudonyms it protects protects nothing.
        """
        env = os.environ if environ is None else environ
        secret, key_file = env.get(ENV_KEY), env.get(ENV_KEY_FILE)
        if secret and key_file:
            raise ConfigError(f"Set either {ENV_KEY} or {ENV_KEY_FILE}, not both.")
        if secret:
            raw = _parse_secret(secret, ENV_KEY)
            key_id = env.get(ENV_KEY_ID)
            return cls([(_check_key_id(key_id, ENV_KEY_ID) if key_id else _derived_key_id(raw), raw)])
        if key_file:
            if data_dir is not None:
                check_key_outside(key_file, data_dir)
            return cls.from_file(key_file)
        raise ConfigError(
            f"No pseudonym key configured. Set {ENV_KEY} to a secret of at least {MIN_KEY_BYTES} "
            f"bytes, or {ENV_KEY_FILE} to a key file kept outside the data directory. "
            f"Generate a secret with: python -c \"import secrets; print(secrets.token_hex(32))\""
        )

    # ---- use -------------------------------------------------------------------------------
    @property
    def key_id(self) -> str:
        """Id of the current key."""
        return self._keys[0].key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every key, current first."""
        return tuple(k.key_id for k in self._keys)

    def pseudonymize(self, raw_id: str) -> str:
        """The pseudonym of a raw shopper id under the current key."""
        return self._with(self._keys[0], raw_id)

    __call__ = pseudonymize

    def candidates(self, raw_id: str) -> list[str]:
        """Pseudonyms of a raw id under every key, current first (to find pre-rotation data)."""
        return [self._with(key, raw_id) for key in self._keys]

    def derive_secret(self, label: str) -> bytes:
        """A 32-byte secret for another purpose (say, signing tokens), derived from the current
        key under `label`: it cannot be turned back into the key or into pseudonyms.

        The HMAC runs under a key of its own (a hash of the pseudonym key with a fixed prefix),
        never under the pseudonym key itself, so no shopper id, whatever its text, has a
        pseudonym that is part of a derived secret."""
        derive_key = hashlib.sha256(b"shoprec derivation key\x00" + self._keys[0].secret).digest()
        return hmac.new(derive_key, label.encode("utf-8"), hashlib.sha256).digest()

    def _with(self, key: _Key, raw_id: str) -> str:
        if not isinstance(raw_id, str) or not raw_id:
            raise ConfigError(f"A shopper id must be a non-empty string. Got {raw_id!r} instead.")
        if len(raw_id) > MAX_RAW_ID_CHARS:
            raise ConfigError(
                f"A shopper id must have at most {MAX_RAW_ID_CHARS} characters. Got {len(raw_id)} instead."
            )
        digest = hmac.new(key.secret, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{key.key_id}.{digest[:_DIGEST_HEX]}"

    def __repr__(self) -> str:  # never show the secrets
        return f"Pseudonymizer(key_ids={list(self.key_ids)})"


def check_key_outside(key_file: str | Path, data_dir: str | Path) -> None:
    """Raise ConfigError when the key file lies inside the data directory."""
    key = Path(key_file).expanduser().resolve()
    data = Path(data_dir).expanduser().resolve()
    if key == data or data in key.parents:
        raise ConfigError(
            f"The pseudonym key file {key} lies inside the data directory {data}; keep the key "
            f"apart from the data it protects (for example under ~/.config/shoprec/)."
        )


def generate_key_file(path: str | Path, key_id: str | None = None) -> Path:
    """Write a new random key to `path` (mode 0600) and return the path. Refuses to overwrite."""
    import secrets

    path = Path(path).expanduser()
    if path.exists():
        raise ConfigError(f"The key file {path} exists already; not overwriting a key.")
    secret = "hex:" + secrets.token_hex(32)
    kid = _check_key_id(key_id, "key_id") if key_id else _derived_key_id(bytes.fromhex(secret[4:]))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("# shoprec pseudonym key: KEY_ID SECRET; first line is the current key\n")
        fh.write(f"{kid} {secret}\n")
    return path
