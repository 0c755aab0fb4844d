"""The read path: key, ownership and cards in one statement on a raw DB-API connection.

GET is the hot path, so it skips the ORM layers: one prepared statement, rows turned
straight into the dicts the API answers with.

On SQLite, `memo()` gives the HTTP layer a place to keep answers that can never be stale:
the memo is emptied whenever `PRAGMA data_version` moved, a counter that moves when any
other connection, in this process or another, commits to the database. So a write, a new or
revoked key, or a line handed to another partner is seen by the next request, as without
the memo. Asking costs about 5 µs (SQLite takes its shared-memory read lock), so it is
asked once per turn of the event loop, not per request: every request run in one turn had
arrived before the turn began, so the answer, read after its arrival, is one a fresh
lookup could have given. PostgreSQL has no such local counter (asking costs the round trip
a lookup costs), so it has no memo.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from contactcard.store.db import Database

_ONE = """
SELECT k.key_hash, k.partner_id, l.partner_id,
       c.phone_number, c.first_name, c.last_name, c.image_blob, c.is_active
FROM api_keys AS k
LEFT JOIN lines AS l ON l.phone_number = {p}
LEFT JOIN cards AS c ON c.phone_number = l.phone_number
WHERE k.key_hash = {p} AND k.revoked_at IS NULL
"""
_ALL = """
SELECT k.key_hash, k.partner_id,
       c.phone_number, c.first_name, c.last_name, c.image_blob, c.is_active
FROM api_keys AS k
LEFT JOIN lines AS l ON l.partner_id = k.partner_id
LEFT JOIN cards AS c ON c.phone_number = l.phone_number
WHERE k.key_hash = {p} AND k.revoked_at IS NULL
ORDER BY l.phone_number
"""

Card = dict[str, Any]


class _Reader:
    """One thread's SQLite connection and its memo for the current data_version."""

    __slots__ = ("connection", "version", "memo", "checked")

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.version: int | None = None
        self.memo: dict = {}
        self.checked = False

    def current_memo(self) -> dict:
        if self.checked:
            return self.memo
        (version,) = self.connection.execute("PRAGMA data_version").fetchone()
        if version != self.version:
            self.memo.clear()
            self.version = version
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self.memo  # no event loop: ask again next time
        self.checked = True
        loop.call_soon(self._next_turn)
        return self.memo

    def _next_turn(self) -> None:
        self.checked = False


@dataclass(frozen=True)
class LineAccess:
    """What one key may see of one line."""

    partner_id: str | None  # None: unknown or revoked key
    owns_line: bool
    card: Card | None


class CardReads:
    def __init__(self, database: Database, cdn_prefix: str, *, memo: bool = False) -> None:
        self._prefix = cdn_prefix
        self._memo_enabled = memo
        url = make_url(database.url)
        if url.get_backend_name() == "sqlite":
            self._path = url.database or ":memory:"
            self._local = threading.local()
            self._engine = None
            marker = "?"
        else:
            # Its own pool, autocommit and without pre-ping: the hot path pays one round
            # trip, not three.
            self._engine = create_engine(
                database.url, pool_size=5, max_overflow=10, isolation_level="AUTOCOMMIT"
            )
            marker = "%s"
        self._one = _ONE.format(p=marker)
        self._all = _ALL.format(p=marker)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _rows(self, sql: str, params: tuple, many: bool) -> list[tuple] | tuple | None:
        if self._engine is None:
            # fetchall even for one row: the statement is finished and holds no snapshot.
            rows = self._reader().connection.execute(sql, params).fetchall()
            return rows if many else (rows[0] if rows else None)
        for attempt in (1, 2):
            raw = self._engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(sql, params)
                return cursor.fetchall() if many else cursor.fetchone()
            except Exception as exc:
                # A connection the database dropped is thrown away and tried once more.
                if attempt == 2 or not _is_disconnect(exc):
                    raise
                raw.invalidate()
            finally:
                raw.close()
        return None  # unreachable

    def _reader(self) -> _Reader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = _Reader(self._sqlite())
        return reader

    def _sqlite(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA query_only=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        # Read pages through the OS page cache directly: a large database costs a GET no
        # more than a small one once its hot pages are mapped.
        connection.execute("PRAGMA mmap_size=1073741824")
        return connection

    def _card(self, row: tuple, at: int) -> Card:
        blob = row[at + 3]
        return {
            "phone_number": row[at],
            "first_name": row[at + 1],
            "last_name": row[at + 2],
            "image_url": self._prefix + blob if blob else None,
            "is_active": bool(row[at + 4]),
        }

    def line_access(self, key_hash: str, phone: str) -> LineAccess:
        row = self._rows(self._one, (phone, key_hash), many=False)
        return self._line_access(row, key_hash)

    def memo(self) -> dict | None:
        """A dict for answers of this thread's reads, emptied whenever the database changed.

        None when there is no memo (PostgreSQL, or switched off). Callers bound its size.
        """
        if self._engine is not None or not self._memo_enabled:
            return None
        return self._reader().current_memo()

    def _line_access(self, row: tuple | None, key_hash: str) -> LineAccess:
        if row is None or not hmac.compare_digest(row[0], key_hash):
            return LineAccess(None, False, None)
        owns = row[2] is not None and row[2] == row[1]
        card = self._card(row, 3) if owns and row[3] is not None else None
        return LineAccess(row[1], owns, card)

    def partner_cards(self, key_hash: str) -> tuple[str | None, list[Card]]:
        """The partner of a key and all of its cards, ordered by phone number."""
        rows = self._rows(self._all, (key_hash,), many=True)
        if not rows or not hmac.compare_digest(rows[0][0], key_hash):
            return None, []
        prefix = self._prefix
        # Inlined rather than `_card` per row: this loop is most of GET-all's own cost.
        return rows[0][1], [
            {
                "phone_number": phone,
                "first_name": first,
                "last_name": last,
                "image_url": prefix + blob if blob else None,
                "is_active": bool(active),
            }
            for _, _, phone, first, last, blob, active in rows
            if phone is not None
        ]


def _is_disconnect(exc: Exception) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
