"""One writer per line at a time, across every process sharing the database.

Inside one process an `asyncio.Lock` per number queues the writers: a burst of requests
to one number waits on the event loop, holding no thread and no connection. On
PostgreSQL the holder also takes a session-level advisory lock on the number. All of a
process's advisory locks live on one connection of its own (`AdvisoryLocks`), so a write
that fetches an image or waits for a device holds no pooled connection, and the server
releases every lock of a process that dies, at once. Requests for those locks are sent
together, one statement for all that are waiting. SQLite is one process's database: the
in-process lock is the whole rule there.

The write's first read (its line's state) may ride along with the lock's request
(`hold(phone, first=...)`): PostgreSQL runs it on the locks' connection right after the
lock is granted, in the same round trip, so it sees every commit made before the lock
was granted, and a write costs one round trip fewer. The read brings its own answer
(`FirstRead.answer`), so the holder gets a typed value, not rows.

Every wait is bounded: past `timeout` the write answers "too many writes waiting". Each
round trip on the locks' connection is bounded by the database timeout: past it the
connection is abandoned (`deadlines.py`), so its thread is free at once, every lock it
held is gone with it (the server drops them when it sees the connection closed), and the
waiting writes answer "database unavailable"; for a moment after, lock requests fail at
once rather than each waiting the bound again. The next request connects anew.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from contactcard.store.core import Row, Stmt, StoreUnavailable, pyformat
from contactcard.store.core.deadlines import abandon, connection_options

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class FirstRead(Protocol[T_co]):
    """What a holder may ask to read as soon as it holds the lock: the statement, and the
    value its rows answer (made on the event loop, once they are back)."""

    @property
    def stmt(self) -> Stmt: ...
    def answer(self, rows: list[Row]) -> T_co: ...


class LineBusy(Exception):
    """A line's lock was not free within the wait bound."""


class CrossProcessLocks(Protocol):
    async def acquire(self, phone: str, deadline: float, first: Stmt | None = None) -> list[Row] | None: ...
    def release(self, phone: str) -> None:  # hands the unlock over; never waits
        ...
    async def aclose(self) -> None: ...


class LineLocks:
    def __init__(self, *, timeout: float, shared: CrossProcessLocks | None = None) -> None:
        self._timeout = timeout
        self._shared = shared
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, phone: str, first: Callable[[], FirstRead[T] | None] | None = None) -> AsyncIterator[T | None]:
        """Hold the line's lock; yields the answer of `first()`'s read (called once the
        in-process lock is held) when the lock's request carried it, None when the holder
        must read for itself."""
        lock = self._locks.get(phone)
        if lock is None:
            lock = self._locks[phone] = asyncio.Lock()  # a strong reference while we wait or hold
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            # (`timeout`, not `wait_for`: no task of its own for every write.)
            async with asyncio.timeout(self._timeout):
                await lock.acquire()
        except TimeoutError:
            raise LineBusy(phone) from None
        try:
            read, rows = None, None
            if self._shared is not None:
                read = first() if first is not None else None
                rows = await self._shared.acquire(phone, deadline, read.stmt if read is not None else None)
            try:
                yield read.answer(rows) if read is not None and rows is not None else None
            finally:
                if self._shared is not None:
                    self._shared.release(phone)  # synchronous: a cancelled holder still unlocks
        finally:
            lock.release()

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()


def advisory_key(phone: str) -> int:
    return int.from_bytes(hashlib.sha256(phone.encode()).digest()[:8], "big", signed=True)


# Both lists in one statement: unlocks first, so a number released and asked for again in
# the same batch is granted.
_TRADE = (
    "SELECT (SELECT count(pg_advisory_unlock(u)) FROM unnest(%(release)s::bigint[]) AS u), "
    "ARRAY(SELECT pg_try_advisory_lock(k) FROM unnest(%(take)s::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n)"
)
# How often a lock held by another process is asked for again (they are held for
# milliseconds; two processes writing one number at once is rare).
_RETRY = 0.005
# How long lock requests fail at once after the locks' connection was abandoned, in seconds.
_DOWN_PAUSE = 1.0


