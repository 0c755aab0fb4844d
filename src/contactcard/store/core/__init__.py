"""The concurrency core: who owns which thread, which connection, which queue.

A request never holds a thread or a connection while it waits; it awaits a future on
the event loop, and whatever owns the resource sets that future when the work is done.
Each owner below is one thread with one connection, fed by one queue, the way aiosqlite
runs a connection; the database differences are each in one place.

- `writer.py`, `Writer`: one thread and one connection, group-committing every waiting
  transaction in one database transaction, with a deadline per transaction. Fed by a
  `queue.SimpleQueue` of jobs (a transaction and its future); each future is set on its
  caller's loop after the commit.
- `sqlite.py`, `SqliteDialect` and `LoopReads`: how the writer talks to the SQLite file,
  and the event loop's read-only connection for the write path's reads.
- `postgres.py`, `PostgresDialect`: how the writer talks to PostgreSQL (a pipeline per
  batch, a batch abandoned at its deadline), and a second writer in autocommit for the
  write path's reads.
- `locks.py`, `LineLocks` and `AdvisoryLocks`: an `asyncio.Lock` per line; on PostgreSQL
  one thread and one connection holding every advisory lock of the process (plus the
  line's state read that rides with each), fed lock and unlock requests sent as one
  statement per batch.
- `memo.py` and `commits.py`: the GET memo, and the log of this process's own commits
  that lets it keep other lines' answers. The writer tells the log after each commit.
- `relay.py`, `RelayedWriter`: a SQLite server's webhook delivery child sends its
  transactions to its server's writer over a socket pair, so the file's one write lock
  has one holder.
- `deadlines.py`: client-side deadlines for PostgreSQL calls (a frozen server's socket is
  shut down), for every caller of PostgreSQL.

The writer is composed, not subclassed: `Writer(dialect, timeout=, reads=)`, built by
`sqlite_writer(...)` or `postgres_writer(...)`. A dialect says how to connect, how to run a
batch as one transaction, whether the database closed an unused connection, and whether
a batch under way may be broken off (PostgreSQL's can; SQLite's busy timeout bounds it).

The store's modules build statements (`statements.py`) and hand them to a writer; they
never touch a connection. The GET path's connections (a read-only SQLite connection per
thread, psycopg's async pool) are `store/reads.py`'s, beside the card statements they run.
"""

from contactcard.store.core.errors import StoreUnavailable, WriteExpired, WriteInDoubt
from contactcard.store.core.statements import NO_LINES, Lines, Params, Row, Stmt, Tx, pyformat, sqlite_value
from contactcard.store.core.writer import Dialect, Transactions, Writer

__all__ = [
    "NO_LINES",
    "Dialect",
    "Lines",
    "Params",
    "Row",
    "Stmt",
    "StoreUnavailable",
    "Transactions",
    "Tx",
    "WriteExpired",
    "WriteInDoubt",
    "Writer",
    "pyformat",
    "sqlite_value",
]
