"""PostgreSQL's side of the core: a server that may be stopped, restarted or frozen.

- Each batch is one pipeline: `BEGIN`, the statements, `COMMIT`, in one round trip.
- A batch under way at a deadline is broken off (`deadlines.abandon`): the thread is
  free at once, and its callers are told `WriteInDoubt` (the server settles the
  transaction whole when it answers again).
- An unused connection is looked at every second: a readable socket is the server's
  goodbye (a restart), and it is dropped then rather than found broken at the next
  write; after 30 s unused it is closed, leaving room under the connection limit.
- The write path's reads under a line's lock go to a second writer of their own, in
  autocommit (`reads=True`): in a batch of writes they would wait for its commit's flush,
  which they do not need. Each sees every commit made before it was sent.
- The GET memo's version is the cluster's snapshot: inside each transaction the writer
  asks for its id and tells the `CommitLog` which lines it may change.
- `durable=False` (a webhook delivery process) sets `synchronous_commit = off`: a commit
  is answered before it is flushed; one lost to a crash is an attempt made once more.
"""

from __future__ import annotations

import contextlib
import select
from typing import Any

from contactcard.store.core.commits import CommitLog
from contactcard.store.core.deadlines import abandon, connection_options
from contactcard.store.core.errors import StoreUnavailable
from contactcard.store.core.statements import Lines, Tx, pyformat
from contactcard.store.core.writer import Results, Writer

# In the transaction, after its statements, before its commit: its id if it wrote anything
# (asking does not give a read-only one an id of its own).
_OWN_XID = "SELECT pg_current_xact_id_if_assigned()::text"


def postgres_writer(
    conninfo: str,
    *,
    timeout: float,
    reads: bool = True,
    commits: CommitLog | None = None,
    durable: bool = True,
) -> Writer:
    """The writer of the database at `conninfo`; `reads`: with a reads lane of its own (see
    the module); `commits` is told of each commit whose lines are known."""
    dialect = PostgresDialect(conninfo, timeout=timeout, commits=commits, durable=durable)
    lane = Writer(PostgresDialect(conninfo, timeout=timeout, autocommit=True), timeout=timeout) if reads else None
    return Writer(dialect, timeout=timeout, reads=lane)


class PostgresDialect:
    idle_close: float | None = 30.0
    idle_check: float | None = 1.0
    composes_writes = True
    abandons = True

    def __init__(
        self,
        conninfo: str,
        *,
        timeout: float,
        commits: CommitLog | None = None,
        durable: bool = True,
        autocommit: bool = False,
    ) -> None:
        """`autocommit`: each statement on its own, outside any transaction (reads only)."""
        self._conninfo = conninfo
        self._timeout = timeout
        self._commits = commits
        self._session: dict[str, Any] = {} if durable else {"options": "-c synchronous_commit=off"}
        self._autocommit = autocommit
        self.abandoned_may_commit = not autocommit  # an abandoned read commits nothing

    def connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(
                self._conninfo, autocommit=self._autocommit, **connection_options(self._timeout), **self._session
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    def commit(self, connection: Any, txs: list[Tx], lines: Lines) -> Results:
        import psycopg

        transaction = contextlib.nullcontext() if self._autocommit else connection.transaction()
        try:
            with connection.pipeline(), transaction:
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

    def closed_by_database(self, connection: Any) -> bool:
        # Nothing is due from the server on an unused connection (no LISTEN here): a
        # readable socket is its goodbye (a restart's FATAL, or the end of file).
        try:
            if connection.closed:
                return True
            ready, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        except Exception:  # no socket left to look at: closed
            return True
        return bool(ready)

    def abandon(self, connection: Any) -> None:
        abandon(connection)
