"""Partners, their keys and their lines: the operator side of the store (SQLAlchemy Core,
off the hot path)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from contactcard.card import Card
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
from contactcard.store.webhooks import fan_out, unwrap
from contactcard.store.writer import sqlite_value
from contactcard.webhooks.events import Outbox


class NoSuchPartner(Exception):
    pass


class KeyInUse(Exception):
    pass


class LineTaken(Exception):
    """The number belongs to another partner."""


@dataclass(frozen=True)
class PartnerRow:
    id: str
    name: str
    created_at: datetime


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
class LineRow:
    phone_number: str
    partner_id: str
    has_card: bool
    is_active: bool


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


@dataclass(frozen=True)
class AttemptRow:
    """One attempt of a delivery: its outcome, the receiver's answer and how long it took."""

    attempt: int  # from 1 again after a redelivery (the dashboard marks where)
    at: datetime
    outcome: str  # pending (a retry follows) | delivered | failed
    answer: int | None  # the HTTP status; None when the receiver never answered
    latency_ms: float | None
    error: str | None


_LINE_COLUMNS = (lines.c.phone_number, lines.c.partner_id, cards.c.id, cards.c.is_active)
_CARD_COLUMNS = (
    cards.c.id,
    cards.c.first_name,
    cards.c.last_name,
    cards.c.image_blob,
    cards.c.image_source_url,
    cards.c.is_active,
    cards.c.ever_active,
)


