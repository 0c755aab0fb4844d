"""The database goes away: every request answers `503 4006` in time, and the server recovers.

- PostgreSQL stopped under a running server (marker `outage`): GET, POST and PATCH each
  answer within `CONTACTCARD_DATABASE_TIMEOUT` plus half a second with `503`, code `4006`
  and `Retry-After`; once PostgreSQL is started again the same requests succeed, without
  restarting the server; nothing refused was stored and no card is half-written.
  Stopping PostgreSQL breaks every other test using it, so `outage` tests run on their own
  (`scripts/test` runs them after the rest). PostgreSQL is started again in a `finally`,
  and the test waits until `pg_isready` answers. By default the only cluster of a Debian
  `postgresql-common` installation is stopped and started; elsewhere set
  `CONTACTCARD_TEST_POSTGRES_STOP` and `CONTACTCARD_TEST_POSTGRES_START` to shell commands.
- SQLite locked by another connection (`BEGIN EXCLUSIVE`, held by the test): a lock shorter
  than the bound is waited out (200); one held longer makes a write answer `503 4006` within
  the bound plus a little, never a hang and never a `500`; released, writes succeed again.
  (A read-only or full disk is not staged: tests often run as root, where a file's mode
  does not stop writes, and the server's open descriptors would ignore a mode change anyway;
  a held lock is what every machine can do.)
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from tests.support.processes import (
    NEEDS_POSTGRES,
    ServerProcess,
    assert_clean_log,
    cards_by_phone,
    create_partner,
    database_engine,
)
from tests.support.writes import (
    Write,
    answer_problems,
    card_problems,
    device_shows,
    fire,
    first,
    log_excerpt,
    set_up_cards,
)

DATABASE_TIMEOUT = 2.0  # the server's default, set explicitly: the bounds below build on it
ANSWER_BOUND = DATABASE_TIMEOUT + 0.5  # "within the database timeout plus a little"
RECOVERY = 15.0  # seconds a request may keep failing after the database is back


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def _server(tmp_path: Path, database_url: str | None) -> ServerProcess:
    return ServerProcess(
        tmp_path / "data",
        database_url,
        extra_env={"CONTACTCARD_WRITE_BUDGET": "0", "CONTACTCARD_DATABASE_TIMEOUT": str(DATABASE_TIMEOUT)},
    )


def _timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response | None]:
    began = time.monotonic()
    try:
        response = call()
    except httpx.TimeoutException:
        response = None
    return time.monotonic() - began, response


def _refusal_problems(what: str, took: float, status: int | None, body: object, headers: dict) -> list[str]:
    """Unless this is a `503 4006` with `Retry-After`, answered within the bound."""
    problems = []
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if status is None:
        problems.append(f"{what}: no answer after {took:.1f}s")
    elif (status, code) != (503, 4006):
        problems.append(f"{what}: {status} {body} after {took:.1f}s, not 503 4006")
    elif took > ANSWER_BOUND:
        problems.append(f"{what}: 503 4006 after {took:.2f}s, over {ANSWER_BOUND}s")
    if status == 503 and not str(headers.get("retry-after", "")).isdigit():
        problems.append(f"{what}: no Retry-After in seconds: {headers}")
    if status == 503 and isinstance(body, dict):
        envelope = (body.get("success"), sorted(body.get("error", {})), "trace_id" in body)
        if envelope != (False, ["code", "doc_url", "message", "status"], True):
            problems.append(f"{what}: not the error envelope: {body}")
    return problems


def _until_ok(write_like: Callable[[], Write], within: float) -> list[Write]:
    """Send fresh writes until one is answered 200 or `within` seconds passed."""
    sent: list[Write] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sent.append(write_like())
        if sent[-1].status == 200:
            break
        time.sleep(0.2)
    return sent


def _history(lines: list[str], *batches: list[Write]) -> dict[str, list[Write]]:
    history: dict[str, list[Write]] = {line: [] for line in lines}
    for batch in batches:
        for write in batch:
            history[write.line].append(write)
    return history


# --- PostgreSQL stopped and started -------------------------------------------------------


def _debian_cluster(action: str) -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if len(versions) != 1:
        pytest.skip(
            "outage tests stop PostgreSQL: set CONTACTCARD_TEST_POSTGRES_STOP and _START "
            "(no single postgresql-common cluster found)"
        )
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", action]


def _postgres_command(action: str) -> list[str]:
    configured = os.environ.get(f"CONTACTCARD_TEST_POSTGRES_{action.upper()}")
    return ["sh", "-c", configured] if configured else _debian_cluster(action)


def _postgres_ready(host: str, port: int) -> bool:
    try:
        return (
            subprocess.run(["pg_isready", "-h", host, "-p", str(port)], capture_output=True, timeout=10).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def postgres_stopped(database_url: str) -> Iterator[None]:
    """PostgreSQL stopped for the body; started again afterwards whatever happens, and
    ready (`pg_isready` answers) before this returns."""
    url = make_url(database_url)
    host, port = url.host or "127.0.0.1", url.port or 5432
    stop, start = _postgres_command("stop"), _postgres_command("start")
    try:
        subprocess.run(stop, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while _postgres_ready(host, port):
            assert time.monotonic() < deadline, "PostgreSQL still answers after being stopped"
            time.sleep(0.1)
        yield
    finally:
        started = subprocess.run(start, capture_output=True, timeout=120)
        deadline = time.monotonic() + 60
        while not _postgres_ready(host, port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not come back: {started.stdout!r} {started.stderr!r}")
            time.sleep(0.2)


@pytest.mark.outage
def test_postgres_stopped_then_started_answers_4006_in_time_and_recovers(postgres_url, tmp_path, servers):
    if postgres_url is None:
        pytest.skip(NEEDS_POSTGRES)
    server = _server(tmp_path, postgres_url)
    servers.append(server)
    server.start()
    partner = create_partner(server, lines=3)
    patched, fresh, listed_only = partner.lines
    setups = set_up_cards(server, partner.key, [patched, listed_only])
    # Past the bound by 2 s: waiting longer tells nothing, and keeps PostgreSQL down longer.
    http = server.http(partner.key, timeout=ANSWER_BOUND + 2)
    # Warm: pools open, GET answers memoised.
    for _ in range(2):
        assert http.get("/v3/contact_card").status_code == 200
        assert http.get("/v3/contact_card", params={"phone_number": listed_only}).status_code == 200

    problems: list[str] = []
    outage_writes: list[Write] = []
    try:
        with postgres_stopped(postgres_url):
            for attempt in (1, 2):  # the second meets whatever the first left behind
                for what, params in (("GET all", None), ("GET one", {"phone_number": listed_only})):
                    took, response = _timed(lambda params=params: http.get("/v3/contact_card", params=params))
                    problems += _refusal_problems(
                        f"{what} #{attempt}",
                        took,
                        response.status_code if response is not None else None,
                        response.json() if response is not None else None,
                        dict(response.headers) if response is not None else {},
                    )
                writes = [Write(fresh, "POST"), Write(patched, "PATCH")]
                fire(server.base_url, partner.key, writes, timeout=ANSWER_BOUND + 2, deadline=ANSWER_BOUND + 3)
                outage_writes += writes
                for write in writes:
                    took = (write.answered_at or time.monotonic()) - write.sent_at
                    problems += _refusal_problems(
                        f"{write!r} #{attempt}", took, write.status, write.body, write.headers
                    )
    finally:
        http.close()
    assert not problems, "while PostgreSQL was stopped:\n" + "\n".join(problems) + f"\n{log_excerpt(server)}"

    # Back: the same requests succeed again, from the same server process.
    with server.http(partner.key, timeout=10) as http:
        deadline = time.monotonic() + RECOVERY
        while True:
            try:
                listed = http.get("/v3/contact_card")
                if listed.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"GET still failing {RECOVERY}s after PostgreSQL came back"
            time.sleep(0.2)
        recovery = _until_ok(lambda: fire(server.base_url, partner.key, [Write(patched, "PATCH")])[0], RECOVERY)
        recovery += _until_ok(lambda: fire(server.base_url, partner.key, [Write(fresh, "POST")])[0], RECOVERY)
        one = http.get("/v3/contact_card", params={"phone_number": fresh})
    assert [w.status for w in recovery].count(200) == 2, f"writes after PostgreSQL came back: {recovery}"
    assert one.status_code == 200 and one.json()["contact_cards"][0]["first_name"] == recovery[-1].first_name
    assert server.running and server.starts == 1, "the server was restarted"

    engine = create_engine(postgres_url, pool_pre_ping=True)
    try:
        history = _history(partner.lines, setups, outage_writes, recovery)
        rows = cards_by_phone(engine, partner.lines)
        shown = device_shows(engine, partner.lines)
    finally:
        engine.dispose()
    found = [p for line in partner.lines for p in card_problems(line, history[line], rows[line], shown.get(line))]
    found += answer_problems([*setups, *recovery])
    assert not found, first(found)
    assert_clean_log(server)


# --- SQLite locked ------------------------------------------------------------------------


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock (`BEGIN EXCLUSIVE`) for the body."""
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        try:
            conn.execute("ROLLBACK")
        finally:
            conn.close()


