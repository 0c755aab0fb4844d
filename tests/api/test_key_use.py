"""When each API key was last used: tallied in each process, stored every flush interval
and at shutdown (`keys_seen.py`), shown by the admin API's key listing and the dashboard.

The servers flush every 50 ms; a test waits for the flush it needs (`_wait_for`), it never
asserts on how long anything took."""

from __future__ import annotations

import functools
import html
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import pytest
from linq import LinqAPIV3

from contactcard.bootstrap import admin_for
from contactcard.keys import key_hash
from contactcard.keys_seen import KeysSeen, KeyUseFlusher
from contactcard.store.api_keys import ApiKeys
from contactcard.store.db import connect, migrate
from contactcard.store.key_use import store_key_use
from tests.conftest import Partner, RunningServer, make_partner, new_number, start_server
from tests.dashboard.conftest import signed_in_http
from tests.support.databases import own_database

FAST_FLUSH = 0.05
T = TypeVar("T")


def _wait_for(found: Callable[[], T | None], what: str) -> T:
    """What `found` returns once it is not None; fails after 15 s (a flush that never came)."""
    deadline = time.monotonic() + 15
    while True:
        value = found()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.02)


def _keys(server: RunningServer, partner_id: str) -> dict[str, dict[str, Any]]:
    answer = server.admin("GET", f"/keys?partner_id={partner_id}")
    assert answer.status_code == 200, answer.text
    return {key["id"]: key for key in answer.json()}


def _last_used(server: RunningServer, partner: Partner, key_id: str | None = None) -> datetime | None:
    value = _keys(server, partner.id)[key_id or partner.key_id]["last_used_at"]
    return None if value is None else datetime.fromisoformat(value)


def _used_after(server: RunningServer, partner: Partner, after: datetime | None = None) -> Callable[[], Any]:
    def check() -> datetime | None:
        used = _last_used(server, partner)
        return used if used is not None and (after is None or used > after) else None

    return check


def _all_flushed(server: RunningServer) -> None:
    """Waits until every use made so far is stored: a flush stores every mark made before
    it, so once a fresh key used now shows as used, so does every use before it."""
    barrier = make_partner(server, lines=0)
    barrier.client().contact_card.retrieve()
    _wait_for(_used_after(server, barrier), "a flush after the uses so far")


def _second_key(server: RunningServer, partner: Partner) -> str:
    issued = server.admin("POST", f"/partners/{partner.id}/keys", json={"label": "spare"})
    assert issued.status_code == 200, issued.text
    key_id: str = issued.json()["id"]
    return key_id


@pytest.fixture
def fast_server(farm, backend) -> RunningServer:
    return farm.get(backend, key_use_flush_interval=FAST_FLUSH)


def test_a_key_the_sdk_used_shows_as_used_an_unused_one_says_never(fast_server):
    partner, other = make_partner(fast_server), make_partner(fast_server)
    spare = _second_key(fast_server, partner)
    assert _last_used(fast_server, partner) is None
    before = datetime.now(UTC) - timedelta(seconds=1)

    client = partner.client()
    client.contact_card.create(phone_number=partner.lines[0], first_name="Ada")
    for _ in range(3):  # by number: the second and third are answered from the GET memo
        client.contact_card.retrieve(phone_number=partner.lines[0])

    _all_flushed(fast_server)
    used = _last_used(fast_server, partner)
    assert used is not None
    assert before <= used <= datetime.now(UTC) + timedelta(seconds=1)
    assert _last_used(fast_server, partner, spare) is None
    # Another partner's use never shows on this one, and this one's never on it.
    assert _last_used(fast_server, other) is None
    other.client().webhook_subscriptions.list()
    _all_flushed(fast_server)
    assert _last_used(fast_server, other) is not None
    assert _last_used(fast_server, partner) == used
    assert _last_used(fast_server, partner, spare) is None


def test_the_partners_page_shows_each_keys_last_use(fast_server):
    partner = make_partner(fast_server)
    spare = _second_key(fast_server, partner)
    partner.client().contact_card.retrieve()
    _all_flushed(fast_server)
    used = _last_used(fast_server, partner)
    assert used is not None
    prefixes = {key["id"]: key["prefix"] for key in _keys(fast_server, partner.id).values()}

    client, _csrf = signed_in_http(fast_server.base_url)
    page = client.get("/dashboard/partners")
    assert page.status_code == 200
    assert _last_used_cell(page.text, prefixes[partner.key_id]) == used.strftime("%Y-%m-%d %H:%M")
    assert _last_used_cell(page.text, prefixes[spare]) == "never"


def _last_used_cell(page: str, prefix: str) -> str:
    row = re.search(rf"<tr>\s*<td><code>{re.escape(html.escape(prefix))}…</code>.*?</tr>", page, re.S)
    assert row, f"no row for key {prefix}"
    cell = re.search(r'<td class="last-used">([^<]*)</td>', row.group(0))
    assert cell, "no last-used cell"
    return cell.group(1).strip()


def test_every_partner_route_counts_and_a_refused_key_does_not(fast_server):
    partner, other = make_partner(fast_server), make_partner(fast_server)
    http = partner.http()
    used = None
    for path in ("/v3/webhook-events", "/v3/webhook-subscriptions", "/v3/contact_card"):
        answer = http.get(path)
        assert answer.status_code == 200, (path, answer.text)
        used = _wait_for(_used_after(fast_server, partner, used), f"{path} counted")
    # Refused for what they asked, not for the key: still a use of it.
    refusals = [
        ("GET", {"phone_number": other.lines[0]}, None, 403),  # another partner's line
        ("POST", {}, b"{not json", 400),
        ("PATCH", {"phone_number": partner.lines[1]}, b'{"first_name": "Ada"}', 404),  # no card yet
    ]
    for method, params, body, status in refusals:
        headers = {"content-type": "application/json"}
        answer = http.request(method, "/v3/contact_card", params=params, content=body, headers=headers)
        assert answer.status_code == status, (method, answer.text)
        used = _wait_for(_used_after(fast_server, partner, used), f"a {status} counted")
    fast_server.admin("DELETE", f"/keys/{partner.key_id}")
    assert http.get("/v3/contact_card").status_code == 401
    _all_flushed(fast_server)
    assert _last_used(fast_server, partner) == used


