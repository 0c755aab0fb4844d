"""Card queries: the read path (key, ownership and card in one round trip) and card writes."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update

from contactcard.card import Card
from contactcard.store.schema import api_keys, cards, lines, write_attempts

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

# Built once: the hot path only binds parameters.
_ONE = (
    select(api_keys.c.key_hash, api_keys.c.partner_id, lines.c.partner_id.label("owner"), *_CARD_COLUMNS)
    .select_from(api_keys)
    .outerjoin(lines, lines.c.phone_number == bindparam("phone"))
    .outerjoin(cards, cards.c.phone_number == lines.c.phone_number)
    .where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
)
_ALL = (
    select(api_keys.c.key_hash, api_keys.c.partner_id, *_CARD_COLUMNS)
    .select_from(api_keys)
    .outerjoin(lines, lines.c.partner_id == api_keys.c.partner_id)
    .outerjoin(cards, cards.c.phone_number == lines.c.phone_number)
    .where(api_keys.c.key_hash == bindparam("key_hash"), api_keys.c.revoked_at.is_(None))
    .order_by(cards.c.phone_number)
)


@dataclass(frozen=True)
class LineAccess:
    """What one key may see of one line, found in a single query."""

    partner_id: str | None  # None: unknown or revoked key
    owns_line: bool
    card: Card | None


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


def line_access(conn: Connection, key_hash: str, phone: str) -> LineAccess:
    row = conn.execute(_ONE, {"key_hash": key_hash, "phone": phone}).first()
    if row is None or not hmac.compare_digest(row.key_hash, key_hash):
        return LineAccess(None, False, None)
    owns = row.owner is not None and row.owner == row.partner_id
    return LineAccess(row.partner_id, owns, _card(row) if owns else None)


def partner_cards(conn: Connection, key_hash: str) -> tuple[str | None, list[Card]]:
    """The partner of a key and all of its cards, ordered by phone number."""
    rows = conn.execute(_ALL, {"key_hash": key_hash}).all()
    if not rows or not hmac.compare_digest(rows[0].key_hash, key_hash):
        return None, []
    return rows[0].partner_id, [card for card in map(_card, rows) if card is not None]


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
            insert(cards).values(
                id=uuid.uuid4().hex, phone_number=phone, ever_active=False, created_at=now, **values
            )
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
