"""Watching the read path of an in-thread server: which lookups it runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from contactcard.store.reads import _PG_VERSION

T = TypeVar("T")


class Lookups(list[str]):
    """The SQL of the lookups seen, and whether the PostgreSQL memo's version moved while
    watching. That version is the cluster's snapshot, so any commit anywhere on the
    cluster (another test worker's database included) rightly empties the memo."""

    moved: bool = False


@contextmanager
def recorded_lookups(server: Any) -> Iterator[Lookups]:
    """The SQL of every lookup the server's read path runs while the block executes (on
    PostgreSQL the GET memo's own version question is not a lookup, so it is left out)."""
    reads = server.framework.state.cards._reads
    original, original_async = reads._rows, reads._rows_async
    seen = Lookups()
    before = reads._pg_memo._version

    def recording(sql: str, params: tuple, many: bool):
        seen.append(sql)
        return original(sql, params, many)

    async def recording_async(sql: str, params: tuple, many: bool):
        # On SQLite this calls `_rows`, which records already.
        if not reads._postgres:
            return await original_async(sql, params, many)
        if sql != _PG_VERSION:
            seen.append(sql)
            return await original_async(sql, params, many)
        version = await original_async(sql, params, many)
        if (version[0] if version else None) != before:
            seen.moved = True
        return version

    reads._rows, reads._rows_async = recording, recording_async
    try:
        yield seen
    finally:
        del reads._rows, reads._rows_async


def lookups_while_still(
    server: Any, block: Callable[[], T], rewarm: Callable[[], object], attempts: int = 200
) -> tuple[Lookups, T]:
    """The lookups `block()` ran, from the first of `attempts` tries during which no commit
    anywhere moved the memo's version (always the first try on SQLite, whose version is
    the database file's own). Before each try `rewarm()` fills the memo as the test needs
    it. A memo that is never used fails every try."""
    for _ in range(attempts):
        # Warmed on every try, the first too: a move during the test's own warm-up would
        # otherwise go unseen (the version it moved to is the one the block starts from).
        with recorded_lookups(server) as warming:
            rewarm()
        with recorded_lookups(server) as seen:
            result = block()
        # A move while rewarming may have emptied the memo half-way through.
        if not warming.moved and not seen.moved:
            return seen, result
    raise AssertionError(f"the database's version moved during each of {attempts} tries")
