"""The request journal's rows (see `contactcard/journal.py`).

On a SQLite file they live in a file of their own beside it (`<name>-requests.db`): a
journal flushed twice a second under any load would otherwise take the main file's one
write lock from the API's writes twice a second, and make a backup of the cards carry the
requests too. PostgreSQL's version moves with any transaction on the server anyway, so
there the journal is a table of the main database.

Requests are stored only while someone reads the journal (`journal_readers`): a reader
marks its interest for a minute, and every process then stores its buffer twice a second.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from contactcard.journal_entry import API_PREFIXES, Entry, Query, Row
from contactcard.store.db import Database, connect
from contactcard.store.schema import journal_readers
from contactcard.store.schema import request_journal as journal

_COLUMNS = (
    "trace_id",
    "at",
    "method",
    "path",
    "phone_number",
    "status",
    "error_code",
    "duration_ms",
    "retry_count",
    "user_agent",
)


def journal_database(database: Database) -> Database:
    """Where the journal lives: beside a SQLite file, else the database itself."""
    url = make_url(database.url)
    if database.dialect != "sqlite" or not url.database or url.database == ":memory:":
        return database
    main = Path(url.database)
    side = connect(str(url.set(database=str(main.with_name(f"{main.stem}-requests.db")))))
    # IF NOT EXISTS in one write transaction: processes starting together race to make it.
    with side.writer.begin() as conn:
        conn.execute(CreateTable(journal, if_not_exists=True))
        conn.execute(CreateTable(journal_readers, if_not_exists=True))
        for index in journal.indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))
    return side


class JournalRecords:
    def __init__(self, database: Database) -> None:
        self._db = journal_database(database)
        self._owned = self._db is not database  # the side file's engines are ours to close

    def close(self) -> None:
        if self._owned:
            self._db.dispose()

    def clear(self) -> None:
        """Forget every stored request, and mark the moment, so that what other processes
        still hold from before is dropped rather than stored (a reset)."""
        with self._db.writer.begin() as conn:
            conn.execute(delete(journal))
            conn.execute(
                text(
                    "INSERT INTO journal_readers (id, wanted_until, cleared_at) VALUES (1, 0, :now) "
                    "ON CONFLICT (id) DO UPDATE SET cleared_at = excluded.cleared_at"
                ),
                {"now": time.time()},
            )

    def add(self, rows: Sequence[Row], keep: int) -> None:
        """Store the rows and trim the journal to the newest `keep` (one transaction)."""
        marker = "?" if self._db.dialect == "sqlite" else "%s"
        # The driver's executemany on plain tuples: a thousand rows took 3 ms on SQLite,
        # against 6 to 8 ms through Core's insert() with a dict per row.
        sql = f"INSERT INTO request_journal ({', '.join(_COLUMNS)}) VALUES ({', '.join([marker] * len(_COLUMNS))})"
        with self._db.writer.begin() as conn:
            conn.exec_driver_sql(sql, list(rows))
            newest = select(func.max(journal.c.id)).scalar_subquery()
            conn.execute(delete(journal).where(journal.c.id <= newest - keep))

    def demand(self) -> tuple[float, float]:
        """Until when someone reads the journal, and when it was last reset (real unix
        seconds; 0 for never)."""
        with self._db.reader.connect() as conn:
            row = conn.execute(
                select(journal_readers.c.wanted_until, journal_readers.c.cleared_at).where(journal_readers.c.id == 1)
            ).first()
        return (float(row[0]), float(row[1])) if row is not None else (0.0, 0.0)

    def want(self, until: float) -> None:
        """Someone reads the journal until `until`: every process stores its requests meanwhile."""
        with self._db.writer.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO journal_readers (id, wanted_until, cleared_at) VALUES (1, :until, 0) "
                    "ON CONFLICT (id) DO UPDATE SET wanted_until = excluded.wanted_until"
                ),
                {"until": until},
            )

    def find(self, query: Query) -> list[Entry]:
        found = select(journal)
        if query.trace_id is not None:
            found = found.where(journal.c.trace_id == query.trace_id)
        if query.phone_number is not None:
            found = found.where(journal.c.phone_number == query.phone_number)
        if query.status is not None:
            found = found.where(journal.c.status == query.status)
        if query.since is not None:
            found = found.where(journal.c.at >= query.since)
        if query.until is not None:
            found = found.where(journal.c.at <= query.until)
        if query.method is not None:
            found = found.where(journal.c.method == query.method)
        if query.path_prefix is not None:
            found = found.where(journal.c.path.startswith(query.path_prefix, autoescape=True))
        if query.status_min is not None:
            found = found.where(journal.c.status >= query.status_min)
        if query.status_max is not None:
            found = found.where(journal.c.status <= query.status_max)
        if query.phone_numbers is not None:
            found = found.where(journal.c.phone_number.in_(query.phone_numbers))
        if query.api_only:
            found = found.where(or_(*(journal.c.path.startswith(prefix) for prefix in API_PREFIXES)))
        if query.before_id is not None:
            found = found.where(journal.c.id < query.before_id)
        if query.after_id is not None:
            found = found.where(journal.c.id > query.after_id).order_by(journal.c.id)
        else:
            found = found.order_by(journal.c.id.desc())
        with self._db.reader.connect() as conn:
            rows = conn.execute(found.limit(query.limit)).all()
        entries = [Entry(**{c: getattr(r, c) for c in _COLUMNS}, id=r.id) for r in rows]
        # Oldest first either way: the newest `limit`, or the next `limit` after an id.
        return entries if query.after_id is not None else entries[::-1]
