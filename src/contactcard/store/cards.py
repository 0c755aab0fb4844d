"""The write path's statements: a line's state under its lock, the card stored, activated.

A write's store is one transaction made of typed parts, in this order: the write attempt
that spends the budget and the prune of attempts that can no longer count (when the
budget is on), the device's display (when its apply joins the commit, `JoinedApply`),
the webhook fan-out (when the change makes an event) and the card. None of them needs
another's answer, so the writer can send a whole batch of them at once (see
`core/writer.py`). On SQLite the parts are the transaction's statements, one each; on
PostgreSQL they are data-modifying CTEs of one statement whose last part is the card
(`_one_statement`), so a write costs the driver one statement instead of five.

When the device's apply joins (the simulated device, its records in this database, with
nothing scripted), the card is stored active exactly when the display showed it: the
write is one read and one commit, and a crash leaves the old card or the new one
applied. Otherwise the card is stored inactive, the device applies after the commit, and
`mark_active` is a second commit: a crash leaves the old card or the new values
inactive.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from contactcard.card import Card, Outcome
from contactcard.domain import LineState, PendingWrite, Stored
from contactcard.store import devices
from contactcard.store.core import Row, Stmt, Writer
from contactcard.store.webhooks import fan_out

# The key, the line's owner, its card (only when the key's partner owns the line) and the
# write budget used, in one statement; the runtime controls' version, so a write learns of
# a changed setting or a moved clock without a query of its own; and the simulated
# device's columns (NULLs when the device keeps no records here). Read as `_StateRow`.
_STATE = """
SELECT k.key_hash, k.partner_id, l.partner_id,
       c.id, c.first_name, c.last_name, c.image_blob, c.image_source_url, c.is_active, c.ever_active,
       {budget},
       (SELECT r.version FROM runtime_controls AS r WHERE r.id = 1),
       {device}
FROM api_keys AS k
LEFT JOIN lines AS l ON l.phone_number = :phone
LEFT JOIN cards AS c ON c.phone_number = l.phone_number AND l.partner_id = k.partner_id
WHERE k.key_hash = :key AND k.revoked_at IS NULL
"""

# The budget's columns; constants when it is off, which spares two lookups a write.
_BUDGET_ON = """(SELECT count(*) FROM write_attempts AS w WHERE w.phone_number = :phone AND w.at > :since),
       (SELECT min(w.at) FROM write_attempts AS w WHERE w.phone_number = :phone AND w.at > :since)"""
_BUDGET_OFF = "0, NULL"
_NO_DEVICE_COLUMNS = "NULL, NULL"


class _StateRow(NamedTuple):
    """The state read's one row, column by column."""

    key_hash: str
    key_partner: str
    line_partner: str | None
    card_id: str | None  # None: no card, or not the key's partner's line
    first_name: str
    last_name: str | None
    image_blob: str | None
    image_source_url: str | None
    is_active: bool
    ever_active: bool
    attempts: int | None
    oldest_attempt: float | None
    controls_version: int | None
    rcs_unavailable: bool | None  # the simulated device's, when its columns are read
    device_scripted: bool | None


_UNKNOWN_KEY = LineState(None, False, None, 0, None)


@dataclass(frozen=True)
class StateRead:
    """The line's state read: its statement (the line's lock may send it with its request,
    `locks.FirstRead`) and the `LineState` its rows answer."""

    stmt: Stmt
    key_hash: str
    phone: str
    device_columns: bool  # the simulated device's columns are in the row

    def answer(self, rows: list[Row]) -> LineState:
        if not rows:
            return _UNKNOWN_KEY
        row = _StateRow._make(rows[0])
        if not hmac.compare_digest(row.key_hash, self.key_hash):
            return _UNKNOWN_KEY
        owns = row.line_partner is not None and row.line_partner == row.key_partner
        card = None
        if owns and row.card_id is not None:
            card = Card(
                id=row.card_id,
                phone_number=self.phone,
                first_name=row.first_name,
                last_name=row.last_name,
                image_blob=row.image_blob,
                image_source_url=row.image_source_url,
                is_active=bool(row.is_active),
                ever_active=bool(row.ever_active),
            )
        device = self.device_columns
        return LineState(
            partner_id=row.key_partner,
            owns_line=owns,
            card=card,
            attempts=int(row.attempts or 0),
            oldest_attempt=row.oldest_attempt,
            controls_version=int(row.controls_version or 0),
            rcs_unavailable=bool(row.rcs_unavailable) if device else None,
            device_scripted=bool(row.device_scripted) if device else None,
        )


_RECORD_ATTEMPT = "INSERT INTO write_attempts (phone_number, at) VALUES (:phone, :at)"
# Attempts older than the window can never count again.
_PRUNE_ATTEMPTS = "DELETE FROM write_attempts WHERE phone_number = :phone AND at <= :before"

# The card, stored `active` as the condition given says (false when the device applies
# after the commit). (The casts: PostgreSQL types a SELECT's parameters here; `WHERE
# true`: SQLite's upsert after a SELECT needs it.)
_STORE = """
INSERT INTO cards (phone_number, id, first_name, last_name, image_blob, image_source_url,
                   is_active, ever_active, created_at, updated_at)
SELECT CAST(:phone AS VARCHAR), CAST(:id AS VARCHAR), CAST(:first_name AS VARCHAR), CAST(:last_name AS VARCHAR),
       CAST(:image_blob AS VARCHAR), CAST(:image_source_url AS VARCHAR),
       {active}, {active}, :now, :now
WHERE true
ON CONFLICT (phone_number) DO UPDATE SET
  first_name = excluded.first_name, last_name = excluded.last_name,
  image_blob = excluded.image_blob, image_source_url = excluded.image_source_url,
  is_active = excluded.is_active, ever_active = cards.ever_active OR excluded.is_active,
  updated_at = excluded.updated_at
RETURNING id, ever_active, is_active
"""
_STORE_INACTIVE = _STORE.format(active="false")
_STORE_IF_SHOWN = _STORE.format(active=devices.SHOWN_IN_THIS_TX)  # after the display's statement
_STORE_IF_SHOWN_HERE = _STORE.format(active=devices.SHOWN_IN_THIS_STATEMENT)  # the display a CTE

