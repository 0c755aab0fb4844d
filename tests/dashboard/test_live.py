"""The live view's stream, against a journal in memory: bounded in time, and it survives a reset."""

from __future__ import annotations

import time
from typing import Any

import anyio
import orjson

from contactcard.dashboard import journal as page
from contactcard.journal import Entry, Query


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
