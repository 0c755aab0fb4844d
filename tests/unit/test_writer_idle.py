"""A PostgreSQL writer's unused connection that the database ends (a restart, a
terminated session) is dropped within a look or two (`PostgresDialect.idle_check`), not held
half-closed until its next use; the next transaction connects again."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psycopg
import pytest

from contactcard.bootstrap import _conninfo
from contactcard.store.core import Stmt
from contactcard.store.core.postgres import postgres_writer
from tests.support.databases import own_database


@pytest.fixture
def conninfo(postgres_url):
    if postgres_url is None:
        pytest.skip("PostgreSQL tests need CONTACTCARD_TEST_POSTGRES_URL (CI sets it)")
    with own_database("postgres", postgres_url) as url:
        assert url is not None
        yield _conninfo(url)


def half_closed_sockets(port: int) -> int:
    """This process's sockets to `port` that the other end closed (CLOSE_WAIT)."""
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "08" and fields[9] in ours:
                count += 1
    return count


def test_an_unused_connection_the_database_ended_is_dropped_and_the_next_write_connects(conninfo):
    port = psycopg.conninfo.conninfo_to_dict(conninfo).get("port") or 5432
    writer = postgres_writer(conninfo, timeout=5, reads=False)
    try:

        async def backend() -> int:
            rows = await writer.read(Stmt("SELECT pg_backend_pid()", {}, rows=True))
            return int(rows[0][0])

        first = asyncio.run(backend())
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        ended_at = time.monotonic()
        seen_half_closed = False
        while time.monotonic() - ended_at < 5:
            count = half_closed_sockets(int(port))
            seen_half_closed = seen_half_closed or count > 0
            if count == 0 and time.monotonic() - ended_at > 0.2:
                break
            time.sleep(0.05)
        dropped_after = time.monotonic() - ended_at
        assert half_closed_sockets(int(port)) == 0, "the ended connection is still held"
        assert dropped_after < writer.dialect.idle_close, dropped_after  # well before the idle close
        second = asyncio.run(backend())  # a fresh connection, at once
        assert second != first
    finally:
        writer.close()


def test_a_delivery_process_writer_commits_without_waiting_for_the_disk(conninfo, tmp_path):
    """Claims and outcomes only (bootstrap.delivery_services): `durable=False`."""
    from contactcard.store.core.sqlite import sqlite_writer
    from contactcard.store.db import connect, migrate

    async def setting(writer, sql: str) -> str:
        await writer.run([Stmt("SELECT 1", {})])  # the writer's own connection is open
        return str((await writer.read(Stmt(sql, {}, rows=True)))[0][0])

    for durable, wanted in ((True, "on"), (False, "off")):
        writer = postgres_writer(conninfo, timeout=5, reads=False, durable=durable)
        try:
            assert asyncio.run(setting(writer, "SHOW synchronous_commit")) == wanted
        finally:
            writer.close()

    database = connect(f"sqlite:///{tmp_path / 'd.db'}")
    migrate(database)
    database.dispose()
    for durable, level in ((True, 2), (False, 1)):  # FULL, NORMAL
        sqlite = sqlite_writer(str(tmp_path / "d.db"), timeout=5, durable=durable)
        try:
            rows = asyncio.run(sqlite.run([Stmt("PRAGMA synchronous", {}, rows=True)]))
            assert rows[0][0][0] == level
        finally:
            sqlite.close()
