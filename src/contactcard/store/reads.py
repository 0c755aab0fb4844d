"""The read path: key, ownership and cards in one statement on a raw DB-API connection.

GET is the hot path, so it skips the ORM layers: one prepared statement, rows turned
straight into the dicts the API answers with.

`memo()` gives the HTTP layer a place to keep GET answers that can never be stale: see
`core/memo.py` for why it is exact on both databases.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from contactcard.card import WireCard, wire
from contactcard.store.core import StoreUnavailable
from contactcard.store.core.commits import CommitLog, CountLog
from contactcard.store.core.deadlines import abandon, connection_options, sweep
from contactcard.store.core.memo import BatchMemo, Memo, TurnMemo
from contactcard.store.core.sqlite import read_change_count

_ONE = """
SELECT k.key_hash, k.partner_id, l.partner_id,
       c.phone_number, c.first_name, c.last_name, c.image_blob, c.is_active
FROM api_keys AS k
LEFT JOIN lines AS l ON l.phone_number = {p}
LEFT JOIN cards AS c ON c.phone_number = l.phone_number
WHERE k.key_hash = {p} AND k.revoked_at IS NULL
"""
_ALL = """
SELECT k.key_hash, k.partner_id,
       c.phone_number, c.first_name, c.last_name, c.image_blob, c.is_active
FROM api_keys AS k
LEFT JOIN lines AS l ON l.partner_id = k.partner_id
LEFT JOIN cards AS c ON c.phone_number = l.phone_number
WHERE k.key_hash = {p} AND k.revoked_at IS NULL
ORDER BY l.phone_number
"""

# A card as the API answers it (not the domain `Card`: the read path never builds one).
CardDict = WireCard


# Moves whenever a transaction that had an id ends, on the whole PostgreSQL server: a
# conservative "anyone committed" (PostgreSQL 13 and later).
# How long reads fail fast after the database proved unreachable, in seconds.
_DOWN_PAUSE = 1.0
_PG_VERSION = "SELECT pg_current_snapshot()::text"


class _Reader:
    """One thread's SQLite connection and its memo."""

    __slots__ = ("connection", "memo")

    def __init__(self, connection: sqlite3.Connection, counts: CountLog | None) -> None:
        self.connection = connection
        # Moves with every change to a key, a line or a card, by anyone (`store/schema.py`).
        self.memo = TurnMemo(
            lambda: read_change_count(connection), counts.lines_changed if counts is not None else None
        )


@dataclass(frozen=True)
class LineAccess:
    """What one key may see of one line."""

    partner_id: str | None  # None: unknown or revoked key
    owns_line: bool
    card: CardDict | None