class Accounts:
    def __init__(self, database: Database) -> None:
        self._db = database

    def add_partner(self, partner: PartnerRow) -> None:
        with self._db.writer.begin() as conn:
            conn.execute(insert(partners).values(id=partner.id, name=partner.name, created_at=partner.created_at))

    def partners(self) -> list[PartnerRow]:
        with self._db.reader.connect() as conn:
            rows = conn.execute(select(partners).order_by(partners.c.created_at, partners.c.id)).all()
        return [PartnerRow(r.id, r.name, r.created_at) for r in rows]

    def partner_count(self) -> int:
        with self._db.reader.connect() as conn:
            count: int = conn.execute(select(func.count()).select_from(partners)).scalar_one()
        return count

    def counts(self) -> Counts:
        """Every count in one read transaction (a consistent picture, one round trip each)."""
        d, c, w = webhook_deliveries.c, cards.c, webhook_subscriptions.c

        def count(table: Any, *where: Any) -> Any:
            return select(func.count()).select_from(table).where(*where).scalar_subquery()

        query = select(
            count(partners).label("partners"),
            count(api_keys, api_keys.c.revoked_at.is_(None)).label("live_keys"),
            count(lines).label("lines"),
            count(cards, c.is_active.is_(True)).label("active_cards"),
            count(cards, c.is_active.is_(False)).label("inactive_cards"),
            count(webhook_subscriptions).label("subscriptions"),
            count(webhook_subscriptions, w.is_active.is_(False)).label("disabled_subscriptions"),
            count(webhook_deliveries, d.status == "pending", d.attempts > 0).label("retrying"),
            count(webhook_deliveries, d.status == "failed").label("failed"),
        )
        with self._db.reader.connect() as conn:
            r = conn.execute(query).one()
        return Counts(
            r.partners,
            r.live_keys,
            r.lines,
            r.active_cards,
            r.inactive_cards,
            r.subscriptions,
            r.disabled_subscriptions,
            r.retrying,
            r.failed,
        )

    def add_key(
        self,
        key_id: str,
        partner_id: str,
        key_hash: str,
        prefix: str,
        created_at: datetime,
        label: str | None = None,
    ) -> None:
        with self._db.writer.begin() as conn:
            _require_partner(conn, partner_id)
            try:
                conn.execute(
                    insert(api_keys).values(
                        id=key_id,
                        partner_id=partner_id,
                        key_hash=key_hash,
                        prefix=prefix,
                        created_at=created_at,
                        label=label,
                    )
                )
            except IntegrityError:
                raise KeyInUse() from None

    def key_owner(self, key_hash: str) -> str | None:
        with self._db.reader.connect() as conn:
            owner: str | None = conn.execute(
                select(api_keys.c.partner_id).where(api_keys.c.key_hash == key_hash)
            ).scalar()
        return owner

    def keys(self, partner_id: str | None = None) -> list[KeyRow]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if partner_id:
            query = query.where(api_keys.c.partner_id == partner_id)
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [
            KeyRow(r.id, r.partner_id, r.prefix, r.created_at, r.revoked_at, r.label, _utc(r.last_used_at))
            for r in rows
        ]

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        """False when there is no such key (revoking twice is fine)."""
        with self._db.writer.begin() as conn:
            done = conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=at)
            )
            if done.rowcount:
                return True
            return conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first() is not None

    def add_line(self, partner_id: str, phone_number: str, created_at: datetime) -> LineRow:
        """The line, added to the partner (or already theirs)."""
        with self._db.writer.begin() as conn:
            _require_partner(conn, partner_id)
            owner = conn.execute(select(lines.c.partner_id).where(lines.c.phone_number == phone_number)).first()
            if owner is not None and owner.partner_id != partner_id:
                raise LineTaken()
            if owner is None:
                conn.execute(
                    insert(lines).values(phone_number=phone_number, partner_id=partner_id, created_at=created_at)
                )
            return _line(conn, phone_number)

    def remove_line(self, phone_number: str, deleted: Callable[[str, Card], Outbox] | None = None) -> bool:
        """Remove the line with its card and its device's records; False when there is none.

        `deleted` makes the `contact_card.deleted` event of the card (given its partner),
        recorded in the same transaction as the removal."""
        with self._db.writer.begin() as conn:
            found = conn.execute(
                select(lines.c.partner_id, *_CARD_COLUMNS)
                .select_from(lines)
                .join(cards, cards.c.phone_number == lines.c.phone_number)
                .where(lines.c.phone_number == phone_number)
            ).first()
            if found is not None and deleted is not None:
                card = Card(
                    id=found.id,
                    phone_number=phone_number,
                    first_name=found.first_name,
                    last_name=found.last_name,
                    image_blob=found.image_blob,
                    image_source_url=found.image_source_url,
                    is_active=bool(found.is_active),
                    ever_active=bool(found.ever_active),
                )
                stmt = fan_out(deleted(found.partner_id, card))
                params = stmt.params
                if self._db.dialect == "sqlite":  # the text the writer stores, not the driver's
                    params = {k: sqlite_value(v) for k, v in params.items()}
                conn.execute(text(stmt.sql), params)
            conn.execute(delete(cards).where(cards.c.phone_number == phone_number))
            gone = conn.execute(delete(lines).where(lines.c.phone_number == phone_number))
            conn.execute(delete(device_scripts).where(device_scripts.c.phone_number == phone_number))
            conn.execute(delete(device_displays).where(device_displays.c.phone_number == phone_number))
            return bool(gone.rowcount)

    def rename_partner(self, partner_id: str, name: str) -> bool:
        with self._db.writer.begin() as conn:
            return bool(conn.execute(update(partners).where(partners.c.id == partner_id).values(name=name)).rowcount)

    def partner_holdings(self, partner_id: str) -> tuple[int, int, int]:
        """What deleting the partner takes with it: its keys, lines and subscriptions."""
        with self._db.reader.connect() as conn:

            def count(table: Any) -> int:
                found: int = conn.execute(
                    select(func.count()).select_from(table).where(table.c.partner_id == partner_id)
                ).scalar_one()
                return found

            return count(api_keys), count(lines), count(webhook_subscriptions)

    def delete_partner(self, partner_id: str) -> bool:
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

    def set_subscription_active(self, subscription_id: str, active: bool, at: datetime) -> bool:
        s = webhook_subscriptions.c
        with self._db.writer.begin() as conn:
            done = conn.execute(
                update(webhook_subscriptions).where(s.id == subscription_id).values(is_active=active, updated_at=at)
            )
            return bool(done.rowcount)

    def delivery_body(self, event_id: str, subscription_id: str) -> str | None:
        """The exact body every attempt of the delivery sends (and signs); never the secret."""
        d = webhook_deliveries.c
        with self._db.reader.connect() as conn:
            body: str | None = conn.execute(
                select(d.body).where(d.event_id == event_id, d.subscription_id == subscription_id)
            ).scalar()
        return body

    def subscriptions(self, partner_id: str | None = None) -> list[SubscriptionRow]:
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
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [
            SubscriptionRow(
                r.id,
                r.partner_id,
                r.name,
                r.target_url,
                unwrap(r.events) or [],
                unwrap(r.phone_numbers),
                bool(r.is_active),
                r.webhook_version,
                r.created_at,
            )
            for r in rows
        ]

    def deliveries(
        self,
        *,
        subscription_id: str | None = None,
        event_id: str | None = None,
        limit: int = 200,
        state: str | None = None,
        offset: int = 0,
        phone_number: str | None = None,
    ) -> list[DeliveryRow]:
        """The newest deliveries first, of one subscription or one event, or of all; `state`:
        pending, retrying (pending after a failed attempt), delivered or failed. Paged by
        offset: an operator's few pages, not a hot path."""
        d = webhook_deliveries.c
        a = webhook_attempts.c
        made = (
            select(func.count())
            .where(a.event_id == d.event_id, a.subscription_id == d.subscription_id)
            .scalar_subquery()
            .label("attempts_made")
        )
        query = (
            select(*webhook_deliveries.c, webhook_subscriptions.c.partner_id, made)
            .join(webhook_subscriptions, webhook_subscriptions.c.id == d.subscription_id)
            .order_by(d.created_at.desc(), d.event_id)
            .limit(limit)
        )
        if subscription_id:
            query = query.where(d.subscription_id == subscription_id)
        if event_id:
            query = query.where(d.event_id == event_id)
        if phone_number:
            query = query.where(d.phone_number == phone_number)
        if state == "retrying":
            query = query.where(d.status == "pending", d.attempts > 0)
        elif state:
            query = query.where(d.status == state)
        if offset:
            query = query.offset(offset)
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [
            DeliveryRow(
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
            )
            for r in rows
        ]

    def attempts(self, event_id: str, subscription_id: str) -> list[AttemptRow]:
        """Every attempt of one delivery, oldest first."""
        a = webhook_attempts.c
        query = (
            select(a.attempt, a.at, a.outcome, a.answer, a.latency_ms, a.error)
            .where(a.event_id == event_id, a.subscription_id == subscription_id)
            .order_by(a.id)
        )
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [AttemptRow(r.attempt, r.at, r.outcome, r.answer, r.latency_ms, r.error) for r in rows]

    def redeliver(self, event_id: str, subscription_id: str, due: float) -> bool:
        """Make a delivery due again at `due`, with a fresh retry schedule; False when unknown."""
        d = webhook_deliveries.c
        with self._db.writer.begin() as conn:
            done = conn.execute(
                update(webhook_deliveries)
                .where(d.event_id == event_id, d.subscription_id == subscription_id)
                .values(status="pending", attempts=0, next_at=due, lease_until=None, finished_at=None)
            )
            return bool(done.rowcount)

    def lines(self, partner_id: str | None = None) -> list[LineRow]:
        query = (
            select(*_LINE_COLUMNS)
            .select_from(lines)
            .outerjoin(cards, cards.c.phone_number == lines.c.phone_number)
            .order_by(lines.c.phone_number)
        )
        if partner_id:
            query = query.where(lines.c.partner_id == partner_id)
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [LineRow(r.phone_number, r.partner_id, r.id is not None, bool(r.is_active)) for r in rows]

    def line_cards(
        self,
        *,
        after: str = "",
        before: str | None = None,
        number_prefix: str = "",
        partner_id: str | None = None,
        limit: int = 50,
        state: str | None = None,
        name: str = "",
    ) -> list[LineCardRow]:
        return line_cards(
            self._db,
            after=after,
            before=before,
            number_prefix=number_prefix,
            partner_id=partner_id,
            limit=limit,
            state=state,
            name=name,
        )

    def line_count(
        self, *, number_prefix: str = "", partner_id: str | None = None, state: str | None = None, name: str = ""
    ) -> int:
        """How many lines the same filters find (the total the list shows above its pages)."""
        query = line_cards_query(number_prefix=number_prefix, partner_id=partner_id, state=state, name=name, limit=None)
        with self._db.reader.connect() as conn:
            count: int = conn.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()
        return count

    def has_line(self, phone_number: str) -> bool:
        with self._db.reader.connect() as conn:
            return (
                conn.execute(select(lines.c.phone_number).where(lines.c.phone_number == phone_number)).first()
                is not None
            )


