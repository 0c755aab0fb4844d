"""Webhook subscriptions as the operator sees and switches them (the partner's own API
for them is `webhooks/subscriptions.py` over `store/webhooks.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from contactcard.store import rows
from contactcard.store.db import Database
from contactcard.store.schema import partners, webhook_subscriptions
from contactcard.store.webhooks import unwrap


@dataclass(frozen=True)
class SubscriptionRow:
    """A webhook subscription as an operator sees it: never its signing secret."""

    id: str
    partner_id: str
    partner_name: str
    target_url: str
    events: list[str]
    phone_numbers: list[str] | None  # None: every line of the partner
    is_active: bool
    webhook_version: str
    created_at: datetime


class SubscriptionRecords:
    def __init__(self, database: Database) -> None:
        self._db = database

    def all(self, partner_id: str | None = None) -> list[SubscriptionRow]:
        """Every webhook subscription (of one partner, or of all), oldest first."""
        s = webhook_subscriptions.c
        query = (
            select(
                s.id,
                s.partner_id,
                partners.c.name,
                s.target_url,
                s.events,
                s.phone_numbers,
                s.is_active,
                s.webhook_version,
                s.created_at,
            )
            .join(partners, partners.c.id == s.partner_id)
            .order_by(s.created_at, s.id)
        )
        if partner_id:
            query = query.where(s.partner_id == partner_id)
        return rows.read_as(
            self._db,
            query,
            lambda r: SubscriptionRow(
                r.id,
                r.partner_id,
                r.name,
                r.target_url,
                unwrap(r.events) or [],
                unwrap(r.phone_numbers),
                bool(r.is_active),
                r.webhook_version,
                r.created_at,
            ),
        )

    def set_active(self, subscription_id: str, active: bool, at: datetime) -> bool:
        s = webhook_subscriptions.c
        return rows.changed(
            self._db,
            update(webhook_subscriptions).where(s.id == subscription_id).values(is_active=active, updated_at=at),
        )