class AdvisoryLocks:
    """PostgreSQL advisory locks of this process, all held on one connection.

    The connection is driven from a thread of its own: the event loop only hands over the
    numbers and awaits the answer, which keeps a busy write path's loop free for requests.
    """

    def __init__(self, conninfo: str, *, connect_timeout: float) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout  # also each round trip's bound
        self._connection: Any = None  # used only from the thread (and abandoned from the loop)
        self._trading: Any = None  # the connection of the round trip under way, under `_guard`
        self._guard = threading.Lock()
        self._down_until = 0.0
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="contactcard-locks")
        self._take: list[tuple[int, Stmt | None, asyncio.Future[tuple[bool, list[Row] | None]]]] = []
        self._release: list[int] = []
        self._sending: asyncio.Task[None] | None = None
        self._held: set[int] = set()

    async def acquire(self, phone: str, deadline: float, first: Stmt | None = None) -> list[Row] | None:
        key = advisory_key(phone)
        loop = asyncio.get_running_loop()
        while True:
            if time.monotonic() < self._down_until:
                raise StoreUnavailable("advisory locks: the database did not answer moments ago")
            waiter: asyncio.Future[tuple[bool, list[Row] | None]] = loop.create_future()
            self._take.append((key, first, waiter))
            self._kick()
            granted, rows = await waiter
            if granted:
                self._held.add(key)
                return rows
            if loop.time() + _RETRY > deadline:
                raise LineBusy(phone)
            await asyncio.sleep(_RETRY)

    def release(self, phone: str) -> None:
        key = advisory_key(phone)
        if key in self._held:
            self._held.discard(key)
            self._release.append(key)
            self._kick()

    def _kick(self) -> None:
        if self._sending is None or self._sending.done():
            self._sending = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        while self._take or self._release:
            take, self._take = self._take, []
            release, self._release = self._release, []
            if take and time.monotonic() < self._down_until:
                failure = StoreUnavailable("advisory locks: the database did not answer moments ago")
                for _, _, waiter in take:
                    if not waiter.done():
                        waiter.set_exception(failure)
                continue
            deadline = loop.call_later(self._connect_timeout, self._abandon)
            try:
                granted = await loop.run_in_executor(self._thread, self._trade, release, [(k, r) for k, r, _ in take])
            except Exception as exc:
                deadline.cancel()
                self._down_until = time.monotonic() + _DOWN_PAUSE
                # The connection is gone, and with it every lock it held (PostgreSQL
                # released them). Writes under way finish their current step; there is
                # nothing left to unlock for them. A new connection is made on demand.
                self._held.clear()
                failure = StoreUnavailable(f"advisory locks: {exc}")
                for _, _, waiter in take:
                    if not waiter.done():
                        waiter.set_exception(failure)
                continue
            deadline.cancel()
            for (key, _, waiter), (ok, rows) in zip(take, granted, strict=True):
                if not waiter.done():
                    waiter.set_result((bool(ok), rows))
                elif ok:  # the asker went away: give it back at once
                    self._release.append(key)

    def _abandon(self) -> None:
        """At a round trip's deadline, on the loop: break off the connection it waits on."""
        with self._guard:
            connection, self._trading = self._trading, None
        if connection is not None:
            self._down_until = time.monotonic() + _DOWN_PAUSE
            abandon(connection)

    def _trade(self, release: list[int], take: list[tuple[int, Stmt | None]]) -> list[tuple[bool, list[Row] | None]]:
        """In the thread: unlock `release`, try to lock `take`, then run the granted ones'
        first reads, in one round trip; closes the connection when it fails."""
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self._conninfo, autocommit=True, **connection_options(self._connect_timeout)
                )
            connection = self._connection
            with self._guard:
                self._trading = connection
            reads = [stmt for _, stmt in take]
            if not any(reads):
                row = connection.execute(_TRADE, {"release": release, "take": [k for k, _ in take]}).fetchone()
                return [(ok, None) for ok in (row[1] if row else [False] * len(take))]
            with connection.pipeline():
                traded = connection.execute(_TRADE, {"release": release, "take": [k for k, _ in take]})
                # Sent whether granted or not (the grants are not known yet): each takes
                # its snapshot after the locks were traded. A refused one's is dropped.
                cursors = [connection.execute(pyformat(s.sql), s.params) if s else None for s in reads]
                row = traded.fetchone()
                granted = row[1] if row else [False] * len(take)
                return [(ok, c.fetchall() if c else None) for ok, c in zip(granted, cursors, strict=True)]
        except Exception:
            self._close()
            raise
        finally:
            with self._guard:
                self._trading = None

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                pass

    async def aclose(self) -> None:
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)
