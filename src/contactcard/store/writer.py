"""Every write transaction of the API, group-committed by writer threads.

A request never holds a database connection while it waits: it hands a transaction (a
list of statements, `Tx`) to a queue and awaits its answer on the event loop. Writer
threads, each owning one connection, take every transaction that is waiting, run them
together in one database transaction and commit once; each request is answered only
after the commit that made its own data durable (group commit).

- SQLite has one writer at a time, so there is one writer thread: no busy-waiting on the
  file's lock between requests, and one fsync for a whole batch instead of one each.
- PostgreSQL: one writer thread too, sending each batch as one pipeline (`BEGIN`, the
  statements, `COMMIT` in one round trip), so the cost of a write is its statements,
  not its round trips; the card store composes a write's statements into one
  (`store/cards.py`).

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
- already sent: the batch's connection is abandoned (`deadlines.py`), so the writer
  thread is free again at once, and it fails with `WriteInDoubt`: its commit may have
  reached the database, which then settles it whole, committed or rolled back, whenever
  it answers again. A caller told so must read before it writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import re
import select
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contactcard.store.commits import CommitLog, CountLog
from contactcard.store.deadlines import abandon, connection_options, sweep

log = logging.getLogger("contactcard")

Row = tuple[Any, ...]
Params = dict[str, Any]

# Transactions per batch: enough to share one commit among every waiting request, small
# enough that one batch's answer is not held back long.
MAX_BATCH = 256


class StoreUnavailable(Exception):
    """The database could not be reached, or refused the change (locked, read-only, full)."""


class WriteExpired(StoreUnavailable):
    """The transaction waited in the queue past its deadline: it was never sent."""


class WriteInDoubt(StoreUnavailable):
    """The transaction was sent, and the database did not answer by its deadline: it is
    committed or rolled back whole, whichever the database does when it answers again."""


# Where a transaction is; changed under the writer's lock, by its thread or the deadline.
_QUEUED, _SENT, _DONE = 0, 1, 2


@dataclass(frozen=True)
class Stmt:
    """One SQL statement with `:name` placeholders; `rows` when its answer is wanted."""

    sql: str
    params: Params
    rows: bool = False


Tx = Sequence[Stmt]


Lines = frozenset[str] | None  # the lines whose GET answers a transaction may change; None: any
NO_LINES: Lines = frozenset()  # a transaction no GET answer depends on (webhooks, the device)


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
        self.loop.call_soon_threadsafe(self._settle, result)

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
        loop.call_soon_threadsafe(_settle_all, answers)


def _settle_all(answers: list[tuple[_Job, list[list[Row]]]]) -> None:
    for job, result in answers:
        job._settle(result)


_PLACEHOLDER = re.compile(r"(?<![:\w]):(\w+)")


@functools.cache  # the statements are a fixed set: each is converted once per process
def pyformat(sql: str) -> str:
    """`:name` placeholders as psycopg's `%(name)s` (the SQL itself has no `%`)."""
    return _PLACEHOLDER.sub(r"%(\1)s", sql)


