"""Card writes, and the card of a line as the write path sees it (under its gate)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, func, insert, select, update

from contactcard.card import Card
from contactcard.store.schema import cards, write_attempts

_CARD_COLUMNS = (
    cards.c.id,
    cards.c.phone_number,
    cards.c.first_name,
    cards.c.last_name,
    cards.c.image_blob,
    cards.c.image_source_url,
    cards.c.is_active,
    cards.c.ever_active,
)


def _card(row) -> Card | None:
    if row.id is None:
        return None
    return Card(
        id=row.id,
        phone_number=row.phone_number,
        first_name=row.first_name,
        last_name=row.last_name,
        image_blob=row.image_blob,
        image_source_url=row.image_source_url,
        is_active=bool(row.is_active),
        ever_active=bool(row.ever_active),
    )


def card_for_line(conn: Connection, phone: str) -> Card | None:
    row = conn.execute(select(*_CARD_COLUMNS).where(cards.c.phone_number == phone)).first()
    return _card(row) if row else None


def store_inactive(
    conn: Connection,
    *,
    phone: str,
    first_name: str,
    last_name: str | None,
    image_blob: str | None,
    image_source_url: str | None,
) -> Card:
    """Write the card's new values, inactive (step one of every apply)."""
    now = datetime.now(UTC)
    values = {
        "first_name": first_name,
        "last_name": last_name,
        "image_blob": image_blob,
        "image_source_url": image_source_url,
        "is_active": False,
        "updated_at": now,
    }
    updated = conn.execute(update(cards).where(cards.c.phone_number == phone).values(**values))
    if updated.rowcount == 0:
        conn.execute(
            insert(cards).values(id=uuid.uuid4().hex, phone_number=phone, ever_active=False, created_at=now, **values)
        )
    card = card_for_line(conn, phone)
    assert card is not None
    return card


def mark_active(conn: Connection, card: Card) -> Card:
    conn.execute(
        update(cards)
        .where(cards.c.id == card.id)
        .values(is_active=True, ever_active=True, updated_at=datetime.now(UTC))
    )
    return Card(**{**card.__dict__, "is_active": True, "ever_active": True})


def record_write_attempt(conn: Connection, phone: str, at: float) -> None:
    conn.execute(insert(write_attempts).values(phone_number=phone, at=at))


def write_attempts_since(conn: Connection, phone: str, since: float) -> tuple[int, float | None]:
    """How many writes reached the device since `since`, and when the oldest of them was."""
    row = conn.execute(
        select(func.count(), func.min(write_attempts.c.at)).where(
            and_(write_attempts.c.phone_number == phone, write_attempts.c.at > since)
        )
    ).one()
    return int(row[0]), row[1]