_MARK_ACTIVE = """
UPDATE cards SET is_active = true, ever_active = true, updated_at = :now
WHERE phone_number = :phone AND id = :id
"""


@dataclass(frozen=True)
class _Part:
    """One step of a card's store: its statement, and its name as a CTE of the one statement."""

    name: str
    stmt: Stmt


@functools.cache  # a handful of shapes: which parts a write has
def _with(parts: tuple[tuple[str, str], ...], last: str) -> str:
    if not parts:
        return last
    return "WITH " + ",\n".join(f"{name} AS ({sql})" for name, sql in parts) + "\n" + last


def _one_statement(parts: list[_Part], last: Stmt) -> Stmt:
    """`parts` as data-modifying CTEs of `last` (PostgreSQL): one statement, one snapshot
    shared by every part, so `last` reads what a part did from its RETURNING, not the table."""
    params = dict(last.params)
    for part in parts:
        for name, value in part.stmt.params.items():
            # A name two parts share (the phone, the time) must mean the same in both.
            if params.setdefault(name, value) != value:
                raise ValueError(f"the parts of a card's store disagree on :{name}")
    return Stmt(_with(tuple((p.name, p.stmt.sql) for p in parts), last.sql), params, rows=True)


class CardWrites:
    def __init__(self, writer: Writer, *, simulated_device: bool = False) -> None:
        self._writer = writer
        # The simulated device keeps its records in this database: its RCS flag and
        # whether anything is scripted are columns of the state read.
        self._device_columns = simulated_device
        self._composes = writer.composes_writes
        device = devices.STATE_COLUMNS if simulated_device else _NO_DEVICE_COLUMNS
        self._state = {
            on: _STATE.format(budget=_BUDGET_ON if on else _BUDGET_OFF, device=device) for on in (True, False)
        }

    def state_read(self, key_hash: str, phone: str, budget_since: float | None) -> StateRead:
        """The line's state read (the line's lock may send it with its request).
        `budget_since`: where the budget's window begins; None when the budget is off."""
        params: dict[str, object] = {"key": key_hash, "phone": phone}
        if budget_since is not None:
            params["since"] = budget_since
        stmt = Stmt(self._state[budget_since is not None], params, rows=True)
        return StateRead(stmt, key_hash, phone, self._device_columns)

    async def line_state(self, key_hash: str, phone: str, budget_since: float | None) -> LineState:
        """The line's state, read on its own (when the lock's request did not carry it)."""
        read = self.state_read(key_hash, phone, budget_since)
        return read.answer(await self._writer.read(read.stmt))

    async def store(self, write: PendingWrite) -> Stored:
        """One commit: the new values (active when the device's joined apply showed them,
        else inactive), the write attempt, and the webhook event the change makes, so that
        an acknowledged change is never without its event."""
        now = datetime.now(UTC)
        parts: list[_Part] = []
        if write.attempt_at is not None:
            parts.append(_Part("attempt", Stmt(_RECORD_ATTEMPT, {"phone": write.phone, "at": write.attempt_at})))
            parts.append(_Part("pruned", Stmt(_PRUNE_ATTEMPTS, {"phone": write.phone, "before": write.prune_before})))
        if write.joined is not None:
            parts.append(_Part(devices.DISPLAY_PART, devices.show(write.phone, write.joined, now)))
        if write.event is not None:
            parts.append(_Part("fanned", fan_out(write.event)))
        values = write.values
        card_params: dict[str, object] = {
            "phone": write.phone,
            "id": write.card_id,
            "first_name": values.first_name,
            "last_name": values.last_name,
            "image_blob": values.image_blob,
            "image_source_url": values.image_source_url,
            "now": now,
        }
        lines = frozenset((write.phone,))
        if self._composes:
            sql = _STORE_INACTIVE if write.joined is None else _STORE_IF_SHOWN_HERE
            tx = [_one_statement(parts, Stmt(sql, card_params, rows=True))]
        else:
            sql = _STORE_INACTIVE if write.joined is None else _STORE_IF_SHOWN
            tx = [*(p.stmt for p in parts), Stmt(sql, card_params, rows=True)]
        card_id, ever_active, is_active = (await self._writer.run(tx, lines=lines))[-1][0]
        card = Card(
            id=card_id,
            phone_number=write.phone,
            first_name=values.first_name,
            last_name=values.last_name,
            image_blob=values.image_blob,
            image_source_url=values.image_source_url,
            is_active=bool(is_active),
            ever_active=bool(ever_active),
        )
        # Joined and not shown: an outcome was scripted since the state read; the device
        # takes it on its own, after this commit.
        return Stored(card, Outcome.APPLIED if write.joined is not None and card.is_active else None)

    async def mark_active(self, card: Card) -> Card:
        await self._writer.run(
            [Stmt(_MARK_ACTIVE, {"phone": card.phone_number, "id": card.id, "now": datetime.now(UTC)})],
            lines=frozenset((card.phone_number,)),
        )
        return replace(card, is_active=True, ever_active=True)
