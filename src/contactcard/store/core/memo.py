"""Memos for GET answers that can never be stale.

A memo is a dict the HTTP layer fills with answers (see `http/cards.py`). It is only
handed out after asking the database for a version that moves whenever anyone commits
(this process or another), and it is emptied when the version moved. What makes it exact
is *when* the version is asked: always after the request arrived. So a memoised answer is
one a fresh lookup, made at some moment after the request arrived, could have given: a
write, a new or revoked key, or a line handed to another partner is seen by the next
request, as without a memo.

- SQLite: the `change_count` row (`store/schema.py`) costs about 7 µs to read, so
  `TurnMemo` asks once per turn of the event loop. Every request run in a turn
  arrived before the turn began.
- PostgreSQL: `pg_current_snapshot()` costs a round trip, so `BatchMemo` asks once for
  all the requests waiting: those that arrived while a question was in flight wait for the
  next one, which starts after they arrived.

Each entry is `(answer, line, ...)`: what the caller keeps after the line is its own.
When the version moves, the memo is replaced by a new, empty dict rather than emptied: a
request that was handed the old dict and is still looking up (on PostgreSQL, a round trip
later) files its answer in the old dict, which nobody is handed any more. Emptying in place
would let an answer read before a commit land in the memo of a version after it. An answer
may be newer than the version it is filed under (a commit landed between the question and
the lookup); it is still one read after every request that can find it arrived, and the
next question sees the version move. Versions never repeat (both only grow).

When every change between two versions is one of this process's own writes
(`commits.py`), the new dict keeps the answers of every other line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Memo = dict[Any, Any]
# Which lines' answers may differ between two versions (None: any); see commits.py.
LinesChanged = Callable[[object, object], frozenset[str] | None]


def _moved(memo: Memo, old: object, new: object, lines_changed: LinesChanged | None) -> Memo:
    """The memo for version `new`, given the one for `old`."""
    changed = None if lines_changed is None or old is None else lines_changed(old, new)
    if changed is None:
        return {}
    if not changed:
        return memo  # nothing that answers depend on changed
    # A new dict without those lines' answers, for the reason the module gives: a lookup
    # of one of them still under way files its answer in the old one.
    return {slot: entry for slot, entry in memo.items() if entry[1] not in changed}


class TurnMemo:
    """A memo checked with a cheap synchronous question, at most once per loop turn.

    Handed out only on one event loop's thread (the caller keeps one per thread)."""

    __slots__ = ("_ask", "_checked", "_lines_changed", "_memo", "_version")

    def __init__(self, ask: Callable[[], object], lines_changed: LinesChanged | None = None) -> None:
        self._ask = ask
        self._lines_changed = lines_changed
        self._version: object = None
        self._memo: Memo = {}
        self._checked = False

    def current(self) -> Memo:
        if self._checked:
            return self._memo
        version = self._ask()
        if version != self._version:
            self._memo = _moved(self._memo, self._version, version, self._lines_changed)
            self._version = version
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._memo  # no event loop: ask again next time
        self._checked = True
        loop.call_soon(self._next_turn)  # runs after every callback already queued
        return self._memo

    def _next_turn(self) -> None:
        self._checked = False


class BatchMemo:
    """A memo checked with an awaited question (a round trip), one at a time, shared by
    every request that arrived before it started."""

    def __init__(
        self,
        ask: Callable[[], Awaitable[object]],
        lines_changed: LinesChanged | None = None,
    ) -> None:
        self._ask = ask
        self._lines_changed = lines_changed
        self._version: object = None
        self._memo: Memo = {}
        self._waiting: list[asyncio.Future[bool]] = []
        self._asking: asyncio.Task[None] | None = None

    async def current(self) -> Memo | None:
        """The memo, or None when the question failed (the caller then looks up directly,
        and meets the database's error there)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask_for_waiting())
        return self._memo if await waiter else None

    async def _ask_for_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                version = await self._ask()
            except Exception:
                ok = False  # no memo for this batch: their lookups meet the error and report it
            else:
                ok = True
                if version != self._version:
                    self._memo = _moved(self._memo, self._version, version, self._lines_changed)
                    self._version = version
            for waiter in batch:
                if not waiter.done():  # a request whose client went away is cancelled
                    waiter.set_result(ok)
