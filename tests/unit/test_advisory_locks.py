"""The PostgreSQL line locks (store/locks.py) with the write's first read riding along:
the read answers only once the lock is granted, and sees what the previous holder
committed, across two lock connections as two server processes have them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import psycopg
import pytest

from contactcard.bootstrap import _conninfo
from contactcard.store.core import Stmt
from contactcard.store.core.locks import AdvisoryLocks, LineBusy, LineLocks
from tests.support.databases import own_database

PHONE = "+15550003333"


@dataclass(frozen=True)
class MarkRead:
    """A first read as the write path makes one: the statement, and the value its rows answer."""

    stmt: Stmt

    def answer(self, rows: list) -> int:
        (value,) = rows[0]
        return int(value)


READ = MarkRead(Stmt("SELECT value FROM marks WHERE phone = :phone", {"phone": PHONE}, rows=True))


@pytest.fixture
def conninfo(postgres_url):
    if postgres_url is None:
        pytest.skip("PostgreSQL tests need CONTACTCARD_TEST_POSTGRES_URL (CI sets it)")
    with own_database("postgres", postgres_url) as url:
        assert url is not None
        info = _conninfo(url)
        with psycopg.connect(info, autocommit=True) as conn:
            conn.execute("CREATE TABLE marks (phone TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            conn.execute("INSERT INTO marks VALUES (%s, 0)", (PHONE,))
        yield info


def _set(conninfo: str, value: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("UPDATE marks SET value = %s WHERE phone = %s", (value, PHONE))


def test_the_next_holder_reads_what_the_previous_one_committed(conninfo):
    async def scenario() -> tuple[int | None, int | None, float]:
        one = LineLocks(timeout=5, shared=AdvisoryLocks(conninfo, connect_timeout=2))
        two = LineLocks(timeout=5, shared=AdvisoryLocks(conninfo, connect_timeout=2))
        holding = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def first_holder() -> int | None:
            async with one.hold(PHONE, lambda: READ) as value:
                holding.set()
                await asyncio.sleep(0.3)  # the other process asks meanwhile, and is refused
                await asyncio.to_thread(_set, conninfo, 7)  # committed before the release
            return value

        async def second_holder() -> tuple[int | None, float]:
            await holding.wait()
            asked = loop.time()
            async with two.hold(PHONE, lambda: READ) as value:
                return value, loop.time() - asked

        try:
            first, (second, waited) = await asyncio.gather(first_holder(), second_holder())
        finally:
            await one.aclose()
            await two.aclose()
        return first, second, waited

    first, second, waited = asyncio.run(scenario())
    assert first == 0
    assert second == 7  # not the value as it was when the second process first asked
    assert waited >= 0.25


def test_no_first_read_yields_none_and_a_held_line_is_busy_past_the_bound(conninfo):
    async def scenario() -> tuple[object, bool]:
        one = LineLocks(timeout=5, shared=AdvisoryLocks(conninfo, connect_timeout=2))
        two = LineLocks(timeout=0.2, shared=AdvisoryLocks(conninfo, connect_timeout=2))
        try:
            async with one.hold(PHONE) as rows:
                try:
                    async with two.hold(PHONE, lambda: READ):
                        busy = False
                except LineBusy:
                    busy = True
        finally:
            await one.aclose()
            await two.aclose()
        return rows, busy

    rows, busy = asyncio.run(scenario())
    assert rows is None
    assert busy
