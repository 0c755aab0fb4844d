"""Partners' API keys: only their hashes and display prefixes are stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from contactcard.store import rows
from contactcard.store.db import Database
from contactcard.store.partners import require_partner
from contactcard.store.schema import api_keys


class KeyInUse(Exception):
    pass


@dataclass(frozen=True)
class KeyRow:
    id: str
    partner_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    label: str | None = None
    last_used_at: datetime | None = None  # as last flushed (`keys_seen.py`); None: never


@dataclass(frozen=True)
class NewKey:
    """A key as it is stored: never the key itself."""

    id: str
    partner_id: str
    key_hash: str
    prefix: str
    created_at: datetime
    label: str | None = None


class ApiKeys:
    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, key: NewKey) -> None:
        """Raises `NoSuchPartner` for an unknown partner, `KeyInUse` for a hash already stored."""
        with self._db.writer.begin() as conn:
            require_partner(conn, key.partner_id)
            try:
                conn.execute(
                    insert(api_keys).values(
                        id=key.id,
                        partner_id=key.partner_id,
                        key_hash=key.key_hash,
                        prefix=key.prefix,
                        created_at=key.created_at,
                        label=key.label,
                    )
                )
            except IntegrityError:
                raise KeyInUse() from None

    def owner(self, key_hash: str) -> str | None:
        owner: str | None = rows.scalar(self._db, select(api_keys.c.partner_id).where(api_keys.c.key_hash == key_hash))
        return owner

    def all(self, partner_id: str | None = None) -> list[KeyRow]:
        k = api_keys.c
        query = select(k.id, k.partner_id, k.prefix, k.created_at, k.revoked_at, k.label, k.last_used_at)
        if partner_id:
            query = query.where(k.partner_id == partner_id)
        query = query.order_by(k.created_at, k.id)
        return rows.read_as(
            self._db,
            query,
            lambda r: KeyRow(
                r.id, r.partner_id, r.prefix, r.created_at, r.revoked_at, r.label, rows.utc(r.last_used_at)
            ),
        )

    def revoke(self, key_id: str, at: datetime) -> bool:
        """False when there is no such key (revoking twice is fine)."""
        with self._db.writer.begin() as conn:
            done = conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=at)
            )
            if done.rowcount:
                return True
            return conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is not None
