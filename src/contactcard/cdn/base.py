"""What the server needs from a CDN."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

# Content-addressed names: sha256 hex and an extension; nothing else is ever served.
BLOB_NAME = re.compile(r"[0-9a-f]{64}\.(jpg|png)")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


@dataclass(frozen=True)
class Blob:
    data: bytes
    content_type: str
    etag: str


class BlobStore(Protocol):
    def put(self, name: str, data: bytes) -> None:
        """Store `data` under a content-addressed `name` (idempotent). Blocking."""
        ...

    def get(self, name: str) -> Blob | None:
        """The blob stored under `name`, or None. Blocking."""
        ...
