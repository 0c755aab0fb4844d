"""The live view's stream, against a journal in memory: bounded in time, and it survives a reset."""

from __future__ import annotations

import time
from typing import Any

import anyio
import orjson

from contactcard.bootstrap import build
from contactcard.dashboard import journal as page
from contactcard.dashboard.session import COOKIE, Session, Sessions
from contactcard.http.app import create_app
from contactcard.journal import Entry, Query
from contactcard.settings import Settings
from contactcard.store.dashboard_sessions import SessionRecords


class FakeKit:
    """The one `Kit` call the stream makes: `requests`, over a list of entries."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.queries: list[Query] = []

    def add(self, id: int, status: int = 200) -> None:
        self.entries.append(
            Entry(f"{id:032x}", 0.0, "GET", "/v3/contact_card", None, status, None, 1.0, None, None, id)
        )

    def requests(self, query: Query) -> list[Entry]:
        self.queries.append(query)
        found = [e for e in self.entries if query.status is None or e.status == query.status]
        if query.after_id is None:
            return found[-query.limit :]
        return [e for e in found if e.id > query.after_id][: query.limit]


def _collect(kit: FakeKit, query: Query, after: int, lasting: float, during: Any = None) -> list[bytes]:
    async def run() -> list[bytes]:
        got: list[bytes] = []
        async with anyio.create_task_group() as tasks:
            if during is not None:
                tasks.start_soon(during)
            async for chunk in page.follow(kit, query, after, lasting=lasting):  # type: ignore[arg-type]
                got.append(chunk)
        return got

    return anyio.run(run)


def _ids(chunks: list[bytes]) -> list[int]:
    return [orjson.loads(c.split(b"data: ", 1)[1])["id"] for c in chunks if c.startswith(b"id: ")]


def test_the_stream_ends_by_itself_and_sends_only_newer_matching_entries(monkeypatch):
    monkeypatch.setattr(page, "POLL_SECONDS", 0.01)
    kit = FakeKit()
    for id in (1, 2, 3):
        kit.add(id, status=429 if id == 3 else 200)
    started = time.monotonic()
    chunks = _collect(kit, Query(status=429, limit=100), after=1, lasting=0.2)
    assert time.monotonic() - started < 5  # it ended, without a client leaving
    assert chunks[0] == b"retry: 1000\n\n"
    assert _ids(chunks) == [3]
    assert len(kit.queries) > 3  # it kept polling until its time was up


def test_after_a_reset_the_stream_starts_again_from_the_first_id(monkeypatch):
    monkeypatch.setattr(page, "POLL_SECONDS", 0.01)
    kit = FakeKit()
    for id in range(1, 11):
        kit.add(id)

    async def reset_then_new_requests() -> None:
        await anyio.sleep(0.05)
        kit.entries.clear()  # a reset: ids count from 1 again (SQLite reuses them)
        kit.add(1)
        kit.add(2)

    chunks = _collect(kit, Query(limit=100), after=10, lasting=0.5, during=reset_then_new_requests)
    assert _ids(chunks) == [1, 2]


def test_a_client_that_leaves_ends_its_stream_at_once(tmp_path):
    # The whole app, edge middleware included, as uvicorn drives it: the stream must notice
    # the disconnect itself, not run out its two minutes.
    token = "a-long-admin-token-here"
    settings = Settings(data_dir=tmp_path, admin_token=token)
    services = build(settings)
    app = create_app(settings, services)
    session = Session.new(signed_in=True)
    SessionRecords(services.database).begin(session.id_hash, time.time(), time.time() + 60)
    cookie = f"{COOKIE}={Sessions(token).dump(session)}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # uvicorn's
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/dashboard/requests/live",
        "raw_path": b"/dashboard/requests/live",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep(0.3)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> float:
        started = time.monotonic()
        with anyio.fail_after(10):
            await app(scope, receive, send)  # type: ignore[arg-type]
        return time.monotonic() - started

    took = anyio.run(run)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-type"].startswith(b"text/event-stream")
    assert b"retry: 1000" in b"".join(m.get("body", b"") for m in sent[1:])
    assert took < 5, took
