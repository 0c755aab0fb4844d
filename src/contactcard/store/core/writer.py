"""Every write transaction of the API, group-committed by writer threads.

A request never holds a database connection while it waits: it hands a transaction (a
list of statements, `Tx`) to a queue and awaits its answer on the event loop. Writer
threads, each owning one connection, take every transaction that is waiting, run them
together in one database transaction and commit once; each request is answered only
after the commit that made its own data durable (group commit).

One thread, one queue, one connection, answers set on the caller's loop (aiosqlite's
shape). What differs between the databases is the `Dialect` the writer is given
(`sqlite.py`, `postgres.py`): how to connect, how to run a batch in one transaction,
whether a batch under way can be broken off at a deadline. The writer itself knows
neither database.

- SQLite has one writer at a time anyway: no busy-waiting on the file's lock between
  requests, and one fsync for a whole batch instead of one each.
- PostgreSQL sends each batch as one pipeline (`BEGIN`, the statements, `COMMIT` in one
  round trip), so the cost of a write is its statements, not its round trips; the card
  store composes a write's statements into one (`store/cards.py`). (Three threads, each
  flushing its own smaller batch, made about 15 % fewer writes per second at 64
  connections than one: the driver's work per batch is paid more often, and the threads
  contend for the interpreter. While the one thread waits for a flush, the next batch fills.)

A transaction's statements never depend on each other's results (conditions live in the
SQL), which is what lets a batch be sent at once. If one transaction of a batch fails
(say, a line removed meanwhile breaks a foreign key) the batch is rolled back and each
of its transactions is run again on its own, so only the broken one fails. If the
database cannot be reached, every transaction waiting fails with `StoreUnavailable` at
once rather than after a timeout; the next transaction tries to connect again.

Every transaction has a deadline, `timeout` seconds after it was queued (one timer on
its event loop, no task). Past it:

- still queued: it is taken out (the writer skips it) and fails with `WriteExpired`:
  it is never applied;
- already sent, where the dialect can break a batch off (PostgreSQL): the batch's
  connection is abandoned (`deadlines.py`), so the writer thread is free again at
  once, and it fails with `WriteInDoubt`: its commit may have
  reached the database, which then settles it whole, committed or rolled back, whenever
  it answers again. A caller told so must read before it writes again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from contactcard.store.core.deadlines import sweep
from contactcard.store.core.errors import StoreUnavailable, WriteExpired, WriteInDoubt
from contactcard.store.core.statements import Lines, Row, Stmt, Tx

log = logging.getLogger("contactcard")

# Transactions per batch: enough to share one commit among every waiting request, small
# enough that one batch's answer is not held back long.
MAX_BATCH = 256

Results = list[list[list[Row]]]  # per transaction, per statement, its rows


class Dialect(Protocol):
    """What the writer needs of one database; each database's differences live in its own."""

    # Seconds a connection may stay unused before it is closed (None: kept).
    idle_close: float | None
    # Seconds between looks at an unused connection for a database that closed it (it was
    # restarted, or ended the session): dropped then, not left half-closed until its next
    # use. None: never looked at.
    idle_check: float | None
    # Whether statements may be composed with data-modifying CTEs (`WITH ... AS (INSERT ...)`).
    composes_writes: bool
    # Whether a batch under way at a deadline is broken off (its connection abandoned); else
    # the thread answers it when the database does (SQLite: its busy timeout bounds that).
    abandons: bool
    # Whether an abandoned batch may still commit (a server that got the commit settles it
    # later); False where nothing is written.
    abandoned_may_commit: bool

    def connect(self) -> Any:
        """A new connection; StoreUnavailable when the database cannot be reached."""

    def commit(self, connection: Any, txs: list[Tx], lines: Lines) -> Results:
        """Run the transactions in one database transaction; raise StoreUnavailable when the
        database is gone or refuses, any other exception when one of them is broken.
        `lines`: what they may change, for the GET memo's log of this process's commits."""

    def closed_by_database(self, connection: Any) -> bool:
        """Whether the database has closed `connection`, which is unused."""

    def abandon(self, connection: Any) -> None:
        """Make the thread waiting on `connection` fail at once (called from any thread)."""


class Reads(Protocol):
    """Where the write path's reads under a line's lock go, when not through the writer."""

    async def read(self, stmt: Stmt) -> list[Row]: ...
    def close(self) -> None: ...


class Transactions(Protocol):
    """What the store's modules run their statements on: a `Writer`, or a SQLite delivery
    child's `relay.RelayedWriter`, which hands them to its server's writer."""

    async def run(self, tx: Tx, *, lines: Lines = None) -> list[list[Row]]: ...
    async def read(self, stmt: Stmt) -> list[Row]: ...
    def close(self) -> None: ...