@pytest.mark.slow
@pytest.mark.timed  # a 0.4 s lock against the database deadline
def test_a_locked_sqlite_database_answers_4006_in_time_and_recovers(tmp_path, servers):
    server = _server(tmp_path, None)
    servers.append(server)
    server.start()
    engine: Engine = database_engine(None, server.data_dir)
    database = server.data_dir / "contactcard.db"
    partner = create_partner(server, lines=3)
    patched, fresh, other = partner.lines
    setups = set_up_cards(server, partner.key, [patched, other])

    # A lock released well inside the bound is waited out, not refused.
    short = Write(patched, "PATCH")
    firing = threading.Thread(target=fire, args=(server.base_url, partner.key, [short]), daemon=True)
    with sqlite_locked(database):
        firing.start()
        time.sleep(0.4)
    firing.join(ANSWER_BOUND + 5)
    assert short.status == 200, f"a write behind a 0.4 s lock: {short!r}\n{log_excerpt(server)}"

    # A lock held past the bound: the writes are refused in time; a GET is not held up.
    # Several writes at once, each within the bound on its own: the setting is the longest
    # *a request* waits to reach the database, so writes queued behind one that waits do not
    # add their waits up (the third would otherwise answer after three timeouts).
    locked = [Write(patched, "PATCH"), Write(fresh, "POST"), Write(other, "PATCH")]
    problems: list[str] = []
    with sqlite_locked(database), server.http(partner.key, timeout=ANSWER_BOUND + 3) as http:
        fire(server.base_url, partner.key, locked, timeout=ANSWER_BOUND + 3, deadline=ANSWER_BOUND + 3.5)
        took, got = _timed(lambda: http.get("/v3/contact_card"))
    for write in locked:
        took_write = (write.answered_at or time.monotonic()) - write.sent_at
        problems += _refusal_problems(repr(write), took_write, write.status, write.body, write.headers)
    if got is None or got.status_code not in (200, 503) or took > ANSWER_BOUND:
        problems.append(f"GET while locked: {got and got.status_code} after {took:.1f}s")
    assert not problems, "while SQLite was locked:\n" + "\n".join(problems) + f"\n{log_excerpt(server)}"

    # Released: writes succeed again at once (a few retries allowed).
    recovery = _until_ok(lambda: fire(server.base_url, partner.key, [Write(patched, "PATCH")])[0], 5)
    recovery += _until_ok(lambda: fire(server.base_url, partner.key, [Write(fresh, "POST")])[0], 5)
    assert [w.status for w in recovery].count(200) == 2, f"writes after the lock was released: {recovery}"

    history = _history(partner.lines, setups, [short], locked, recovery)
    rows = cards_by_phone(engine, partner.lines)
    shown = device_shows(engine, partner.lines)
    engine.dispose()
    found = [p for line in partner.lines for p in card_problems(line, history[line], rows[line], shown.get(line))]
    found += answer_problems([*setups, short, *recovery])
    assert not found, first(found)
    assert_clean_log(server)
