"""A SQLite delivery child's transactions run by its server's writer over a socket pair
(store/core/relay.py): both ends in one event loop, on a real SQLite file."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contactcard.store.core import NO_LINES, Stmt, StoreUnavailable, WriteExpired
from contactcard.store.core import relay as relays
from contactcard.store.core.sqlite import LoopReads, sqlite_writer
from contactcard.store.core.statements import Lines, Tx

TIMEOUT = 5.0  # the real writers' deadline: ample, on a loaded machine too
SHORT = 0.2  # the child's, where a test waits it out


def _file(tmp_path: Path) -> str:
    path = str(tmp_path / "relay.db")
    writer = sqlite_writer(path, timeout=TIMEOUT)
    asyncio.run(writer.run([Stmt("CREATE TABLE t (n INTEGER, at TEXT)", {})]))
    writer.close()
    return path


async def _pair(
    path: str, server_writer: Any, child_wait: float = TIMEOUT
) -> tuple[relays.RelayedWriter, asyncio.Task[None]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    serving = asyncio.ensure_future(relays.serve(ours, server_writer))
    child = relays.RelayedWriter(theirs, timeout=child_wait, reads=LoopReads(path, timeout=TIMEOUT))
    return child, serving


def test_the_childs_transactions_commit_through_the_servers_writer(tmp_path: Path) -> None:
    path = _file(tmp_path)
    server_writer = sqlite_writer(path, timeout=TIMEOUT)

    async def scenario() -> None:
        child, serving = await _pair(path, server_writer)
        at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        rows = await child.run(
            [
                Stmt("INSERT INTO t (n, at) VALUES (:n, :at)", {"n": 1, "at": at}),
                Stmt("INSERT INTO t (n, at) VALUES (2, NULL) RETURNING n", {}, rows=True),
            ]
        )
        assert rows == [[], [(2,)]]
        # Several at once: each answered with its own rows.
        answers = await asyncio.gather(*(child.run([Stmt("SELECT :n", {"n": n}, rows=True)]) for n in range(20)))
        assert [a[0][0][0] for a in answers] == list(range(20))
        # Reads stay in the child, and see the server's commits.
        assert await child.read(Stmt("SELECT n, at FROM t ORDER BY n", {})) == [
            (1, "2026-01-02 03:04:05.000000"),
            (2, None),
        ]
        child.close()
        await asyncio.wait_for(serving, 5)  # the child's end closed: the server's end stops

    asyncio.run(scenario())
    server_writer.close()


def test_a_failing_transaction_is_answered_with_an_error_and_the_relay_goes_on(tmp_path: Path) -> None:
    path = _file(tmp_path)
    server_writer = sqlite_writer(path, timeout=TIMEOUT)

    async def scenario() -> None:
        child, serving = await _pair(path, server_writer)
        with pytest.raises(StoreUnavailable, match="no such table"):
            await child.run([Stmt("INSERT INTO missing VALUES (1)", {})])
        assert await child.run([Stmt("SELECT 7", {}, rows=True)]) == [[(7,)]]
        child.close()
        await asyncio.wait_for(serving, 5)

    asyncio.run(scenario())
    server_writer.close()


class _Refusing:
    """A server writer that answers as a writer past its deadline does."""

    async def run(self, tx: Tx, *, lines: Lines = None) -> list[list[Any]]:
        assert lines == NO_LINES  # the child's transactions never change a GET answer
        raise WriteExpired("no database answer in time; the write was never sent")


class _Hanging:
    """A server writer that never answers."""

    async def run(self, tx: Tx, *, lines: Lines = None) -> list[list[Any]]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_the_servers_error_reaches_the_child_as_the_same_error(tmp_path: Path) -> None:
    path = _file(tmp_path)

    async def scenario() -> None:
        child, serving = await _pair(path, _Refusing())
        with pytest.raises(WriteExpired, match="never sent"):
            await child.run([Stmt("SELECT 1", {})])
        child.close()
        await asyncio.wait_for(serving, 5)

    asyncio.run(scenario())


def test_a_server_that_never_answers_is_waited_for_a_bounded_time(tmp_path: Path) -> None:
    path = _file(tmp_path)

    async def scenario() -> None:
        child, serving = await _pair(path, _Hanging(), child_wait=SHORT)
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="in time"):
            await child.run([Stmt("SELECT 1", {})])
        waited = time.monotonic() - began
        assert SHORT + relays.MARGIN_S - 0.05 <= waited < SHORT + relays.MARGIN_S + 2
        child.close()
        serving.cancel()

    asyncio.run(scenario())


def test_a_server_gone_fails_what_waits_and_what_comes_after(tmp_path: Path) -> None:
    path = _file(tmp_path)

    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        child = relays.RelayedWriter(theirs, timeout=TIMEOUT, reads=LoopReads(path, timeout=TIMEOUT))
        waiting = asyncio.ensure_future(child.run([Stmt("SELECT 1", {})]))
        await asyncio.sleep(0.05)
        ours.close()  # the server died
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="gone"):
            await waiting
        assert time.monotonic() - began < 1  # at once, not at the deadline
        with pytest.raises(StoreUnavailable, match="gone"):
            await child.run([Stmt("SELECT 1", {})])
        child.close()

    asyncio.run(scenario())