# Where a transaction is; changed under the writer's lock, by its thread or the deadline.
_QUEUED, _SENT, _DONE = 0, 1, 2


def lines_of(jobs: Sequence[_Job]) -> Lines:
    """Every line the jobs may change; None when one of them may change any answer."""
    found: set[str] = set()
    for job in jobs:
        if job.lines is None:
            return None
        found |= job.lines
    return frozenset(found)


@dataclass
class _Job:
    tx: Tx
    future: asyncio.Future[list[list[Row]]]
    loop: asyncio.AbstractEventLoop
    lines: Lines = None
    queued_at: float = field(default_factory=time.monotonic)
    state: int = _QUEUED
    deadline: asyncio.TimerHandle | None = None

    def answer(self, result: list[list[Row]] | BaseException) -> None:
        _on_loop(self.loop, self._settle, result)

    def _settle(self, result: list[list[Row]] | BaseException) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        if self.future.done():  # answered at its deadline, or cancelled at shutdown
            return
        if isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


def _answer_all(batch: list[_Job], results: list[list[list[Row]]]) -> None:
    """Answer a committed batch with one wake-up of each event loop, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, list[list[Row]]]]] = {}
    for job, result in zip(batch, results, strict=True):
        by_loop.setdefault(job.loop, []).append((job, result))
    for loop, answers in by_loop.items():
        _on_loop(loop, _settle_all, answers)


def _on_loop(loop: asyncio.AbstractEventLoop, callback: Any, argument: Any) -> None:
    try:
        loop.call_soon_threadsafe(callback, argument)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting, and the thread goes on
        pass


def _settle_all(answers: list[tuple[_Job, list[list[Row]]]]) -> None:
    for job, result in answers:
        job._settle(result)


class Writer:
    """The queue and its one thread, on a connection of the `dialect`'s database."""

    def __init__(self, dialect: Dialect, *, timeout: float, reads: Reads | None = None) -> None:
        """`reads`: where `read` goes (else a read is a transaction of the writer's own)."""
        self.dialect = dialect
        self._timeout = timeout  # how long a transaction may wait for the database
        self._reads = reads
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        # The connection and jobs of the batch under way (under `_lock`): what a job's
        # deadline abandons, and what the writer thread then answers "in doubt".
        self._sending: tuple[Any, list[_Job]] | None = None
        self._abandoned = False
        self._failed = False  # the last batch found no database (the writer thread's own)

    @property
    def composes_writes(self) -> bool:
        """Whether the store may compose statements with data-modifying CTEs (the dialect's say)."""
        return self.dialect.composes_writes

    async def run(self, tx: Tx, *, lines: Lines = None) -> list[list[Row]]:
        """Run `tx` in a committed transaction; the rows of each statement that wants them.
        `lines`: the only lines whose GET answers `tx` may change (an empty set: none), so
        that the GET memo keeps the others' (`commits.py`); None, the default: any."""
        if self._closed:
            raise StoreUnavailable("the server is stopping")
        self._start()
        loop = asyncio.get_running_loop()
        job = _Job(tx, loop.create_future(), loop, lines)
        job.deadline = loop.call_later(self._timeout, self._expire, job)
        self._queue.put(job)
        # Shielded: once queued the transaction will run; a cancelled request must not
        # let the next write of its line overtake it (the line's lock is released then).
        return await asyncio.shield(job.future)

    async def read(self, stmt: Stmt) -> list[Row]:
        """The rows of one read the write path makes under its line's lock."""
        if self._reads is not None:
            return await self._reads.read(stmt)
        return (await self.run([Stmt(stmt.sql, stmt.params, rows=True)]))[0]

    def backlog(self) -> int:
        """Transactions queued for the writer thread and not yet taken (for the metrics)."""
        return self._queue.qsize()

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close the connections."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        if self._reads is not None:
            self._reads.close()

    def _expire(self, job: _Job) -> None:
        """On the job's loop, at its deadline: out of the queue, or its batch abandoned."""
        abandons = self.dialect.abandons
        with self._lock:
            state = job.state
            if state == _QUEUED:
                job.state = _DONE  # the writer thread skips it
            elif state == _SENT and abandons:
                job.state = _DONE  # answered here: never run again on its own
                if self._sending is not None and not self._abandoned:
                    self._abandoned = True
                    self.dialect.abandon(self._sending[0])
        if job.future.done():
            return
        if state == _QUEUED:
            job.future.set_exception(WriteExpired("no database answer in time; the write was never sent"))
        elif state == _SENT and self.dialect.abandoned_may_commit:
            job.future.set_exception(WriteInDoubt("no database answer in time after the write was sent"))
        elif state == _SENT and abandons:
            job.future.set_exception(StoreUnavailable("no database answer in time"))
        # Else its answer is on the way to this loop, or comes within the busy timeout.

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="contactcard-writer-0", daemon=True)
                self._thread.start()

    def _idle_wait(self, connection: Any) -> float | None:
        """How long the thread waits for a job before it looks at its idle connection."""
        if connection is None:
            return None
        waits = [w for w in (self.dialect.idle_close, self.dialect.idle_check) if w is not None]
        return min(waits) if waits else None

    def _serve(self) -> None:
        connection: Any = None
        used = time.monotonic()
        idle_close = self.dialect.idle_close
        while True:
            try:
                first = self._queue.get(timeout=self._idle_wait(connection))
            except queue.Empty:
                idle = idle_close is not None and time.monotonic() - used >= idle_close
                # Idle: give the connection back, so that quiet processes leave room under
                # the database's connection limit. The next write connects again.
                if idle or self.dialect.closed_by_database(connection):
                    _disconnect(connection)
                    connection = None
                continue
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # for this thread's next turn, after this batch
                    break
                batch.append(job)
            connection = self._serve_batch(connection, batch)
            used = time.monotonic()
        if connection is not None:
            _disconnect(connection)

    def _claim(self, connection: Any, batch: list[_Job]) -> list[_Job]:
        """The jobs of `batch` whose deadline has not passed, marked sent on `connection`."""
        with self._lock:
            live = [job for job in batch if job.state == _QUEUED]
            for job in live:
                job.state = _SENT
            self._sending = (connection, live)
            self._abandoned = False
        return live

    def _sent(self) -> bool:
        """The batch under way is over; whether its connection was abandoned meanwhile."""
        with self._lock:
            if self._sending is not None:
                for job in self._sending[1]:
                    job.state = _DONE
            self._sending = None
            return self._abandoned

    def _requeue(self) -> None:
        """The batch under way was rolled back: its jobs not yet answered are queued again
        (their deadline takes them out as before)."""
        with self._lock:
            if self._sending is not None:
                for job in self._sending[1]:
                    if job.state == _SENT:
                        job.state = _QUEUED
            self._sending = None

    def _serve_batch(self, connection: Any, batch: list[_Job]) -> Any:
        dialect = self.dialect
        try:
            if connection is None:
                connection = dialect.connect()
                if self._failed:
                    self._failed = False
                    sweep()  # back after failing: close what timed-out attempts left open
        except StoreUnavailable as exc:
            self._failed = True
            # What queued meanwhile would wait the same bound for the same refusal, and
            # each batch in turn would add its bound to the next one's wait.
            for job in [*batch, *self._drain()]:
                job.answer(exc)
            return None
        batch = self._claim(connection, batch)
        if not batch:
            self._sent()
            return connection
        try:
            results = dialect.commit(connection, [job.tx for job in batch], lines_of(batch))
        except StoreUnavailable as exc:
            self._failed = True
            abandoned = self._sent()
            _disconnect(connection)
            if abandoned and dialect.abandoned_may_commit:
                # Answered already, at the first deadline; the others were sent too.
                doubt = WriteInDoubt(str(exc))
                for job in batch:
                    job.answer(doubt)
                batch = []
            for job in [*batch, *self._drain()]:
                job.answer(exc)
            return None
        except Exception:
            self._requeue()
            # One transaction is broken: the batch was rolled back; run each on its own
            # (each still within its deadline).
            for job in batch:
                if connection is None:
                    job.answer(StoreUnavailable("the database connection was lost"))
                    continue
                if not self._claim(connection, [job]):
                    self._sent()
                    continue
                try:
                    job.answer(dialect.commit(connection, [job.tx], job.lines)[0])
                except StoreUnavailable as exc:
                    _disconnect(connection)
                    connection = None
                    job.answer(exc)
                except Exception as exc:
                    job.answer(exc)
                finally:
                    self._sent()
            return connection
        self._sent()
        _answer_all(batch, results)
        return connection

    def _drain(self) -> list[_Job]:
        """Take every queued transaction off the queue (a stop marker stays queued)."""
        taken: list[_Job] = []
        stops = 0
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stops += 1
            else:
                taken.append(job)
        for _ in range(stops):
            self._queue.put(None)
        return taken


def _disconnect(connection: Any) -> None:
    try:
        connection.close()
    except Exception:
        pass