class Writer:
    """The queue and the writer threads; subclasses own the connections."""

    threads = 1
    idle_close: float | None = None  # seconds a connection may stay unused before it is closed
    # Seconds between looks at an unused connection for a database that closed it (it was
    # restarted, or ended the session): dropped then, not left half-closed until its next
    # use. None: never looked at.
    idle_check: float | None = None
    # Whether statements may be composed with data-modifying CTEs (`WITH ... AS (INSERT ...)`):
    # PostgreSQL's, not SQLite's.
    composes_writes = False
    # Whether a batch under way at a deadline is abandoned (its connection broken off);
    # else the thread answers it when the database does (SQLite: its busy timeout bounds
    # that wait already).
    abandons = False
    # Whether an abandoned batch may still commit (a server that got the commit settles it
    # later); False where nothing is written.
    abandoned_may_commit = False

    def __init__(self, *, timeout: float) -> None:
        self._timeout = timeout  # how long a transaction may wait for the database
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        # The connection and jobs of the batch under way (under `_lock`): what a job's
        # deadline abandons, and what the writer thread then answers "in doubt".
        self._sending: tuple[Any, list[_Job]] | None = None
        self._abandoned = False
        self._failed = False  # the last batch found no database (the writer thread's own)

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

    def _expire(self, job: _Job) -> None:
        """On the job's loop, at its deadline: out of the queue, or its batch abandoned."""
        with self._lock:
            state = job.state
            if state == _QUEUED:
                job.state = _DONE  # the writer thread skips it
            elif state == _SENT and self.abandons:
                job.state = _DONE  # answered here: never run again on its own
                if self._sending is not None and not self._abandoned:
                    self._abandoned = True
                    self._abandon(self._sending[0])
        if job.future.done():
            return
        if state == _QUEUED:
            job.future.set_exception(WriteExpired("no database answer in time; the write was never sent"))
        elif state == _SENT and self.abandoned_may_commit:
            job.future.set_exception(WriteInDoubt("no database answer in time after the write was sent"))
        elif state == _SENT and self.abandons:
            job.future.set_exception(StoreUnavailable("no database answer in time"))
        # Else its answer is on the way to this loop, or comes within the busy timeout.

    def _abandon(self, connection: Any) -> None:
        """Make the thread waiting on `connection` fail at once (any thread may call it)."""

    def backlog(self) -> int:
        """Transactions queued for the writer threads and not yet taken (for the metrics)."""
        return self._queue.qsize()

    async def read(self, stmt: Stmt) -> list[Row]:
        """The rows of one read the write path makes under its line's lock."""
        return (await self.run([Stmt(stmt.sql, stmt.params, rows=True)]))[0]

    def _start(self) -> None:
        if self._workers:
            return
        with self._lock:
            if self._workers:
                return
            for number in range(self.threads):
                worker = threading.Thread(target=self._serve, name=f"contactcard-writer-{number}", daemon=True)
                worker.start()
                self._workers.append(worker)

    def close(self) -> None:
        """Finish what is queued, then stop the threads and close the connections."""
        self._closed = True
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        self._workers = []

    def _closed_by_database(self, connection: Any) -> bool:
        """Whether the database has closed `connection`, which is unused (a subclass knows how)."""
        return False

    def _idle_wait(self, connection: Any) -> float | None:
        """How long the thread waits for a job before it looks at its idle connection."""
        if connection is None:
            return None
        waits = [w for w in (self.idle_close, self.idle_check) if w is not None]
        return min(waits) if waits else None

    def _serve(self) -> None:
        connection: Any = None
        used = time.monotonic()
        while True:
            try:
                first = self._queue.get(timeout=self._idle_wait(connection))
            except queue.Empty:
                idle = self.idle_close is not None and time.monotonic() - used >= self.idle_close
                # Idle: give the connection back, so that quiet processes leave room under
                # the database's connection limit. The next write connects again.
                if idle or self._closed_by_database(connection):
                    self._disconnect(connection)
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
            self._disconnect(connection)

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
        try:
            if connection is None:
                connection = self._connect()
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
            results = self._commit(connection, [job.tx for job in batch], lines_of(batch))
        except StoreUnavailable as exc:
            self._failed = True
            abandoned = self._sent()
            self._disconnect(connection)
            if abandoned and self.abandoned_may_commit:
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
                    job.answer(self._commit(connection, [job.tx], job.lines)[0])
                except StoreUnavailable as exc:
                    self._disconnect(connection)
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

    def _connect(self) -> Any:
        raise NotImplementedError

    def _disconnect(self, connection: Any) -> None:
        try:
            connection.close()
        except Exception:
            pass

    def _commit(self, connection: Any, txs: list[Tx], lines: Lines = None) -> list[list[list[Row]]]:
        """Run the transactions in one database transaction; raise StoreUnavailable when the
        database is gone or refuses, any other exception when one of them is broken.
        `lines`: what they may change, for the commit log (PostgreSQL)."""
        raise NotImplementedError


def sqlite_value(value: object) -> object:
    # The text form SQLAlchemy's SQLite dialect stores, so the admin side reads it back.
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class SqliteWriter(Writer):
    """One writer thread on one connection: SQLite has one writer at a time anyway."""

    threads = 1

    def __init__(self, path: str, *, timeout: float, counts: CountLog | None = None, durable: bool = True) -> None:
        """`durable`: each commit is on disk before it is answered (`synchronous=FULL`). A
        webhook delivery process passes False: its commits are claims and outcomes, and one
        lost to a power cut is an attempt made once more, which at-least-once delivery
        allows; without a sync of their own they hold the file's one write lock for
        microseconds instead of a disk flush, which the card writes would wait behind."""
        super().__init__(timeout=timeout)
        self._path = path
        self._synchronous = "FULL" if durable else "NORMAL"
        self._counts = counts  # told of each commit whose lines are known (the GET memo reads it)
        self._reader: sqlite3.Connection | None = None

    async def read(self, stmt: Stmt) -> list[Row]:
        # Reads need no writer: in WAL mode a plain SELECT on the event loop's own
        # connection sees every commit and takes microseconds.
        try:
            if self._reader is None:
                self._reader = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                self._reader.execute("PRAGMA query_only=ON")
                self._reader.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            return self._reader.execute(stmt.sql, {k: sqlite_value(v) for k, v in stmt.params.items()}).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def close(self) -> None:
        super().close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a write the server acknowledged survives a crash of the machine too.
            connection.execute(f"PRAGMA synchronous={self._synchronous}")
            connection.execute("PRAGMA foreign_keys=ON")
            # Another process holding the file's write lock (the admin CLI, say) is waited
            # for this long, then the batch answers "database unavailable".
            connection.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        return connection

    def _commit(self, connection: sqlite3.Connection, txs: list[Tx], lines: Lines = None) -> list[list[list[Row]]]:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        counts = self._counts if lines is not None else None  # told only what it can use
        try:
            # Read under the write lock: nobody else can move the count until the commit.
            before = read_change_count(connection) if counts is not None else None
            results = [
                [
                    _sqlite_rows(
                        connection.execute(stmt.sql, {k: sqlite_value(v) for k, v in stmt.params.items()}), stmt
                    )
                    for stmt in tx
                ]
                for tx in txs
            ]
            after = read_change_count(connection) if counts is not None else None
            connection.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(connection)
            # Locked, read-only, disk full, I/O error: the database refuses, not the request.
            raise StoreUnavailable(str(exc)) from exc
        except BaseException:
            _rollback(connection)
            raise
        if counts is not None and lines is not None and before is not None and after is not None and after != before:
            counts.record(before, after, lines)
        return results


