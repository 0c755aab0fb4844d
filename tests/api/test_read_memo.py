"""The GET memo on SQLite (store/reads.py, http/cards.py): fast, and never stale.

A GET by number is answered from memory while the database is unchanged. These tests
change the database behind the server's back (another connection, another process) and
check that the very next GET sees the change, and that the memo is really in use, so that
they would catch a memo that is never emptied.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import Partner, RunningServer, make_partner

SQLITE = "sqlite"


@pytest.fixture
def sqlite_server(farm) -> RunningServer:
    return farm.get(SQLITE)


@pytest.fixture
def owner(sqlite_server) -> Partner:
    partner = make_partner(sqlite_server)
    partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Before")
    return partner


@contextmanager
def counting_statements(server: RunningServer) -> Iterator[list[str]]:
    """The statements the read path runs while the block executes."""
    reads = server.framework.state.cards._reads
    original = reads._rows
    seen: list[str] = []

    def recording(sql: str, params: tuple, many: bool):
        seen.append(sql)
        return original(sql, params, many)

    reads._rows = recording
    try:
        yield seen
    finally:
        del reads._rows


def database_file(server: RunningServer) -> str:
    return make_url(server.settings.resolved_database_url).database


@contextmanager
def another_connection(server: RunningServer) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(database_file(server), isolation_level=None, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def get_one(partner: Partner, phone: str) -> httpx.Response:
    with partner.http() as http:
        return http.get("/v3/contact_card", params={"phone_number": phone})


def test_a_repeated_get_is_answered_without_a_statement(owner):
    phone = owner.lines[0]
    first = get_one(owner, phone)
    with counting_statements(owner.server) as seen:
        again = [get_one(owner, phone) for _ in range(3)]
    assert seen == []
    assert [a.content for a in again] == [first.content] * 3
    assert all(a.status_code == 200 and a.headers["x-trace-id"] for a in again)
    assert len({a.headers["x-trace-id"] for a in again}) == 3  # the trace id is per request


def test_head_from_the_memo_has_no_body(owner):
    phone = owner.lines[0]
    full = get_one(owner, phone)
    with owner.http() as http, counting_statements(owner.server) as seen:
        head = http.head("/v3/contact_card", params={"phone_number": phone})
    assert seen == []
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(full.content))


def test_a_write_by_another_connection_is_seen_by_the_next_get(owner):
    phone = owner.lines[0]
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Before"
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Before"  # memoised
    with another_connection(owner.server) as conn:
        conn.execute("UPDATE cards SET first_name = 'Behind' WHERE phone_number = ?", (phone,))
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Behind"


def test_a_write_through_the_api_is_seen_by_the_next_get(owner):
    phone = owner.lines[0]
    get_one(owner, phone)
    get_one(owner, phone)
    owner.client().contact_card.update(phone_number=phone, first_name="Patched")
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Patched"


def test_a_key_revoked_by_another_process_is_refused_at_once(owner):
    phone = owner.lines[0]
    assert get_one(owner, phone).status_code == 200
    assert get_one(owner, phone).status_code == 200
    env = {**os.environ, "CONTACTCARD_DATA_DIR": str(owner.server.settings.data_dir)}
    env.pop("CONTACTCARD_DATABASE_URL", None)
    revoked = subprocess.run(
        [sys.executable, "-m", "contactcard", "admin", "key", "revoke", owner.key_id],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr
    answer = get_one(owner, phone)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, 2004)


def test_a_line_given_to_another_partner_is_refused_at_once(owner, sqlite_server):
    phone = owner.lines[0]
    other = make_partner(sqlite_server, lines=0)
    assert get_one(owner, phone).status_code == 200
    assert get_one(owner, phone).status_code == 200
    with another_connection(owner.server) as conn:
        conn.execute("UPDATE lines SET partner_id = ? WHERE phone_number = ?", (other.id, phone))
    answer = get_one(owner, phone)
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, 2005)


def test_refusals_are_not_memoised(owner, other_partner_on_sqlite):
    phone = owner.lines[0]
    for _ in range(2):
        with counting_statements(owner.server) as seen:
            assert get_one(other_partner_on_sqlite, phone).status_code == 403
        assert len(seen) == 1


@pytest.fixture
def other_partner_on_sqlite(sqlite_server) -> Partner:
    return make_partner(sqlite_server)


def test_the_memo_keeps_at_most_its_size(farm):
    server = farm.get(SQLITE, read_cache_size=2)
    partner = make_partner(server, lines=3)
    for phone, name in zip(partner.lines, ("Ada", "Bo", "Cy"), strict=True):
        partner.client().contact_card.create(phone_number=phone, first_name=name)

    def names() -> list[str]:
        return [get_one(partner, p).json()["contact_cards"][0]["first_name"] for p in partner.lines]

    assert names() == ["Ada", "Bo", "Cy"]
    # Three numbers through a memo of two: the oldest answer makes room, so a second pass
    # in the same order finds none of them and runs a statement for each.
    with counting_statements(server) as seen:
        assert names() == ["Ada", "Bo", "Cy"]
    assert len(seen) == 3
    with counting_statements(server) as seen:
        get_one(partner, partner.lines[2])
        get_one(partner, partner.lines[1])
    assert seen == []  # the two newest are still there


def test_size_zero_switches_the_memo_off(farm):
    server = farm.get(SQLITE, read_cache_size=0)
    partner = make_partner(server, lines=1)
    partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Ada")
    with counting_statements(server) as seen:
        for _ in range(3):
            assert get_one(partner, partner.lines[0]).status_code == 200
    assert len(seen) == 3


def test_postgresql_has_no_memo(farm):
    server = farm.get("postgres")
    assert server.framework.state.cards.read_memo() is None


class CountingConnection(sqlite3.Connection):
    """A real SQLite connection that counts the data_version questions."""

    asked = 0

    def execute(self, sql, *args):
        if "data_version" in sql:
            self.asked += 1
        return super().execute(sql, *args)


def test_the_version_is_asked_once_per_turn_of_the_event_loop(tmp_path):
    import asyncio

    from contactcard.store.reads import _Reader

    path = tmp_path / "memo.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")
    conn = sqlite3.connect(path, isolation_level=None, factory=CountingConnection)
    reader = _Reader(conn)

    async def scenario() -> None:
        memo = reader.current_memo()
        memo["answer"] = b"kept"
        assert reader.current_memo() is memo and conn.asked == 1  # same turn: not asked again
        await asyncio.sleep(0)
        assert reader.current_memo() == {"answer": b"kept"} and conn.asked == 2  # unchanged database
        writer.execute("INSERT INTO t VALUES (1)")
        assert reader.current_memo() == {"answer": b"kept"}  # same turn: the old answer stands
        await asyncio.sleep(0)
        assert reader.current_memo() == {} and conn.asked == 3  # next turn: emptied

    try:
        asyncio.run(scenario())
        # Without an event loop every call asks.
        reader.current_memo()
        reader.current_memo()
        assert conn.asked == 5
    finally:
        conn.close()
        writer.close()
