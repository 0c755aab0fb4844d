"""What the writers tell the GET memo's logs (store/commits.py) when a batch fails: the
rolled-back batch tells nothing, and each transaction run again on its own tells its own
lines, on a real SQLite file and the machine's PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from contactcard.bootstrap import _conninfo
from contactcard.store.core import Stmt, StoreUnavailable, Writer
from contactcard.store.core.commits import CommitLog, CountLog
from contactcard.store.core.postgres import postgres_writer
from contactcard.store.core.sqlite import sqlite_writer
from contactcard.store.core.writer import _disconnect, _Job
from contactcard.store.db import connect, migrate
from tests.support.databases import own_database

PHONE = "+15550001111"
RENAME = "UPDATE cards SET first_name = :name WHERE phone_number = :phone"
BROKEN = "UPDATE change_count SET id = 2 WHERE id = 1"  # the table's CHECK refuses it


def _seed(url: str) -> None:
    database = connect(url)
    try:
        migrate(database)
        now = datetime.now(UTC)
        with database.writer.begin() as conn:
            conn.execute(text("INSERT INTO partners (id, name, created_at) VALUES ('p1', 'P', :now)"), {"now": now})
            conn.execute(
                text("INSERT INTO lines (phone_number, partner_id, created_at) VALUES (:phone, 'p1', :now)"),
                {"phone": PHONE, "now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO cards (phone_number, id, first_name, is_active, ever_active, created_at, updated_at) "
                    "VALUES (:phone, 'c1', 'Before', true, true, :now, :now)"
                ),
                {"phone": PHONE, "now": now},
            )
    finally:
        database.dispose()


def _run_one_batch(writer: Writer) -> tuple[object, object]:
    """A good transaction and a broken one in the same batch; what each was answered."""

    async def scenario() -> tuple[object, object]:
        loop = asyncio.get_running_loop()
        good = _Job([Stmt(RENAME, {"name": "After", "phone": PHONE})], loop.create_future(), loop, frozenset({PHONE}))
        bad = _Job([Stmt(BROKEN, {})], loop.create_future(), loop, frozenset({"+15550002222"}))

        def serve() -> None:  # as a writer thread does, on a connection of its own
            _disconnect(writer._serve_batch(None, [good, bad]))

        await asyncio.to_thread(serve)
        answers = await asyncio.gather(good.future, bad.future, return_exceptions=True)
        return answers[0], answers[1]

    return asyncio.run(scenario())


def test_sqlite_a_rerun_transaction_tells_its_own_range_and_the_failed_batch_nothing(tmp_path):
    path = tmp_path / "w.db"
    _seed(f"sqlite:///{path}")
    counts = CountLog()
    writer = sqlite_writer(str(path), timeout=2, counts=counts)
    good, bad = _run_one_batch(writer)
    assert good == [[]] and isinstance(bad, Exception) and not isinstance(bad, StoreUnavailable)
    # One range: the rename's (its trigger counted once), after the rolled-back batch.
    assert [lines for _, lines in counts._ranges.values()] == [frozenset({PHONE})]
    ((start, (end, _)),) = counts._ranges.items()
    assert end == start + 1
    assert counts.lines_changed(start, end) == {PHONE}


def test_postgres_a_rerun_transaction_tells_its_own_id_and_the_failed_batch_nothing(postgres_url):
    if postgres_url is None:
        pytest.skip("PostgreSQL tests need CONTACTCARD_TEST_POSTGRES_URL (CI sets it)")
    with own_database("postgres", postgres_url) as url:
        assert url is not None
        _seed(url)
        database = connect(url)
        try:
            with database.writer.begin() as conn:  # the row the broken statement needs (SQLite's migration adds it)
                conn.execute(text("INSERT INTO change_count (id, n) VALUES (1, 0)"))
        finally:
            database.dispose()
        commits = CommitLog()
        writer = postgres_writer(_conninfo(url), timeout=2, reads=False, commits=commits)
        good, bad = _run_one_batch(writer)
        assert good == [[]] and isinstance(bad, Exception) and not isinstance(bad, StoreUnavailable)
        assert list(commits._known.values()) == [frozenset({PHONE})]
