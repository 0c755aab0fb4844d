"""The write path's statements: a line's state under its lock, the card stored, activated.

Each step is one transaction of statements that do not depend on each other's answers,
so the writer can send a whole batch of them at once (see `writer.py`). The SQL is the
same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from contactcard.card import Card
from contactcard.store.webhooks import fan_out
from contactcard.store.writer import Stmt, Writer
from contactcard.webhooks.events import Outbox

# The key, the line's owner, its card (only when the key's partner owns the line) and the
# write budget used, in one statement.
_STATE = """
SELECT k.key_hash, k.partner_id, l.partner_id,
       c.id, c.first_name, c.last_name, c.image_blob, c.image_source_url, c.is_active, c.ever_active,
       (SELECT count(*) FROM write_attempts AS w WHERE w.phone_number = :phone AND w.at > :since),
       (SELECT min(w.at) FROM write_attempts AS w WHERE w.phone_number = :phone AND w.at > :since)
FROM api_keys AS k
LEFT JOIN lines AS l ON l.phone_number = :phone
LEFT JOIN cards AS c ON c.phone_number = l.phone_number AND l.partner_id = k.partner_id
WHERE k.key_hash = :key AND k.revoked_at IS NULL
"""

_RECORD_ATTEMPT = "INSERT INTO write_attempts (phone_number, at) VALUES (:phone, :at)"
# Attempts older than the window can never count again.
_PRUNE_ATTEMPTS = "DELETE FROM write_attempts WHERE phone_number = :phone AND at <= :before"

_STORE_INACTIVE = """
INSERT INTO cards (phone_number, id, first_name, last_name, image_blob, image_source_url,
                   is_active, ever_active, created_at, updated_at)
VALUES (:phone, :id, :first_name, :last_name, :image_blob, :image_source_url, false, false, :now, :now)
ON CONFLICT (phone_number) DO UPDATE SET
  first_name = excluded.first_name, last_name = excluded.last_name,
  image_blob = excluded.image_blob, image_source_url = excluded.image_source_url,
  is_active = false, updated_at = excluded.updated_at
RETURNING id, ever_active
"""

_MARK_ACTIVE = """
UPDATE cards SET is_active = true, ever_active = true, updated_at = :now
WHERE phone_number = :phone AND id = :id
"""


@dataclass(frozen=True)
class LineState:
    """What one key may do with one line, read under the line's lock."""

    partner_id: str | None  # None: unknown or revoked key
    owns_line: bool
    card: Card | None
    attempts: int  # writes that reached the device since the budget window began
    oldest_attempt: float | None


@dataclass(frozen=True)
class CardValues:
    first_name: str
    last_name: str | None
    image_blob: str | None
    image_source_url: str | None


class CardWrites:
    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def line_state(self, key_hash: str, phone: str, budget_since: float) -> LineState:
        rows = await self._writer.read(Stmt(_STATE, {"key": key_hash, "phone": phone, "since": budget_since}))
        row = rows[0] if rows else None
        if row is None or not hmac.compare_digest(row[0], key_hash):
            return LineState(None, False, None, 0, None)
        owns = row[2] is not None and row[2] == row[1]
        card = None
        if owns and row[3] is not None:
            card = Card(
                id=row[3],
                phone_number=phone,
                first_name=row[4],
                last_name=row[5],
                image_blob=row[6],
                image_source_url=row[7],
                is_active=bool(row[8]),
                ever_active=bool(row[9]),
            )
        return LineState(row[1], owns, card, int(row[10] or 0), row[11])

    async def store_inactive(
        self,
        phone: str,
        values: CardValues,
        *,
        attempt_at: float | None,
        prune_before: float,
        card_id: str | None = None,
        event: Outbox | None = None,
    ) -> Card:
        """Step one of every apply: the new values, inactive, committed (with the write
        attempt that spends the budget, when the budget is on, and the webhook event the
        change makes, so that an acknowledged change is never without its event)."""
        now = datetime.now(UTC)
        tx = []
        if attempt_at is not None:
            tx.append(Stmt(_RECORD_ATTEMPT, {"phone": phone, "at": attempt_at}))
            tx.append(Stmt(_PRUNE_ATTEMPTS, {"phone": phone, "before": prune_before}))
        tx.append(
            Stmt(
                _STORE_INACTIVE,
                {
                    "phone": phone,
                    "id": card_id or uuid.uuid4().hex,  # kept by an existing card
                    "first_name": values.first_name,
                    "last_name": values.last_name,
                    "image_blob": values.image_blob,
                    "image_source_url": values.image_source_url,
                    "now": now,
                },
                rows=True,
            )
        )
        if event is not None:
            tx.append(fan_out(event))
        results = await self._writer.run(tx)
        stored_id, ever_active = results[-1 if event is None else -2][0]
        return Card(
            id=stored_id,
            phone_number=phone,
            first_name=values.first_name,
            last_name=values.last_name,
            image_blob=values.image_blob,
            image_source_url=values.image_source_url,
            is_active=False,
            ever_active=bool(ever_active),
        )

    async def mark_active(self, card: Card) -> Card:
        await self._writer.run(
            [Stmt(_MARK_ACTIVE, {"phone": card.phone_number, "id": card.id, "now": datetime.now(UTC)})]
        )
        return replace(card, is_active=True, ever_active=True)
