"""What the server needs from a CDN."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

# Content-addressed names: sha256 hex and an extension; nothing else is ever served.
BLOB_NAME = re.compile(r"[0-9a-f]{64}\.(jpg|png)")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}
# Every copy is immutable: its name is the hash of its bytes.
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Blob:
    data: bytes
    content_type: str
    etag: str


class BlobStoreUnavailable(Exception):
    """The store could not be reached or refused the operation; nothing may be assumed stored."""


class BlobStore(Protocol):
    def put(self, name: str, data: bytes) -> None:
        """Store `data` under a content-addressed `name` (idempotent). Blocking; raises
        `BlobStoreUnavailable` when the store cannot take it."""
        ...

    def get(self, name: str) -> Blob | None:
        """The blob stored under `name`, or None. Blocking; raises `BlobStoreUnavailable`."""
        ...

    def ping(self) -> None:
        """Return when the store answers; raise `BlobStoreUnavailable` otherwise. Blocking."""
        ...


def content_type(name: str) -> str:
    return CONTENT_TYPES[name.rsplit(".", 1)[1]]


def etag(name: str) -> str:
    """The ETag this server answers for a blob: its content hash, quoted."""
    return f'"{name.split(".")[0]}"'