def test_the_time_is_the_servers_clock_and_only_moves_forward(fast_server):
    partner = make_partner(fast_server)
    client = partner.client()
    client.contact_card.create(phone_number=partner.lines[0], first_name="Ada")
    client.contact_card.retrieve(phone_number=partner.lines[0])  # the answer goes in the GET memo
    _all_flushed(fast_server)
    first = _last_used(fast_server, partner)
    assert first is not None
    moved = fast_server.admin("POST", "/clock/advance", json={"seconds": 7200})
    assert moved.status_code == 200, moved.text
    try:
        # The same request again: on SQLite nothing a GET reads changed (moving the clock
        # and storing key use do not count), so the memo answers it, and marks the key too.
        client.contact_card.retrieve(phone_number=partner.lines[0])
        later = _wait_for(_used_after(fast_server, partner, first), "use on the moved clock")
        assert later >= first + timedelta(seconds=7200)
    finally:
        assert fast_server.admin("DELETE", "/clock").status_code in (200, 204)
    # Back on real time, a use is earlier than the stored one: the stored one stays.
    client.contact_card.retrieve()
    _all_flushed(fast_server)
    assert _last_used(fast_server, partner) == later


@pytest.fixture
def own_url(backend, postgres_url) -> Iterator[str | None]:
    with own_database(backend, postgres_url) as url:
        yield url


def test_a_server_stores_its_tally_when_it_stops(tmp_path, own_url, image_host):
    settings: dict[str, Any] = {"key_use_flush_interval": 3600, "image_allowed_hosts": image_host.host_port}
    if own_url is not None:
        settings["database_url"] = own_url
    server = start_server(settings, tmp_path)
    try:
        partner = make_partner(server)
        partner.client().contact_card.retrieve()
        assert _last_used(server, partner) is None  # an hour to the next flush
    finally:
        server.stop()
    database = connect(server.settings.resolved_database_url)
    try:
        (key,) = [k for k in ApiKeys(database).all(partner.id)]
        assert key.last_used_at is not None
    finally:
        database.dispose()


def test_a_failed_flush_keeps_the_tally_and_logs_one_line_without_secrets(tmp_path, caplog):
    path = tmp_path / "locked.db"
    database = connect(f"sqlite:///{path}", timeout=0.2)
    try:
        migrate(database)
        admin = admin_for(database)
        partner = admin.create_partner("locked out")
        key = admin.issue_key(partner.id).key
        seen = KeysSeen(time.time)
        flusher = KeyUseFlusher(seen, functools.partial(store_key_use, database, timeout=0.2), interval=3600, timeout=5)
        seen.mark(key_hash(key))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the file's write lock
        caplog.set_level(logging.DEBUG)
        try:
            assert anyio.run(flusher.flush) is False
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        failed = [r for r in caplog.records if r.name == "contactcard" and r.levelno >= logging.WARNING]
        assert len(failed) == 1
        line = failed[0].getMessage()
        assert key not in line and key_hash(key) not in line and "UPDATE" not in line
        assert ApiKeys(database).all(partner.id)[0].last_used_at is None
        assert anyio.run(flusher.flush) is True  # the kept tally, stored by the next flush
        assert ApiKeys(database).all(partner.id)[0].last_used_at is not None
    finally:
        database.dispose()


def test_storing_key_use_leaves_the_sqlite_get_memo_be(tmp_path):
    # The change count is the SQLite GET memo's version: a flush moving it would empty
    # every memo of every process at each flush; revoking a key must still move it.
    database = connect(f"sqlite:///{tmp_path / 'count.db'}")
    try:
        migrate(database)
        admin = admin_for(database)
        partner = admin.create_partner("counted")
        issued = admin.issue_key(partner.id)

        def count() -> int:
            with database.reader.connect() as conn:
                return int(conn.exec_driver_sql("SELECT n FROM change_count WHERE id = 1").scalar_one())

        before = count()
        store_key_use(database, {key_hash(issued.key): time.time()}, timeout=2)
        assert ApiKeys(database).all(partner.id)[0].last_used_at is not None
        assert count() == before
        admin.revoke_key(issued.id)
        assert count() > before
    finally:
        database.dispose()


def test_a_key_the_open_sandbox_adopted_shows_as_used(tmp_path, image_host):
    server = start_server(
        {"open_sandbox": True, "key_use_flush_interval": FAST_FLUSH, "image_allowed_hosts": image_host.host_port},
        tmp_path,
    )
    try:
        made_up = "any key at all"  # spaces: the sandbox derives a usable token from it
        client = LinqAPIV3(api_key=made_up, base_url=server.partner_base, max_retries=0)
        client.contact_card.retrieve(phone_number=new_number())
        client.webhook_events.list()

        def adopted() -> dict[str, Any] | None:
            found = server.admin("GET", "/keys").json()
            return found[0] if len(found) == 1 and found[0]["last_used_at"] is not None else None

        key = _wait_for(adopted, "the adopted key shown as used")
        assert made_up not in str(key)
    finally:
        server.stop()
