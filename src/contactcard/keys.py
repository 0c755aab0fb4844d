"""API keys: long random tokens, stored only as their sha256."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "cc_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    """Enough of a key to tell keys apart in a listing, not enough to use it."""
    return key[:10]


def bearer_key(authorization: list[str]) -> str | None:
    """The key from exactly one `Authorization: Bearer <key>` header, else None."""
    if len(authorization) != 1:
        return None
    scheme, _, key = authorization[0].partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or " " in key:
        return None
    return key
