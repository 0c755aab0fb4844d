"""Lines: the phone numbers a partner owns, each with at most one card and a device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, text

from contactcard.card import Card
from contactcard.store import rows
from contactcard.store.core import sqlite_value
from contactcard.store.db import Database
from contactcard.store.outbox import RecordedEvent
from contactcard.store.partners import require_partner
from contactcard.store.schema import cards, device_displays, device_scripts, lines, partners
from contactcard.store.webhooks import fan_out


class LineTaken(Exception):
    """The number belongs to another partner."""


@dataclass(frozen=True)
class LineRow:
    phone_number: str
    partner_id: str
    has_card: bool
    is_active: bool


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


@dataclass(frozen=True)
class LineFilter:
    """Which lines the lines page lists and counts; the defaults take every line."""

    number_prefix: str = ""  # `+` and digits: the start of the number
    partner_id: str | None = None
    state: str | None = None  # active | inactive (the card's) | none (no card)
    name: str = ""  # a part of the card's first or last name, any case


EVERY_LINE = LineFilter()

# What a deleted line's card event is made of: the partner it was of, and the card.
DeletedEvent = Callable[[str, Card], RecordedEvent]

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


def _line_row(r: Any) -> LineRow:
    return LineRow(r.phone_number, r.partner_id, r.id is not None, bool(r.is_active))


def _line_card_row(r: Any) -> LineCardRow:
    return LineCardRow(
        r.phone_number,
        r.partner_id,
        r.partner_name,
        r.first_name,
        r.last_name,
        r.image_blob,
        bool(r.is_active),  # no card: not active
        r.updated_at,
        r.shown_first_name,
        r.shown_last_name,
        r.shown_image_url,
        r.applied_at,
    )


def _lines_with_cards() -> Select[Any]:
    return select(*_LINE_COLUMNS).select_from(lines).outerjoin(cards, cards.c.phone_number == lines.c.phone_number)


class Lines:
    def __init__(self, database: Database) -> None:
        self._db = database

    def add(self, partner_id: str, phone_number: str, created_at: datetime) -> LineRow:
        """The line, added to the partner (or already theirs). Raises `NoSuchPartner`, or
        `LineTaken` when the number is another partner's."""
        with self._db.writer.begin() as conn:
            require_partner(conn, partner_id)
            owner = conn.execute(select(lines.c.partner_id).where(lines.c.phone_number == phone_number)).first()
            if owner is not None and owner.partner_id != partner_id:
                raise LineTaken()
            if owner is None:
                conn.execute(
                    insert(lines).values(phone_number=phone_number, partner_id=partner_id, created_at=created_at)
                )
            return _line_row(conn.execute(_lines_with_cards().where(lines.c.phone_number == phone_number)).one())

    def remove(self, phone_number: str, deleted: DeletedEvent | None = None) -> bool:
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

    def all(self, partner_id: str | None = None) -> list[LineRow]:
        query = _lines_with_cards().order_by(lines.c.phone_number)
        if partner_id:
            query = query.where(lines.c.partner_id == partner_id)
        return rows.read_as(self._db, query, _line_row)

    def has(self, phone_number: str) -> bool:
        found = rows.scalar(self._db, select(lines.c.phone_number).where(lines.c.phone_number == phone_number))
        return found is not None

    def page(
        self, where: LineFilter = EVERY_LINE, *, after: str = "", before: str | None = None, limit: int = 50
    ) -> list[LineCardRow]:
        query = line_cards_query(where, after=after, before=before, limit=limit)
        return rows.read_as(self._db, query, _line_card_row)

    def count(self, where: LineFilter = EVERY_LINE, *, at_most: int | None = None) -> int:
        """How many lines the filter finds (the total the list shows above its pages).
        `at_most`: stop counting past it (the answer is then `at_most + 1`): a count reads
        every row it counts, a second for a million lines, and a page should not wait
        for that to say "more than 10,000"."""
        query = line_cards_query(where, limit=None if at_most is None else at_most + 1).order_by(None).subquery()
        found: int = rows.scalar(self._db, select(func.count()).select_from(query))
        return found


def line_cards_query(
    where: LineFilter = EVERY_LINE, *, after: str = "", before: str | None = None, limit: int | None = 50
) -> Select[Any]:
    """One page of lines in number order, from the number after `after` (keyset paging: the
    primary key's index finds the page's start, so page 200 costs what page 1 does; OFFSET
    would read every row before it). With `before`: the `limit` lines just before it,
    nearest first (the page before, read backwards along the same index). The columns come
    in `LineCardRow`'s order."""
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
    if where.number_prefix:
        # Callers pass `+` and digits only; autoescape keeps LIKE's wildcards literal anyway.
        query = query.where(lines.c.phone_number.startswith(where.number_prefix, autoescape=True))
    if where.partner_id:
        query = query.where(lines.c.partner_id == where.partner_id)
    if where.state == "active":
        query = query.where(cards.c.is_active.is_(True))
    elif where.state == "inactive":
        query = query.where(cards.c.is_active.is_(False))
    elif where.state == "none":
        query = query.where(cards.c.phone_number.is_(None))
    if where.name:
        # A part of either name, any case; LIKE's wildcards typed in it stay literal.
        query = query.where(
            cards.c.first_name.icontains(where.name, autoescape=True)
            | cards.c.last_name.icontains(where.name, autoescape=True)
        )
    return query
