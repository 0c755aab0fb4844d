"""The write path's statements: a line's state under its lock, the card stored, activated.

Each step is one transaction of statements that do not depend on each other's answers,
so the writer can send a whole batch of them at once (see `writer.py`). The SQL is the
same on SQLite and PostgreSQL.

When the line's device is the simulated one, its records live in this database too, so
its steps ride along with the card's: the RCS check and whether anything is scripted are
columns of the state read, and the apply joins the transaction that stores the card.
Unscripted (the usual case), the device shows the card and the card is stored active in
that one commit: a write is one read and one commit, and a crash leaves the old card or
the new one applied. Scripted, the card is stored inactive with the scripted apply, then
marked active if it applied: a crash leaves the old card or the new values inactive.
"""

from __future__ import annotations

import functools
import hmac
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from contactcard.card import Card, Outcome
from contactcard.store import devices
from contactcard.store.outbox import RecordedEvent
from contactcard.store.webhooks import fan_out
from contactcard.store.writer import Row, Stmt, Writer

# The key, the line's owner, its card (only when the key's partner owns the line) and the
# write budget used, in one statement; and the runtime controls' version, so a write learns
# of a changed setting or a moved clock without a query of its own.
_STATE = """
SELECT k.key_hash, k.partner_id, l.partner_id,
       c.id, c.first_name, c.last_name, c.image_blob, c.image_source_url, c.is_active, c.ever_active,
       {budget},
       (SELECT r.version FROM runtime_controls AS r WHERE r.id = 1){device}
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

# After the unscripted device showed the card in the same transaction: stored active, so
# the whole write is one commit. (The casts: PostgreSQL types a SELECT's parameters here.)
_STORE_IF_SHOWN = f"""
INSERT INTO cards (phone_number, id, first_name, last_name, image_blob, image_source_url,
                   is_active, ever_active, created_at, updated_at)
SELECT CAST(:phone AS VARCHAR), CAST(:id AS VARCHAR), CAST(:first_name AS VARCHAR), CAST(:last_name AS VARCHAR),
       CAST(:image_blob AS VARCHAR), CAST(:image_source_url AS VARCHAR),
       {devices.SHOWN_IN_THIS_TX}, {devices.SHOWN_IN_THIS_TX}, :now, :now
WHERE true
ON CONFLICT (phone_number) DO UPDATE SET
  first_name = excluded.first_name, last_name = excluded.last_name,
  image_blob = excluded.image_blob, image_source_url = excluded.image_source_url,
  is_active = excluded.is_active, ever_active = cards.ever_active OR excluded.is_active,
  updated_at = excluded.updated_at
RETURNING id, ever_active, is_active
"""

# PostgreSQL: the device's apply, the card and the webhook fan-out as one statement
# (data-modifying CTEs), so a write costs the driver one statement instead of three. The
# card reads whether the card was shown from the apply's RETURNING instead of the table
# (the parts of one statement share a snapshot); the meaning is the same as the three.
_SHOWN = "EXISTS (SELECT 1 FROM shown)"
_STORE_SHOWN_PART = _STORE_IF_SHOWN.replace(devices.SHOWN_IN_THIS_TX, _SHOWN).replace(
    "RETURNING id, ever_active, is_active", f"RETURNING id, ever_active, is_active, {_SHOWN}"
)
assert _STORE_SHOWN_PART.count(_SHOWN) == 3, "the stored-if-shown statement changed shape"


@functools.cache  # two statements: with the fan-out and without
def _composed(fan_out_sql: str | None) -> str:
    fanned = f", fanned AS ({fan_out_sql})" if fan_out_sql else ""
    return f"WITH shown AS ({devices.SHOW} RETURNING 1){fanned}\n{_STORE_SHOWN_PART}"


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
    controls_version: int = 0  # of the runtime controls row (`contactcard/controls.py`)
    rcs_unavailable: bool | None = None  # None: not read here; ask the device
    device_scripted: bool | None = None  # the simulated device has outcomes scripted


@dataclass(frozen=True)
class Stored:
    """A card stored inactive, and the device's answer when its apply joined the commit."""

    card: Card
    outcome: Outcome | None = None  # None: the device has yet to apply it


@dataclass(frozen=True)
class CardValues:
    first_name: str
    last_name: str | None
    image_blob: str | None
    image_source_url: str | None


# The budget's columns; constants when it is off, which spares two lookups a write.
_BUDGET_ON = """(SELECT count(*) FROM write_attempts AS w WHERE w.phone_number = :phone AND w.at > :since),
       (SELECT min(w.at) FROM write_attempts AS w WHERE w.phone_number = :phone AND w.at > :since)"""
_BUDGET_OFF = "0, NULL"


