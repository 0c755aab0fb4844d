"""The GET memo (store/memo.py, http/cards.py): fast, and never stale.

A GET by number is answered from memory while the database is unchanged. These tests
change the database behind the server's back (another connection, another process), on
SQLite and on PostgreSQL, and check that the very next GET sees the change, and that the
memo is really in use, so that they would catch a memo that is never emptied.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from contactcard.store.core.memo import BatchMemo, TurnMemo
from tests.conftest import Partner, RunningServer, make_partner, start_server
from tests.support.databases import own_database
from tests.support.reads import lookups_while_still, recorded_lookups


@pytest.fixture(scope="module")
def own(backend, postgres_url, tmp_path_factory) -> Iterator[Callable[..., RunningServer]]:
    """Servers on a database of their own, by settings. On PostgreSQL any commit to the
    database empties the memo, rightly: another server's (its journal, its webhook worker)
    would make these counts of statements depend on the rest of the session."""
    started: dict[tuple, RunningServer] = {}
    with own_database(backend, postgres_url) as url:

        def get(**overrides: object) -> RunningServer:
            key = tuple(sorted(overrides.items()))
            if key not in started:
                settings = {**overrides, **({"database_url": url} if url else {})}
                started[key] = start_server(settings, tmp_path_factory.mktemp("memo"))
            return started[key]

        yield get
        for running in started.values():
            running.stop()


@pytest.fixture
def server(own) -> RunningServer:
    return own(journal_size=0)  # the journal's stores are commits too


@pytest.fixture
def owner(server) -> Partner:
    partner = make_partner(server)
    partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Before")
    return partner


def execute_elsewhere(server: RunningServer, sql: str, **params: object) -> None:
    """Run one write on a connection of the test's own, not the server's."""
    engine = create_engine(server.settings.resolved_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def get_one(partner: Partner, phone: str) -> httpx.Response:
    with partner.http() as http:
        return http.get("/v3/contact_card", params={"phone_number": phone})


def test_a_repeated_get_is_answered_without_a_statement(owner):
    phone = owner.lines[0]
    first = get_one(owner, phone)
    seen, again = lookups_while_still(
        owner.server, lambda: [get_one(owner, phone) for _ in range(3)], rewarm=lambda: get_one(owner, phone)
    )
    assert seen == []
    assert [a.content for a in again] == [first.content] * 3
    assert all(a.status_code == 200 and a.headers["x-trace-id"] for a in again)
    assert len({a.headers["x-trace-id"] for a in again}) == 3  # the trace id is per request


def test_head_from_the_memo_has_no_body(owner):
    phone = owner.lines[0]
    full = get_one(owner, phone)
    with owner.http() as http:
        seen, head = lookups_while_still(
            owner.server,
            lambda: http.head("/v3/contact_card", params={"phone_number": phone}),
            rewarm=lambda: get_one(owner, phone),
        )
    assert seen == []
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(full.content))


def test_a_write_by_another_connection_is_seen_by_the_next_get(owner):
    phone = owner.lines[0]
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Before"
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Before"  # memoised
    execute_elsewhere(owner.server, "UPDATE cards SET first_name = 'Behind' WHERE phone_number = :p", p=phone)
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Behind"


def test_a_write_through_the_api_is_seen_by_the_next_get(owner):
    phone = owner.lines[0]
    get_one(owner, phone)
    get_one(owner, phone)
    owner.client().contact_card.update(phone_number=phone, first_name="Patched")
    assert get_one(owner, phone).json()["contact_cards"][0]["first_name"] == "Patched"


def test_a_write_through_the_api_keeps_the_other_lines_answers(own, backend):
    """A move of the version made only by this process's own write drops only that line's
    answers (store/commits.py); the written line is fresh. On PostgreSQL another commit on
    the cluster (any test's) empties the memo, rightly, so the try is repeated until the
    memo's log accounted for every change; on SQLite nobody else writes this file, and a
    try fails only when a commit landed the instant before the writer told the log."""
    server = own(journal_size=0, write_budget=0)  # the tries below write more than a budget allows
    owner = make_partner(server, lines=2)
    written, other = owner.lines
    client = owner.client()
    client.contact_card.create(phone_number=written, first_name="Before")
    client.contact_card.create(phone_number=other, first_name="Other")
    memo = owner.server.framework.state.cards._reads._pg_memo
    told: list[frozenset[str] | None] = []
    original = memo._lines_changed
    if backend == "postgres":

        def telling(old: object, new: object) -> frozenset[str] | None:
            told.append(changed := original(old, new))
            return changed

        memo._lines_changed = telling
    try:
        for attempt in range(30):
            told.clear()  # from the warm-up on: a move then would empty the memo unseen
            get_one(owner, other)
            get_one(owner, written)
            client.contact_card.update(phone_number=written, first_name=f"Patched {attempt}")
            with recorded_lookups(owner.server) as seen:
                fresh = get_one(owner, written)
                kept = get_one(owner, other)
            assert fresh.json()["contact_cards"][0]["first_name"] == f"Patched {attempt}"
            assert kept.json()["contact_cards"][0]["first_name"] == "Other"
            if None not in told and len(seen) == 1:  # the written line only
                return
            if backend == "postgres" and None not in told:
                raise AssertionError(f"every commit was accounted for, yet {len(seen)} lookups were made")
        raise AssertionError("the memo was emptied by a write of this process in each of 30 tries")
    finally:
        memo._lines_changed = original


def test_a_write_by_another_connection_empties_the_memo_of_every_line(owner):
    """Anyone else's change (here a card of another line, changed behind the server's back)
    cannot be accounted for by this process's log: every answer is looked up again."""
    partner = make_partner(owner.server, lines=2)
    first, second = partner.lines
    client = partner.client()
    client.contact_card.create(phone_number=first, first_name="First")
    client.contact_card.create(phone_number=second, first_name="Second")
    get_one(partner, first), get_one(partner, second)
    execute_elsewhere(owner.server, "UPDATE cards SET last_name = 'Elsewhere' WHERE phone_number = :p", p=second)
    with recorded_lookups(owner.server) as seen:
        assert get_one(partner, first).json()["contact_cards"][0]["first_name"] == "First"
        assert get_one(partner, second).json()["contact_cards"][0]["last_name"] == "Elsewhere"
    assert len(seen) == 2


