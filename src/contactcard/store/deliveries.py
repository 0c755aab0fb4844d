"""Webhook deliveries and their attempts, as the operator reads and redelivers them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from contactcard.store import rows
from contactcard.store.db import Database
from contactcard.store.schema import webhook_attempts, webhook_deliveries, webhook_subscriptions


@dataclass(frozen=True)
class DeliveryRow:
    """One event's delivery to one subscription, as its last attempt left it."""

    event_id: str
    subscription_id: str
    partner_id: str
    event_type: str
    phone_number: str | None
    status: str  # pending | delivered | failed
    attempts: int  # since it was last (re)queued: the retry schedule's count
    next_attempt_at: float | None  # on the server's clock; only while pending
    last_status: int | None
    last_error: str | None
    last_latency_ms: float | None
    created_at: datetime
    finished_at: datetime | None
    attempts_made: int = 0  # every attempt recorded, redeliveries' included (the attempts listed)


@dataclass(frozen=True)
class AttemptRow:
    """One attempt of a delivery: its outcome, the receiver's answer and how long it took."""

    attempt: int  # from 1 again after a redelivery (the dashboard marks where)
    at: datetime
    outcome: str  # pending (a retry follows) | delivered | failed
    answer: int | None  # the HTTP status; None when the receiver never answered
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries a list shows; the defaults take every one."""

    subscription_id: str | None = None
    event_id: str | None = None
    phone_number: str | None = None
    state: str | None = None  # pending | retrying (pending after a failed attempt) | delivered | failed


EVERY_DELIVERY = DeliveryFilter()


class DeliveryRecords:
    def __init__(self, database: Database) -> None:
        self._db = database

    def body(self, event_id: str, subscription_id: str) -> str | None:
        """The exact body every attempt of the delivery sends (and signs); never the secret."""
        d = webhook_deliveries.c
        body: str | None = rows.scalar(
            self._db, select(d.body).where(d.event_id == event_id, d.subscription_id == subscription_id)
        )
        return body

    def newest(self, where: DeliveryFilter = EVERY_DELIVERY, *, limit: int = 200, offset: int = 0) -> list[DeliveryRow]:
        """The newest deliveries first. Paged by offset: an operator's few pages, not a hot path."""
        d = webhook_deliveries.c
        a = webhook_attempts.c
        made = (
            select(func.count())
            .where(a.event_id == d.event_id, a.subscription_id == d.subscription_id)
            .scalar_subquery()
            .label("attempts_made")
        )
        query = (
            select(
                d.event_id,
                d.subscription_id,
                webhook_subscriptions.c.partner_id,
                d.event_type,
                d.phone_number,
                d.status,
                d.attempts,
                d.next_at,
                d.last_status,
                d.last_error,
                d.last_latency_ms,
                d.created_at,
                d.finished_at,
                made,
            )
            .join(webhook_subscriptions, webhook_subscriptions.c.id == d.subscription_id)
            .order_by(d.created_at.desc(), d.event_id)
            .limit(limit)
        )
        if where.subscription_id:
            query = query.where(d.subscription_id == where.subscription_id)
        if where.event_id:
            query = query.where(d.event_id == where.event_id)
        if where.phone_number:
            query = query.where(d.phone_number == where.phone_number)
        if where.state == "retrying":
            query = query.where(d.status == "pending", d.attempts > 0)
        elif where.state:
            query = query.where(d.status == where.state)
        if offset:
            query = query.offset(offset)
        return rows.read_as(
            self._db,
            query,
            # The next attempt's time means something only while one is due.
            lambda r: DeliveryRow(
                r.event_id,
                r.subscription_id,
                r.partner_id,
                r.event_type,
                r.phone_number,
                r.status,
                r.attempts,
                r.next_at if r.status == "pending" else None,
                r.last_status,
                r.last_error,
                r.last_latency_ms,
                r.created_at,
                r.finished_at,
                r.attempts_made,
            ),
        )

    def attempts(self, event_id: str, subscription_id: str) -> list[AttemptRow]:
        """Every attempt of one delivery, oldest first."""
        a = webhook_attempts.c
        query = (
            select(a.attempt, a.at, a.outcome, a.answer, a.latency_ms, a.error)
            .where(a.event_id == event_id, a.subscription_id == subscription_id)
            .order_by(a.id)
        )
        return rows.read_as(self._db, query, lambda r: AttemptRow(*r))

    def redeliver(self, event_id: str, subscription_id: str, due: float) -> bool:
        """Make a delivery due again at `due`, with a fresh retry schedule; False when unknown."""
        d = webhook_deliveries.c
        return rows.changed(
            self._db,
            update(webhook_deliveries)
            .where(d.event_id == event_id, d.subscription_id == subscription_id)
            .values(status="pending", attempts=0, next_at=due, lease_until=None, finished_at=None),
        )