class CardWrites:
    def __init__(self, writer: Writer, *, simulated_device: bool = False) -> None:
        self._writer = writer
        self._device_joins = simulated_device
        self._composes = writer.composes_writes
        device = f",\n       {devices.STATE_COLUMNS}" if simulated_device else ""
        self._state = {
            on: _STATE.format(budget=_BUDGET_ON if on else _BUDGET_OFF, device=device) for on in (True, False)
        }

    def state_read(self, key_hash: str, phone: str, budget_since: float | None) -> Stmt:
        """The statement `line_state` reads (the line's lock may send it with its request)."""
        params: dict[str, object] = {"key": key_hash, "phone": phone}
        if budget_since is not None:
            params["since"] = budget_since
        return Stmt(self._state[budget_since is not None], params, rows=True)

    async def line_state(
        self, key_hash: str, phone: str, budget_since: float | None, rows: list[Row] | None = None
    ) -> LineState:
        """`budget_since`: where the budget's window begins; None when the budget is off.
        `rows`: what `state_read`'s statement answered, when it was already read."""
        if rows is None:
            rows = await self._writer.read(self.state_read(key_hash, phone, budget_since))
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
        rcs_unavailable = bool(row[13]) if self._device_joins else None
        scripted = bool(row[14]) if self._device_joins else None
        return LineState(row[1], owns, card, int(row[10] or 0), row[11], int(row[12] or 0), rcs_unavailable, scripted)

    async def store_inactive(
        self,
        phone: str,
        values: CardValues,
        *,
        attempt_at: float | None,
        prune_before: float,
        image_url: str | None,
        device_scripted: bool | None = None,
        card_id: str | None = None,
        event: RecordedEvent | None = None,
    ) -> Stored:
        """Step one of every apply: the new values, inactive, committed (with the write
        attempt that spends the budget, when the budget is on; the simulated device's apply
        of `image_url`, our CDN's URL of the image; and the webhook event the change makes,
        so that an acknowledged change is never without its event)."""
        now = datetime.now(UTC)
        tx = []
        if attempt_at is not None:
            tx.append(Stmt(_RECORD_ATTEMPT, {"phone": phone, "at": attempt_at}))
            tx.append(Stmt(_PRUNE_ATTEMPTS, {"phone": phone, "before": prune_before}))
        card_params: dict[str, object] = {
            "phone": phone,
            "id": card_id or uuid.uuid4().hex,  # kept by an existing card
            "first_name": values.first_name,
            "last_name": values.last_name,
            "image_blob": values.image_blob,
            "image_source_url": values.image_source_url,
            "now": now,
        }
        # The state read saw no script (the usual case): the device shows the card and the
        # card is stored active after it, in one commit. Otherwise the card is stored
        # inactive, then the scripted apply joins (or follows) it.
        scripted = device_scripted is not False
        shown_first = self._device_joins and not scripted
        if shown_first and self._composes:
            return await self._store_composed(phone, values, card_params, tx, image_url, event)
        if shown_first:
            tx += devices.apply_statements(
                phone, values.first_name, values.last_name, image_url, scripted=False, now=now
            )
        stored_at = len(tx)
        tx.append(Stmt(_STORE_IF_SHOWN if shown_first else _STORE_INACTIVE, card_params, rows=True))
        if self._device_joins and scripted:
            tx += devices.apply_statements(phone, values.first_name, values.last_name, image_url, scripted=True)
        if event is not None:
            tx.append(fan_out(event))  # last: the indexes above stay as they are
        results = await self._writer.run(tx, lines=frozenset((phone,)))
        stored = results[stored_at][0]
        card = _stored_card(phone, values, stored, active=bool(stored[2]) if shown_first else False)
        if not self._device_joins:
            return Stored(card)
        device_answer = results[stored_at - 1] if shown_first else results[stored_at + 1]
        return Stored(card, devices.joined_outcome(device_answer, scripted=scripted))

    async def _store_composed(
        self,
        phone: str,
        values: CardValues,
        card_params: dict[str, object],
        tx: list[Stmt],
        image_url: str | None,
        event: RecordedEvent | None,
    ) -> Stored:
        """The unscripted apply, the card and the fan-out in one statement (PostgreSQL)."""
        params = {**card_params, "image_url": image_url}
        fanned = fan_out(event) if event is not None else None
        if fanned is not None:
            params.update(fanned.params)  # the names they share (the phone) hold the same values
        sql = _composed(fanned.sql if fanned is not None else None)
        results = await self._writer.run([*tx, Stmt(sql, params, rows=True)], lines=frozenset((phone,)))
        stored = results[-1][0]
        card = _stored_card(phone, values, stored, active=bool(stored[2]))
        return Stored(card, devices.joined_outcome([(1,)] if stored[3] else [], scripted=False))

    async def mark_active(self, card: Card) -> Card:
        await self._writer.run(
            [Stmt(_MARK_ACTIVE, {"phone": card.phone_number, "id": card.id, "now": datetime.now(UTC)})],
            lines=frozenset((card.phone_number,)),
        )
        return replace(card, is_active=True, ever_active=True)


def _stored_card(phone: str, values: CardValues, stored: Row, *, active: bool) -> Card:
    """The card as a store statement left it: `stored` is its `RETURNING id, ever_active, ...`."""
    return Card(
        id=stored[0],
        phone_number=phone,
        first_name=values.first_name,
        last_name=values.last_name,
        image_blob=values.image_blob,
        image_source_url=values.image_source_url,
        is_active=active,
        ever_active=bool(stored[1]),
    )
