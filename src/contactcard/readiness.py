"""Readiness: may a load balancer send this process traffic?

`/healthz` only says the process answers. `/readyz` asks every dependency a request needs
(the database, at the schema this code expects, and the image store) within one bound,
so a host whose database or bucket is gone is taken out of rotation instead of answering
503s.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.to_thread

from contactcard.cdn import BlobStore, BlobStoreUnavailable
from contactcard.store.db import Database, schema_state


class Readiness:
    def __init__(self, database: Database, cdn: BlobStore, *, timeout: float) -> None:
        self._database = database
        self._cdn = cdn
        self._timeout = timeout
        # A check still running (a hung connection) is not started again: polling a dead
        # dependency every few seconds must not pile up blocked threads.
        self._in_flight: set[str] = set()

    async def check(self) -> dict[str, str]:
        """Each dependency's state: "ok", or why it is not ready."""
        found: dict[str, str] = {}

        async def run(name: str, probe: Callable[[], str]) -> None:
            found[name] = await self._bounded(name, probe)

        async with anyio.create_task_group() as group:
            group.start_soon(run, "database", self._database_state)
            group.start_soon(run, "image_store", self._store_state)
        return found

    async def _bounded(self, name: str, probe: Callable[[], str]) -> str:
        if name in self._in_flight:
            return "no answer yet from the previous check"
        self._in_flight.add(name)

        def probe_once() -> str:
            try:
                return probe()
            finally:
                self._in_flight.discard(name)

        with anyio.move_on_after(self._timeout):
            return await anyio.to_thread.run_sync(probe_once, abandon_on_cancel=True)
        return f"no answer within {self._timeout:g} s"

    def _database_state(self) -> str:
        return schema_state(self._database)

    def _store_state(self) -> str:
        try:
            self._cdn.ping()
        except BlobStoreUnavailable as exc:
            return f"unreachable ({str(exc)[:200]})"
        return "ok"
