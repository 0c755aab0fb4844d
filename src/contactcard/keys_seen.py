"""When each API key was last used, without a database write per request.

The HTTP layer marks a key in `KeysSeen` (a dict store, on the event loop: no lock, no
I/O) wherever it accepts one; `KeyUseFlusher` stores the marks at most every
`key_use_flush_interval` seconds, and at shutdown, in one transaction
(`store/key_use.py`). Each process flushes its own marks; the store keeps the later of
its time and the flushed one, so processes that flush out of order never move a key's
last use back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import anyio
import anyio.to_thread

log = logging.getLogger("contactcard")

# Key hash to unix seconds on the server's clock.
Marks = dict[str, float]


class KeysSeen:
    """The last time, per key hash, that this process accepted a request made with it."""

    __slots__ = ("_clock", "_marks")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._marks: Marks = {}

    def mark(self, key_hash: str) -> None:
        self._marks[key_hash] = self._clock()

    def take(self) -> Marks:
        """The marks so far; the tally starts again empty."""
        taken, self._marks = self._marks, {}
        return taken

    def give_back(self, taken: Marks) -> None:
        """Marks a flush could not store, for the next one (a later mark made since wins)."""
        for key_hash, at in taken.items():
            if self._marks.get(key_hash, 0.0) < at:
                self._marks[key_hash] = at


class KeyUseFlusher:
    """Stores the tally every `interval` seconds and once more when closed. A flush is
    bounded by `timeout` and never fails the server: what it could not store waits for the
    next one, and one line (no key, no hash, no SQL) says so."""

    def __init__(self, seen: KeysSeen, store: Callable[[Marks], None], *, interval: float, timeout: float) -> None:
        self.seen = seen
        self._store = store
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> bool:
        """True when every mark taken was stored (or there were none)."""
        taken = self.seen.take()
        if not taken:
            return True
        try:
            with anyio.fail_after(self._timeout):
                # A store still running past the bound finishes on its own; its marks are
                # given back anyway, and storing them again later changes nothing.
                await anyio.to_thread.run_sync(self._store, taken, abandon_on_cancel=True)
        except Exception as exc:
            self.seen.give_back(taken)
            log.warning(
                "could not store when %d API keys were last used (%s); kept for the next try",
                len(taken),
                type(exc).__name__,
                extra={"event": "key_use_not_stored"},
            )
            return False
        return True