class CardReads:
    def __init__(
        self,
        database_url: str,
        cdn_prefix: str,
        *,
        memo: bool = False,
        timeout: float = 2.0,
        commits: CommitLog | CountLog | None = None,
    ) -> None:
        self._prefix = cdn_prefix
        self._memo_enabled = memo
        self._timeout = timeout  # longest wait for the database before "unavailable"
        url = make_url(database_url)
        self._postgres = url.get_backend_name() != "sqlite"
        if not self._postgres:
            self._path = url.database or ":memory:"
            self._local = threading.local()
            marker = "?"
        else:
            self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
            marker = "%s"
        self._down_until = 0.0  # monotonic time before which reads fail fast
        self._async_pool: Any = None  # psycopg_pool.AsyncConnectionPool, opened on the first GET
        self._async_pool_opened: asyncio.Future[None] | None = None
        self._closing: asyncio.Future[None] | None = None  # a replaced pool, closing
        self._pool_failed = False  # the last pool gave no connection in time
        self._probing = False  # a read is asking on a connection of its own
        # With this process's commit log, a move of the version caused only by its own
        # writes drops only their lines' answers (`core/commits.py`).
        self._pg_memo = BatchMemo(self._pg_version, commits.lines_changed if isinstance(commits, CommitLog) else None)
        self._counts = commits if isinstance(commits, CountLog) else None
        self._one = _ONE.format(p=marker)
        self._all = _ALL.format(p=marker)

    async def _pg_version(self) -> object:
        row = await self._rows_async(_PG_VERSION, (), many=False)
        return row[0] if row else None

    async def aclose(self) -> None:
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)
        if self._async_pool is not None:
            await self._async_pool.close()
            self._async_pool = self._async_pool_opened = None

    async def _rows_async(self, sql: str, params: tuple[Any, ...], many: bool) -> Any:
        """The rows of a read, awaited. SQLite answers in microseconds, so it is asked
        directly; PostgreSQL goes through an asynchronous pool, never blocking the loop."""
        if not self._postgres:
            try:
                return self._rows(sql, params, many)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
        import psycopg
        from psycopg_pool import PoolTimeout

        # Once the database proved unreachable, reads fail at once for a moment: a GET makes
        # two reads (memo, then the card), and each waiting its own bound would double the
        # time to the answer.
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("the database was unreachable moments ago")
        loop = asyncio.get_running_loop()
        # One bound for the whole read, the retry on a dropped connection included. Past it
        # the connection is abandoned (`core/deadlines.py`), not cancelled: a cancellation would
        # wait for a server that may never answer.
        deadline = loop.time() + self._timeout
        try:
            if self._async_pool is None and self._pool_failed:
                # The last pool had no connection to give: one connection of the read's own
                # says at once whether the database is back (a refusal takes milliseconds,
                # where a pool would wait its whole timeout).
                return await self._read_alone(sql, params, many, deadline)
            pool = await self._pool()
            for attempt in (1, 2):
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                try:
                    async with pool.connection(timeout=left) as connection:
                        timer = loop.call_at(deadline, abandon, connection)
                        try:
                            # Prepared once per connection: PostgreSQL then skips parsing and planning.
                            cursor = await connection.execute(sql, params, prepare=True)
                            return await (cursor.fetchall() if many else cursor.fetchone())
                        finally:
                            timer.cancel()
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    # A connection the database dropped is discarded by the pool; try once more.
                    if attempt == 2 or loop.time() >= deadline:
                        raise
        except (TimeoutError, PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
            self._down_until = time.monotonic() + _DOWN_PAUSE
            self._replace_pool()
            raise StoreUnavailable(str(exc) or "no answer from the database in time") from exc
        return None  # unreachable

    async def _read_alone(self, sql: str, params: tuple[Any, ...], many: bool, deadline: float) -> Any:
        import psycopg

        if self._probing:  # one read at a time asks; the others would only add connections
            raise StoreUnavailable("the database was unreachable moments ago")
        self._probing = True
        loop = asyncio.get_running_loop()
        try:
            connection = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, **connection_options(self._timeout)
            )
            timer = loop.call_at(deadline, abandon, connection)
            try:
                cursor = await connection.execute(sql, params)
                rows = await (cursor.fetchall() if many else cursor.fetchone())
            finally:
                timer.cancel()
                await connection.close()
        finally:
            self._probing = False
        self._pool_failed = False  # back: the next read opens a pool again
        sweep()
        return rows

    def _replace_pool(self) -> None:
        """A read failed: the pool's reconnection attempts would back off (1, 2, 4 s ...),
        keeping GETs failing for seconds after the database is back, and each GET would wait
        the pool's whole timeout for a connection a stopped database refuses at once. The
        next read makes one connection of its own instead (`_read_alone`), then a new pool;
        the old one closes meanwhile."""
        old, self._async_pool, self._async_pool_opened = self._async_pool, None, None
        self._pool_failed = True
        if old is not None:
            self._closing = asyncio.ensure_future(old.close(timeout=self._timeout))

    async def _pool(self) -> Any:
        if self._async_pool_opened is None:
            from psycopg_pool import AsyncConnectionPool

            # Connections are made in the background; a GET waits at most `timeout` seconds
            # for one (then it answers "database unavailable"). One stays open; those a
            # burst opens close after 30 s idle, so that several processes stay well
            # inside PostgreSQL's default 100 connections.
            self._async_pool = AsyncConnectionPool(
                self._conninfo,
                min_size=1,
                max_size=4,
                max_idle=30,
                kwargs={"autocommit": True, **connection_options(self._timeout)},
                timeout=self._timeout,
                open=False,
            )
            # Every GET that arrives while the pool opens waits for the same opening.
            self._async_pool_opened = asyncio.ensure_future(self._async_pool.open(wait=False))
        try:
            await self._async_pool_opened
        except Exception:
            self._async_pool = self._async_pool_opened = None  # the next GET tries again
            raise
        return self._async_pool

    def pool_use(self) -> tuple[int, int, int]:
        """The GET pool's connections: (open, idle, requests waiting for one); zeros on SQLite
        or before the first GET opens it."""
        pool = self._async_pool
        if pool is None:
            return (0, 0, 0)
        stats = pool.get_stats()
        return (stats.get("pool_size", 0), stats.get("pool_available", 0), stats.get("requests_waiting", 0))

    def _rows(self, sql: str, params: tuple[Any, ...], many: bool) -> Any:
        # fetchall even for one row: the statement is finished and holds no snapshot.
        rows = self._reader().connection.execute(sql, params).fetchall()
        return rows if many else (rows[0] if rows else None)

    def _reader(self) -> _Reader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = _Reader(self._sqlite(), self._counts)
        return reader

    def _sqlite(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA query_only=ON")
        connection.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        # Read pages through the OS page cache directly: a large database costs a GET no
        # more than a small one once its hot pages are mapped.
        connection.execute("PRAGMA mmap_size=1073741824")
        return connection

    def _card(self, row: tuple[Any, ...], at: int) -> CardDict:
        blob = row[at + 3]
        return wire(row[at], row[at + 1], row[at + 2], self._prefix + blob if blob else None, row[at + 4])

    async def line_access_async(self, key_hash: str, phone: str) -> LineAccess:
        row = await self._rows_async(self._one, (phone, key_hash), many=False)
        return self._line_access(row, key_hash)

    async def memo(self) -> Memo | None:
        """A dict for GET answers, emptied whenever the database changed; None when off.
        Callers bound its size."""
        if not self._memo_enabled:
            return None
        if not self._postgres:
            try:
                return self._reader().memo.current()
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
        return await self._pg_memo.current()

    def _line_access(self, row: tuple[Any, ...] | None, key_hash: str) -> LineAccess:
        if row is None or not hmac.compare_digest(row[0], key_hash):
            return LineAccess(None, False, None)
        owns = row[2] is not None and row[2] == row[1]
        card = self._card(row, 3) if owns and row[3] is not None else None
        return LineAccess(row[1], owns, card)

    async def partner_cards(self, key_hash: str) -> tuple[str | None, list[CardDict]]:
        """The partner of a key and all of its cards, ordered by phone number."""
        rows = await self._rows_async(self._all, (key_hash,), many=True)
        if not rows or not hmac.compare_digest(rows[0][0], key_hash):
            return None, []
        prefix = self._prefix
        # Unpacked here rather than `_card` per row: this loop is most of GET-all's own cost.
        return rows[0][1], [
            wire(phone, first, last, prefix + blob if blob else None, active)
            for _, _, phone, first, last, blob, active in rows
            if phone is not None
        ]
