"""SQLite's side of the core: one file, one writer at a time, reads beside it.

- The writer's connection commits with `synchronous=FULL` (a write the server
  acknowledged survives a crash of the machine too), or `NORMAL` for a webhook delivery
  process (`durable=False`): its commits are claims and outcomes, and one lost to a power
  cut is an attempt made once more, which at-least-once delivery allows; without a sync
  of their own they hold the file's one write lock for microseconds instead of a disk
  flush, which the card writes would wait behind.
- A batch under way is never broken off: the busy timeout bounds how long another
  process holding the file's lock (the admin CLI, say) is waited for.
- The write path's reads need no writer: in WAL mode a plain SELECT on the event loop's
  own read-only connection sees every commit and takes microseconds (`LoopReads`).
- The GET memo's version is the `change_count` row (`store/schema.py`): the writer reads
  it when a batch begins and before it commits, and tells the `CountLog` the range.
"""

from __future__ import annotations

import sqlite3

from contactcard.store.core.commits import CountLog
from contactcard.store.core.errors import StoreUnavailable
from contactcard.store.core.statements import Lines, Row, Stmt, Tx, sqlite_value
from contactcard.store.core.writer import Results, Writer

_COUNT = "SELECT n FROM change_count WHERE id = 1"


def sqlite_writer(path: str, *, timeout: float, counts: CountLog | None = None, durable: bool = True) -> Writer:
    """The writer of the SQLite file at `path`; `counts` is told of each commit whose lines
    are known (the GET memo reads it)."""
    dialect = SqliteDialect(path, timeout=timeout, counts=counts, durable=durable)
    return Writer(dialect, timeout=timeout, reads=LoopReads(path, timeout=timeout))


def read_change_count(connection: sqlite3.Connection) -> int | None:
    row = connection.execute(_COUNT).fetchone()
    return row[0] if row else None


class SqliteDialect:
    idle_close: float | None = None
    idle_check: float | None = None
    composes_writes = False
    abandons = False
    abandoned_may_commit = False

    def __init__(self, path: str, *, timeout: float, counts: CountLog | None = None, durable: bool = True) -> None:
        self._path = path
        self._timeout = timeout
        self._synchronous = "FULL" if durable else "NORMAL"
        self._counts = counts

    def connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={self._synchronous}")
            connection.execute("PRAGMA foreign_keys=ON")
            # Another process holding the file's write lock is waited for this long, then
            # the batch answers "database unavailable".
            connection.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        return connection

    def commit(self, connection: sqlite3.Connection, txs: list[Tx], lines: Lines) -> Results:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        counts = self._counts if lines is not None else None  # told only what it can use
        try:
            # Read under the write lock: nobody else can move the count until the commit.
            before = read_change_count(connection) if counts is not None else None
            results = [[_rows(connection, stmt) for stmt in tx] for tx in txs]
            after = read_change_count(connection) if counts is not None else None
            connection.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(connection)
            # Locked, read-only, disk full, I/O error: the database refuses, not the request.
            raise StoreUnavailable(str(exc)) from exc
        except BaseException:
            _rollback(connection)
            raise
        if counts is not None and lines is not None and before is not None and after is not None and after != before:
            counts.record(before, after, lines)
        return results

    def closed_by_database(self, connection: sqlite3.Connection) -> bool:
        return False  # a file does not hang up

    def abandon(self, connection: sqlite3.Connection) -> None:
        pass  # never called: `abandons` is False


class LoopReads:
    """The write path's reads, on a read-only connection of the event loop's own."""

    def __init__(self, path: str, *, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        self._reader: sqlite3.Connection | None = None

    async def read(self, stmt: Stmt) -> list[Row]:
        try:
            if self._reader is None:
                self._reader = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                self._reader.execute("PRAGMA query_only=ON")
                self._reader.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            return self._reader.execute(stmt.sql, {k: sqlite_value(v) for k, v in stmt.params.items()}).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _rows(connection: sqlite3.Connection, stmt: Stmt) -> list[Row]:
    cursor = connection.execute(stmt.sql, {k: sqlite_value(v) for k, v in stmt.params.items()})
    return cursor.fetchall() if stmt.rows else []


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error:
        pass
