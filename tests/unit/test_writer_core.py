"""The writer against a dialect of the test's own: the queue, the group commit, the rerun of a
broken batch and the deadlines hold whatever the database, because the writer knows none
(store/core/writer.py). Milliseconds, no database."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from contactcard.store.core import Stmt, StoreUnavailable, WriteExpired, WriteInDoubt, Writer
from contactcard.store.core.statements import Lines, Tx
from contactcard.store.core.writer import Results


class Broken(Exception):
    pass


class ScriptedDialect:
    """A database in memory: each statement's SQL is its one row; `BROKEN` breaks its batch;
    `gate` holds a commit until the test lets it go; `down` refuses to connect."""

    idle_close: float | None = None
    idle_check: float | None = None
    composes_writes = False

    def __init__(self, *, abandons: bool = False) -> None:
        self.abandons = abandons
        self.abandoned_may_commit = abandons
        self.batches: list[list[str]] = []
        self.gate: threading.Event | None = None
        self.down = False
        self.abandoned = threading.Event()

    def connect(self) -> Any:
        if self.down:
            raise StoreUnavailable("no database")
        return self

    def close(self) -> None:  # the writer closes a connection; this one is the dialect itself
        pass

    def commit(self, connection: Any, txs: list[Tx], lines: Lines) -> Results:
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if self.abandoned.is_set():
                    raise StoreUnavailable("abandoned")
        sqls = [stmt.sql for tx in txs for stmt in tx]
        self.batches.append(sqls)
        if "BROKEN" in sqls:
            raise Broken()
        return [[[(stmt.sql,)] if stmt.rows else [] for stmt in tx] for tx in txs]

    def closed_by_database(self, connection: Any) -> bool:
        return False

    def abandon(self, connection: Any) -> None:
        self.abandoned.set()


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_every_waiting_transaction_shares_one_commit():
    dialect = ScriptedDialect()
    writer = Writer(dialect, timeout=5)
    dialect.gate = threading.Event()

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(writer.run([Stmt("a", {})]))
        await asyncio.sleep(0.05)  # the first batch is under way, held at the gate
        rest = [asyncio.ensure_future(writer.run([Stmt(f"b{n}", {}, rows=True)])) for n in range(5)]
        await asyncio.sleep(0.05)
        assert dialect.gate is not None
        dialect.gate.set()
        return await asyncio.gather(first, *rest)

    try:
        answers = _run(scenario())
    finally:
        writer.close()
    assert dialect.batches == [["a"], ["b0", "b1", "b2", "b3", "b4"]]
    assert answers[1:] == [[[(f"b{n}",)]] for n in range(5)]


def test_a_broken_transaction_fails_alone_and_the_others_commit():
    dialect = ScriptedDialect()
    writer = Writer(dialect, timeout=5)
    dialect.gate = threading.Event()

    async def scenario() -> list[Any]:
        hold = asyncio.ensure_future(writer.run([Stmt("hold", {})]))
        await asyncio.sleep(0.05)
        good = asyncio.ensure_future(writer.run([Stmt("good", {}, rows=True)]))
        bad = asyncio.ensure_future(writer.run([Stmt("BROKEN", {})]))
        await asyncio.sleep(0.05)
        assert dialect.gate is not None
        dialect.gate.set()
        return await asyncio.gather(hold, good, bad, return_exceptions=True)

    try:
        _, good, bad = _run(scenario())
    finally:
        writer.close()
    assert good == [[("good",)]]
    assert isinstance(bad, Broken)
    # The batch together, rolled back; then each on its own.
    assert dialect.batches[1:] == [["good", "BROKEN"], ["good"], ["BROKEN"]]


def test_a_transaction_queued_past_its_deadline_is_never_sent():
    dialect = ScriptedDialect()
    writer = Writer(dialect, timeout=0.2)
    dialect.gate = threading.Event()

    async def scenario() -> Any:
        first = asyncio.ensure_future(writer.run([Stmt("first", {})]))
        await asyncio.sleep(0.02)
        late = asyncio.ensure_future(writer.run([Stmt("late", {})]))
        with pytest.raises(WriteExpired):
            await late
        assert dialect.gate is not None
        dialect.gate.set()
        return await first

    try:
        _run(scenario())
        _run(writer.run([Stmt("after", {})]))
    finally:
        writer.close()
    assert ["late"] not in dialect.batches
    assert dialect.batches[-1] == ["after"]


def test_a_sent_batch_past_its_deadline_is_broken_off_where_the_dialect_can():
    dialect = ScriptedDialect(abandons=True)
    writer = Writer(dialect, timeout=0.2)
    dialect.gate = threading.Event()  # never set: a frozen database

    try:
        with pytest.raises(WriteInDoubt):
            _run(writer.run([Stmt("sent", {})]))
        assert dialect.abandoned.wait(1)
    finally:
        dialect.gate.set()
        writer.close()


def test_a_database_that_refuses_fails_every_waiting_transaction_at_once():
    dialect = ScriptedDialect()
    dialect.down = True
    writer = Writer(dialect, timeout=5)

    async def scenario() -> list[Any]:
        runs = [writer.run([Stmt(f"w{n}", {})]) for n in range(3)]
        return await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 2)

    try:
        answers = _run(scenario())
        assert all(isinstance(a, StoreUnavailable) and not isinstance(a, WriteExpired) for a in answers)
        dialect.down = False  # back: the next transaction connects again
        assert _run(writer.run([Stmt("back", {}, rows=True)])) == [[("back",)]]
    finally:
        writer.close()


class ListReads:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.closed = False

    async def read(self, stmt: Stmt) -> list[tuple[Any, ...]]:
        self.asked.append(stmt.sql)
        return [("from the reads",)]

    def close(self) -> None:
        self.closed = True


def test_reads_go_where_the_writer_is_told_and_close_with_it():
    dialect = ScriptedDialect()
    reads = ListReads()
    writer = Writer(dialect, timeout=5, reads=reads)
    assert _run(writer.read(Stmt("state", {}))) == [("from the reads",)]
    writer.close()
    assert reads.asked == ["state"] and reads.closed
    assert dialect.batches == []  # the writer's own connection was never used

    alone = Writer(ScriptedDialect(), timeout=5)
    try:
        assert _run(alone.read(Stmt("state", {}))) == [("state",)]  # a transaction of its own
    finally:
        alone.close()


def test_the_writer_goes_on_after_a_callers_event_loop_closed_before_its_answer():
    dialect = ScriptedDialect()
    writer = Writer(dialect, timeout=5)
    dialect.gate = threading.Event()

    async def leave_early() -> None:
        orphan = asyncio.ensure_future(writer.run([Stmt("orphan", {})]))
        await asyncio.sleep(0.05)  # sent, held at the gate; then this loop closes
        assert not orphan.done()

    try:
        _run(leave_early())
        dialect.gate.set()  # its answer now has no loop to go to
        deadline = time.monotonic() + 2
        while ["orphan"] not in dialect.batches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ["orphan"] in dialect.batches
        # The thread dropped that answer and still serves callers on other loops.
        answer = _run(asyncio.wait_for(writer.run([Stmt("next", {}, rows=True)]), 2))
        assert answer == [[("next",)]]
    finally:
        writer.close()
