"""The counts the dashboard's overview shows first, across every aggregate."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from contactcard.store import rows
from contactcard.store.db import Database
from contactcard.store.schema import api_keys, cards, lines, partners, webhook_deliveries, webhook_subscriptions


@dataclass(frozen=True)
class Counts:
    """What the dashboard's overview shows first: how much there is, and what needs a look."""

    partners: int
    live_keys: int
    lines: int
    active_cards: int
    inactive_cards: int
    subscriptions: int
    disabled_subscriptions: int
    retrying_deliveries: int  # pending after a failed attempt: a retry is scheduled
    failed_deliveries: int


class Overview:
    def __init__(self, database: Database) -> None:
        self._db = database

    def counts(self) -> Counts:
        """Every count in one statement: a consistent picture, one round trip."""
        d, c, w = webhook_deliveries.c, cards.c, webhook_subscriptions.c
        query = select(
            rows.count(partners),
            rows.count(api_keys, api_keys.c.revoked_at.is_(None)),
            rows.count(lines),
            rows.count(cards, c.is_active.is_(True)),
            rows.count(cards, c.is_active.is_(False)),
            rows.count(webhook_subscriptions),
            rows.count(webhook_subscriptions, w.is_active.is_(False)),
            rows.count(webhook_deliveries, d.status == "pending", d.attempts > 0),
            rows.count(webhook_deliveries, d.status == "failed"),
        )
        (found,) = rows.read(self._db, query)
        return Counts(*found)