def _require_partner(conn: Connection, partner_id: str) -> None:
    if conn.execute(select(partners.c.id).where(partners.c.id == partner_id)).first() is None:
        raise NoSuchPartner()


def _line(conn: Connection, phone_number: str) -> LineRow:
    row = conn.execute(
        select(*_LINE_COLUMNS)
        .select_from(lines)
        .outerjoin(cards, cards.c.phone_number == lines.c.phone_number)
        .where(lines.c.phone_number == phone_number)
    ).one()
    return LineRow(row.phone_number, row.partner_id, row.id is not None, bool(row.is_active))


@dataclass(frozen=True)
class LineCardRow:
    """A line as the dashboard lists it: its card and what its device shows."""

    phone_number: str
    partner_id: str
    partner_name: str
    first_name: str | None  # None: no card set up
    last_name: str | None
    image_blob: str | None
    is_active: bool
    updated_at: datetime | None
    shown_first_name: str | None  # None: the device never showed a card
    shown_last_name: str | None
    shown_image_url: str | None
    applied_at: datetime | None


def line_cards_query(
    *,
    after: str = "",
    before: str | None = None,
    number_prefix: str = "",
    partner_id: str | None = None,
    limit: int | None = 50,
    state: str | None = None,
    name: str = "",
) -> Select[Any]:
    """One page of lines in number order, from the number after `after` (keyset paging: the
    primary key's index finds the page's start, so page 200 costs what page 1 does; OFFSET
    would read every row before it). With `before`: the `limit` lines just before it,
    nearest first (the page before, read backwards along the same index)."""
    shown = device_displays
    query = (
        select(
            lines.c.phone_number,
            lines.c.partner_id,
            partners.c.name.label("partner_name"),
            cards.c.first_name,
            cards.c.last_name,
            cards.c.image_blob,
            cards.c.is_active,
            cards.c.updated_at,
            shown.c.first_name.label("shown_first_name"),
            shown.c.last_name.label("shown_last_name"),
            shown.c.image_url.label("shown_image_url"),
            shown.c.applied_at,
        )
        .select_from(lines)
        .join(partners, partners.c.id == lines.c.partner_id)
        .outerjoin(cards, cards.c.phone_number == lines.c.phone_number)
        .outerjoin(shown, shown.c.phone_number == lines.c.phone_number)
        .limit(limit)
    )
    if before is not None:
        query = query.where(lines.c.phone_number < before).order_by(lines.c.phone_number.desc())
    else:
        query = query.where(lines.c.phone_number > after).order_by(lines.c.phone_number)
    if number_prefix:
        # Callers pass `+` and digits only; autoescape keeps LIKE's wildcards literal anyway.
        query = query.where(lines.c.phone_number.startswith(number_prefix, autoescape=True))
    if partner_id:
        query = query.where(lines.c.partner_id == partner_id)
    if state == "active":
        query = query.where(cards.c.is_active.is_(True))
    elif state == "inactive":
        query = query.where(cards.c.is_active.is_(False))
    elif state == "none":
        query = query.where(cards.c.phone_number.is_(None))
    if name:
        # A part of either name, any case; LIKE's wildcards typed in it stay literal.
        query = query.where(
            cards.c.first_name.icontains(name, autoescape=True) | cards.c.last_name.icontains(name, autoescape=True)
        )
    return query


def line_cards(
    database: Database,
    *,
    after: str = "",
    before: str | None = None,
    number_prefix: str = "",
    partner_id: str | None = None,
    limit: int = 50,
    state: str | None = None,
    name: str = "",
) -> list[LineCardRow]:
    query = line_cards_query(
        after=after,
        before=before,
        number_prefix=number_prefix,
        partner_id=partner_id,
        limit=limit,
        state=state,
        name=name,
    )
    with database.reader.connect() as conn:
        rows = conn.execute(query).all()
    return [
        LineCardRow(
            r.phone_number,
            r.partner_id,
            r.partner_name,
            r.first_name,
            r.last_name,
            r.image_blob,
            bool(r.is_active),
            r.updated_at,
            r.shown_first_name,
            r.shown_last_name,
            r.shown_image_url,
            r.applied_at,
        )
        for r in rows
    ]


def _utc(at: datetime | None) -> datetime | None:
    """SQLite hands back times without their zone; they were stored in UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
