"""Partners: the accounts whose keys, lines and webhook subscriptions the operator manages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, delete, func, insert, select, update

from contactcard.store import rows
from contactcard.store.db import Database
from contactcard.store.schema import (
    api_keys,
    cards,
    device_displays,
    device_scripts,
    lines,
    partners,
    webhook_attempts,
    webhook_deliveries,
    webhook_subscriptions,
)


class NoSuchPartner(Exception):
    pass


@dataclass(frozen=True)
class PartnerRow:
    id: str
    name: str
    created_at: datetime


class Holdings(NamedTuple):
    """What deleting a partner takes with it."""

    keys: int
    lines: int
    subscriptions: int


def require_partner(conn: Connection, partner_id: str) -> None:
    """In a transaction that adds something of the partner's: refuse an unknown partner."""
    if conn.execute(select(partners.c.id).where(partners.c.id == partner_id)).first() is None:
        raise NoSuchPartner()


class Partners:
    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, partner: PartnerRow) -> None:
        with self._db.writer.begin() as conn:
            conn.execute(insert(partners).values(id=partner.id, name=partner.name, created_at=partner.created_at))

    def all(self) -> list[PartnerRow]:
        query = select(partners.c.id, partners.c.name, partners.c.created_at).order_by(
            partners.c.created_at, partners.c.id
        )
        return rows.read_as(self._db, query, lambda r: PartnerRow(*r))

    def count(self) -> int:
        found: int = rows.scalar(self._db, select(func.count()).select_from(partners))
        return found

    def rename(self, partner_id: str, name: str) -> bool:
        return rows.changed(self._db, update(partners).where(partners.c.id == partner_id).values(name=name))

    def holdings(self, partner_id: str) -> Holdings:
        query = select(
            *(rows.count(table, table.c.partner_id == partner_id) for table in (api_keys, lines, webhook_subscriptions))
        )
        (found,) = rows.read(self._db, query)
        return Holdings(*found)

    def delete(self, partner_id: str) -> bool:
        """The partner and everything that is theirs, in one transaction; False when unknown.
        Deleted table by table rather than left to ON DELETE CASCADE, so that SQLite's change
        count (its triggers) sees every key, line and card go."""
        with self._db.writer.begin() as conn:
            numbers = select(lines.c.phone_number).where(lines.c.partner_id == partner_id).scalar_subquery()
            for table in (cards, device_scripts, device_displays):
                conn.execute(delete(table).where(table.c.phone_number.in_(numbers)))
            subscriptions = select(webhook_subscriptions.c.id).where(webhook_subscriptions.c.partner_id == partner_id)
            for table in (webhook_attempts, webhook_deliveries):
                conn.execute(delete(table).where(table.c.subscription_id.in_(subscriptions.scalar_subquery())))
            for table in (webhook_subscriptions, lines, api_keys):
                conn.execute(delete(table).where(table.c.partner_id == partner_id))
            return bool(conn.execute(delete(partners).where(partners.c.id == partner_id)).rowcount)
