"""Blobs in a local folder, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from contactcard.cdn.base import BLOB_NAME, Blob, BlobStoreUnavailable, content_type, etag


class LocalFolderCdn:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._folder.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        if not BLOB_NAME.fullmatch(name):
            raise ValueError(f"not a content-addressed blob name: {name!r}")
        target = self._folder / name
        if target.exists():  # same name, same bytes
            return
        # Write aside, fsync, then rename: a crash never leaves a half-written image.
        fd, temporary = tempfile.mkstemp(dir=self._folder, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException as exc:
            Path(temporary).unlink(missing_ok=True)
            if isinstance(exc, OSError):  # a full or read-only disk: the write fails cleanly
                raise BlobStoreUnavailable(str(exc)) from exc
            raise

    def get(self, name: str) -> Blob | None:
        if not BLOB_NAME.fullmatch(name):
            return None
        try:
            data = (self._folder / name).read_bytes()
        except FileNotFoundError:
            return None
        return Blob(data=data, content_type=content_type(name), etag=etag(name))

    def ping(self) -> None:
        if not os.access(self._folder, os.W_OK):
            raise BlobStoreUnavailable(f"{self._folder} is not writable")