_COUNT = "SELECT n FROM change_count WHERE id = 1"


def read_change_count(connection: sqlite3.Connection) -> int | None:
    row = connection.execute(_COUNT).fetchone()
    return row[0] if row else None


def _sqlite_rows(cursor: sqlite3.Cursor, stmt: Stmt) -> list[Row]:
    return cursor.fetchall() if stmt.rows else []


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error:
        pass


# In the transaction, after its statements, before its commit: its id if it wrote anything
# (asking does not give a read-only one an id of its own).
_OWN_XID = "SELECT pg_current_xact_id_if_assigned()::text"


class PostgresWriter(Writer):
    """A writer thread sending each whole batch as one pipeline."""

    # One thread, as on SQLite: while it waits for a commit's flush the next batch fills up,
    # so each commit carries more writes. (Three threads, each flushing its own smaller
    # batch, made about 15 % fewer writes per second at 64 connections: the driver's work
    # per batch is paid more often, and the threads contend for the interpreter.)
    threads = 1
    idle_close = 30.0
    idle_check = 1.0
    composes_writes = True
    abandons = True
    abandoned_may_commit = True

    autocommit = False

    def __init__(
        self,
        conninfo: str,
        *,
        timeout: float,
        reads: bool = True,
        commits: CommitLog | None = None,
        durable: bool = True,
    ) -> None:
        """`durable`: False sets `synchronous_commit = off` on the connection, for a webhook
        delivery process (see `SqliteWriter`): a commit is answered before it is flushed,
        and one lost to a crash of the database is an attempt made once more."""
        super().__init__(timeout=timeout)
        self._conninfo = conninfo
        self._session: dict[str, Any] = {} if durable else {"options": "-c synchronous_commit=off"}
        self._commits = commits  # told of each commit whose lines are known (the GET memo reads it)
        # The write path's reads go to a thread of their own: in a writer's batch they
        # would wait for the batch's commit to be flushed to disk, which they do not need.
        self._reads = _PostgresReads(conninfo, timeout=timeout, reads=False) if reads else None

    async def read(self, stmt: Stmt) -> list[Row]:
        if self._reads is None:
            return await super().read(stmt)
        return (await self._reads.run([Stmt(stmt.sql, stmt.params, rows=True)]))[0]

    def close(self) -> None:
        super().close()
        if self._reads is not None:
            self._reads.close()

    def _abandon(self, connection: Any) -> None:
        abandon(connection)

    def _closed_by_database(self, connection: Any) -> bool:
        # Nothing is due from the server on an unused connection (no LISTEN here): a
        # readable socket is its goodbye (a restart's FATAL, or the end of file).
        try:
            if connection.closed:
                return True
            ready, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        except Exception:  # no socket left to look at: closed
            return True
        return bool(ready)

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(
                self._conninfo, autocommit=self.autocommit, **connection_options(self._timeout), **self._session
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    def _commit(self, connection: Any, txs: list[Tx], lines: Lines = None) -> list[list[list[Row]]]:
        import psycopg

        try:
            with connection.pipeline(), self._transaction(connection):
                cursors = [[connection.execute(pyformat(stmt.sql), stmt.params) for stmt in tx] for tx in txs]
                if self._commits is not None and lines is not None:
                    # Told before the commit (a round trip of its own): the GET memo may see
                    # the commit's effect on the snapshot the moment it lands, and must
                    # know then that only these lines changed.
                    xid = connection.execute(_OWN_XID).fetchone()[0]
                    if xid is not None:  # None: nothing was written, nothing to tell
                        self._commits.record(int(xid), lines)
            return [
                [cursor.fetchall() if stmt.rows else [] for cursor, stmt in zip(tx_cursors, tx, strict=True)]
                for tx_cursors, tx in zip(cursors, txs, strict=True)
            ]
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(str(exc)) from exc
        except Exception as exc:
            if connection.broken or connection.closed:  # abandoned mid-way: not the batch's fault
                raise StoreUnavailable(str(exc)) from exc
            raise

    def _transaction(self, connection: Any) -> Any:
        return connection.transaction()


class _PostgresReads(PostgresWriter):
    """One thread sending the waiting reads together, in one pipeline outside any
    transaction: each sees every commit made before it was sent."""

    threads = 1
    autocommit = True
    abandoned_may_commit = False  # reads only

    def _transaction(self, connection: Any) -> Any:
        return contextlib.nullcontext()