def test_a_key_revoked_by_another_process_is_refused_at_once(owner):
    phone = owner.lines[0]
    assert get_one(owner, phone).status_code == 200
    assert get_one(owner, phone).status_code == 200
    env = {
        **os.environ,
        "CONTACTCARD_DATA_DIR": str(owner.server.settings.data_dir),
        "CONTACTCARD_DATABASE_URL": owner.server.settings.resolved_database_url,
    }
    revoked = subprocess.run(
        [sys.executable, "-m", "contactcard", "admin", "key", "revoke", owner.key_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoked.returncode == 0, revoked.stderr
    answer = get_one(owner, phone)
    assert (answer.status_code, answer.json()["error"]["code"]) == (401, 2004)


def test_a_line_given_to_another_partner_is_refused_at_once(owner, server):
    phone = owner.lines[0]
    other = make_partner(server, lines=0)
    assert get_one(owner, phone).status_code == 200
    assert get_one(owner, phone).status_code == 200
    execute_elsewhere(owner.server, "UPDATE lines SET partner_id = :o WHERE phone_number = :p", o=other.id, p=phone)
    answer = get_one(owner, phone)
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, 2005)


def test_refusals_are_not_memoised(owner, other_partner):
    phone = owner.lines[0]
    for _ in range(2):
        with recorded_lookups(owner.server) as seen:
            assert get_one(other_partner, phone).status_code == 403
        assert len(seen) == 1


def test_the_memo_keeps_at_most_its_size(own):
    server = own(read_cache_size=2, journal_size=0)
    partner = make_partner(server, lines=3)
    for phone, name in zip(partner.lines, ("Ada", "Bo", "Cy"), strict=True):
        partner.client().contact_card.create(phone_number=phone, first_name=name)

    def names() -> list[str]:
        return [get_one(partner, p).json()["contact_cards"][0]["first_name"] for p in partner.lines]

    assert names() == ["Ada", "Bo", "Cy"]
    # Three numbers through a memo of two: the oldest answer makes room, so a second pass
    # in the same order finds none of them and runs a statement for each.
    with recorded_lookups(server) as seen:
        assert names() == ["Ada", "Bo", "Cy"]
    assert len(seen) == 3

    def rewarm() -> None:
        # From empty, as a move of the version leaves it (a try that saw one may have left
        # any two answers), then the three through the memo of two again.
        server.framework.state.cards._reads._pg_memo._memo = {}
        names()

    seen, _ = lookups_while_still(
        server, lambda: (get_one(partner, partner.lines[2]), get_one(partner, partner.lines[1])), rewarm=rewarm
    )
    assert seen == []  # the two newest are still there


def test_size_zero_switches_the_memo_off(own):
    server = own(read_cache_size=0, journal_size=0)
    partner = make_partner(server, lines=1)
    partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Ada")
    with recorded_lookups(server) as seen:
        for _ in range(3):
            assert get_one(partner, partner.lines[0]).status_code == 200
    assert len(seen) == 3


# ---------------------------------------------------------------- the memos' own rules


def test_sqlite_version_is_asked_once_per_turn_of_the_event_loop(tmp_path):
    path = tmp_path / "memo.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")
    reader = sqlite3.connect(path, isolation_level=None)
    asked = []

    def data_version() -> int:
        asked.append(1)
        return reader.execute("PRAGMA data_version").fetchone()[0]

    memo = TurnMemo(data_version)

    async def scenario() -> None:
        first = memo.current()
        first["answer"] = b"kept"
        assert memo.current() is first and len(asked) == 1  # same turn: not asked again
        await asyncio.sleep(0)
        assert memo.current() is first and len(asked) == 2  # next turn, unchanged database
        writer.execute("INSERT INTO t VALUES (1)")
        assert memo.current() is first  # same turn: requests that arrived before the write
        await asyncio.sleep(0)
        assert memo.current() == {} and len(asked) == 3  # next turn: a new, empty memo

    try:
        asyncio.run(scenario())
        memo.current()
        memo.current()
        assert len(asked) == 5  # without an event loop every call asks
    finally:
        reader.close()
        writer.close()


