"""Serialised writes to one line: one writer per phone number at a time.

Inside one process an `asyncio.Lock` per number queues the writers, so a burst of
requests to one number waits on the event loop rather than holding threads and pool
connections. On PostgreSQL the holder also takes a session-level advisory lock on a
dedicated connection, which extends the rule to every process sharing the database and
is released by the server if the process dies. SQLite is one process's database.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Connection

from contactcard.store.db import Database

T = TypeVar("T")


class LineWriter:
    """A held line: run transactions on the connection that holds its lock."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def run(self, work: Callable[..., T], *args: object) -> T:
        """Run `work(connection, *args)` in a worker thread, in one committed transaction."""
        return await anyio.to_thread.run_sync(self._transaction, work, args)

    def _transaction(self, work: Callable[..., T], args: tuple) -> T:
        with self._connection.begin():
            return work(self._connection, *args)


def _advisory_key(phone: str) -> int:
    return int.from_bytes(hashlib.sha256(phone.encode()).digest()[:8], "big", signed=True)


class LineGate:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _local_lock(self, phone: str) -> asyncio.Lock:
        lock = self._locks.get(phone)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[phone] = lock
        return lock

    @asynccontextmanager
    async def hold(self, phone: str) -> AsyncIterator[LineWriter]:
        lock = self._local_lock(phone)  # a strong reference for as long as we wait or hold
        async with lock:
            connection = await anyio.to_thread.run_sync(self._database.writer.connect)
            try:
                if self._database.dialect == "postgresql":
                    await anyio.to_thread.run_sync(self._advisory, connection, "pg_advisory_lock", phone)
                try:
                    yield LineWriter(connection)
                finally:
                    if self._database.dialect == "postgresql":
                        await anyio.to_thread.run_sync(
                            self._advisory, connection, "pg_advisory_unlock", phone, abandon_on_cancel=False
                        )
            finally:
                await anyio.to_thread.run_sync(connection.close, abandon_on_cancel=False)

    @staticmethod
    def _advisory(connection: Connection, function: str, phone: str) -> None:
        connection.exec_driver_sql(f"SELECT {function}(%(key)s)", {"key": _advisory_key(phone)})
        connection.commit()
