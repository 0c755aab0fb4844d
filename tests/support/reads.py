"""Watching the read path of an in-thread server: which lookups it runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from contactcard.store.reads import _PG_VERSION


@contextmanager
def recorded_lookups(server: Any) -> Iterator[list[str]]:
    """The SQL of every lookup the server's read path runs while the block executes (on
    PostgreSQL the GET memo's own version question is not a lookup, so it is left out)."""
    reads = server.framework.state.cards._reads
    original, original_async = reads._rows, reads._rows_async
    seen: list[str] = []

    def recording(sql: str, params: tuple, many: bool):
        seen.append(sql)
        return original(sql, params, many)

    async def recording_async(sql: str, params: tuple, many: bool):
        # On SQLite this calls `_rows`, which records already.
        if reads._postgres and sql != _PG_VERSION:
            seen.append(sql)
        return await original_async(sql, params, many)

    reads._rows, reads._rows_async = recording, recording_async
    try:
        yield seen
    finally:
        del reads._rows, reads._rows_async