async def settle() -> None:
    """Let every task that can run, run (a few turns of the loop)."""
    for _ in range(5):
        await asyncio.sleep(0)


class Questions:
    """A stand-in for the PostgreSQL question: each one waits until the test answers it."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future] = []

    async def ask(self) -> object:
        future = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return await future

    def answer(self, version: object) -> None:
        self.pending.pop(0).set_result(version)


def test_postgresql_requests_share_a_question_that_started_after_they_arrived():
    async def scenario() -> None:
        questions = Questions()
        memo = BatchMemo(questions.ask)
        first = [asyncio.ensure_future(memo.current()) for _ in range(3)]
        await settle()
        assert len(questions.pending) == 1  # one question for the three
        late = asyncio.ensure_future(memo.current())  # arrives while it is in flight
        await settle()
        questions.answer("v1")
        dicts = await asyncio.gather(*first)
        assert all(d is dicts[0] for d in dicts)
        dicts[0]["answer"] = b"kept"
        await settle()
        assert not late.done() and len(questions.pending) == 1  # the late one waits for the next
        questions.answer("v1")
        assert await late is dicts[0]  # unchanged version: the same memo, answers kept

        again = asyncio.ensure_future(memo.current())
        await settle()
        questions.answer("v2")
        assert await again == {}  # the version moved: a new memo
        assert dicts[0] == {"answer": b"kept"}  # a lookup still holding the old one cannot reach it

    asyncio.run(scenario())


def test_postgresql_memo_is_withheld_when_the_question_fails():
    async def failing() -> object:
        raise OSError("connection refused")

    async def scenario() -> None:
        memo = BatchMemo(failing)
        assert await asyncio.gather(memo.current(), memo.current()) == [None, None]

    asyncio.run(scenario())


def test_postgresql_a_request_that_goes_away_does_not_stall_the_others():
    async def scenario() -> None:
        questions = Questions()
        memo = BatchMemo(questions.ask)
        leaving = asyncio.ensure_future(memo.current())
        staying = asyncio.ensure_future(memo.current())
        await settle()
        leaving.cancel()  # its client disconnected while the question was in flight
        await settle()
        questions.answer("v1")
        assert await asyncio.wait_for(staying, 5) == {}
        assert leaving.cancelled()
        again = asyncio.ensure_future(memo.current())  # the next request still gets a question
        await settle()
        questions.answer("v1")
        assert await asyncio.wait_for(again, 5) is not None

    asyncio.run(scenario())


def test_every_get_after_an_acknowledged_write_sees_it_while_many_lines_are_written(own):
    """The per-line rule under load: writers on many lines at once, each reading its line
    back after each acknowledged write, while readers keep every line's answer memoised.
    A memo that kept a written line's old answer (a range told for the wrong lines, a
    version question asked too early) shows here as an older name."""
    server = own(journal_size=0, write_budget=0)
    partner = make_partner(server, lines=12)
    client = partner.client()
    for phone in partner.lines:
        client.contact_card.create(phone_number=phone, first_name="v0")
    written, read_only = partner.lines[:8], partner.lines[8:]
    stale: list[tuple[str, str, str]] = []

    async def scenario() -> None:
        headers = {"authorization": f"Bearer {partner.key}"}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=20) as http:

            async def name_of(phone: str) -> str:
                answer = await http.get("/v3/contact_card", params={"phone_number": phone})
                assert answer.status_code == 200, answer.text
                return answer.json()["contact_cards"][0]["first_name"]

            async def writer(phone: str) -> None:
                for n in range(1, 16):
                    answer = await http.patch(
                        "/v3/contact_card", params={"phone_number": phone}, json={"first_name": f"v{n}"}
                    )
                    assert answer.status_code == 200, answer.text
                    seen = await name_of(phone)
                    if seen != f"v{n}":
                        stale.append((phone, f"v{n}", seen))

            async def reader() -> None:
                for _ in range(60):
                    for phone in partner.lines:
                        await name_of(phone)
                    assert [await name_of(p) for p in read_only] == ["v0"] * len(read_only)

            await asyncio.wait_for(asyncio.gather(*(writer(p) for p in written), reader(), reader()), 120)

    asyncio.run(scenario())
    assert stale == []
