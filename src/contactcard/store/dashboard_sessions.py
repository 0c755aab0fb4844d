"""The dashboard's signed-in sessions: which are in force (SQLAlchemy Core, operator engines)."""

from __future__ import annotations

from sqlalchemy import delete, insert, select

from contactcard.store.db import Database
from contactcard.store.schema import dashboard_sessions

_s = dashboard_sessions.c


class SessionRecords:
    def __init__(self, database: Database) -> None:
        self._db = database

    def begin(self, id_hash: str, now: float, expires_at: float) -> None:
        with self._db.writer.begin() as conn:
            # Sessions nobody signed out of would otherwise stay for ever.
            conn.execute(delete(dashboard_sessions).where(_s.expires_at <= now))
            conn.execute(insert(dashboard_sessions).values(id_hash=id_hash, created_at=now, expires_at=expires_at))

    def in_force(self, id_hash: str, now: float) -> bool:
        with self._db.reader.connect() as conn:
            found = conn.execute(select(_s.id_hash).where(_s.id_hash == id_hash, _s.expires_at > now)).first()
        return found is not None

    def end(self, id_hash: str) -> None:
        with self._db.writer.begin() as conn:
            conn.execute(delete(dashboard_sessions).where(_s.id_hash == id_hash))
