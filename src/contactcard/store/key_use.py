"""`api_keys.last_used_at`: the flushed tally of `keys_seen.py`, in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, or_, text, update

from contactcard.store.db import Database
from contactcard.store.schema import api_keys

# The later of the stored and the flushed time: a process flushing an older mark after
# another flushed a newer one leaves the newer. A revoked or deleted key matches no row.
_STORE = (
    update(api_keys)
    .where(
        api_keys.c.key_hash == bindparam("seen_hash"),
        or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < bindparam("seen_at")),
    )
    .values(last_used_at=bindparam("seen_at"))
)


def store_key_use(database: Database, marks: dict[str, float], timeout: float) -> None:
    """Blocking. `marks`: key hash to unix seconds. Bounded by `timeout`: SQLite's
    busy timeout (the engine's), PostgreSQL's statement timeout (set here)."""
    rows = [{"seen_hash": h, "seen_at": datetime.fromtimestamp(at, UTC)} for h, at in marks.items()]
    with database.writer.begin() as connection:
        if database.dialect == "postgresql":
            connection.execute(text(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}"))
        connection.execute(_STORE, rows)
