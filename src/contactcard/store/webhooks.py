"""Webhook subscriptions and the delivery outbox: every statement about them.

The write path adds one statement to a card change's own transaction (`fan_out`): an
`INSERT ... SELECT` that copies the event into a delivery row for each active
subscription that matches it. With no matching subscription it inserts nothing and costs
one indexed lookup, so a partner without webhooks pays next to nothing, and an event the
server acknowledged is as durable as the card change itself.

Delivery workers claim due rows with a lease: on PostgreSQL `FOR UPDATE SKIP LOCKED`
lets several processes claim at once without ever taking the same row; SQLite has one
writer at a time, so the single `UPDATE ... RETURNING` is the whole claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from contactcard.store.core import NO_LINES, Row, Stmt, Transactions, sqlite_value
from contactcard.store.outbox import RecordedEvent

_FAN_OUT = """
INSERT INTO webhook_deliveries (event_id, subscription_id, event_type, phone_number, body, status, attempts,
                                next_at, created_at)
SELECT :event_id, s.id, :event_type, :phone, CAST(:head AS TEXT) || s.webhook_version || CAST(:tail AS TEXT),
       'pending', 0, :due, :event_at
FROM webhook_subscriptions AS s
WHERE s.partner_id = :partner AND s.is_active = :active
  AND s.events LIKE :event_pattern ESCAPE '!'
  AND (s.phone_numbers IS NULL OR s.phone_numbers LIKE :phone_pattern)
"""


def like_member(value: str) -> str:
    """A LIKE pattern for `value` as one member of a comma-wrapped list."""
    escaped = value.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%,{escaped},%"


def wrap(values: list[str] | None) -> str | None:
    """A list as the comma-wrapped text the matching LIKE reads (None: no filter)."""
    return f",{','.join(values)}," if values else None


def unwrap(text: str | None) -> list[str] | None:
    return [v for v in text.split(",") if v] if text else None


# A subscription's own event is recorded only while that subscription is there: an update
# or a delete that lost a race with a delete (in this batch, or in another process's
# transaction, which the row's lock waits for) announces nothing.
_WHILE_THERE = "\n  AND EXISTS (SELECT 1 FROM webhook_subscriptions AS x WHERE x.id = :about)"


def fan_out(event: RecordedEvent, *, about: str | None = None) -> Stmt:
    """The statement that records `event` for every subscription it matches; with `about`,
    only while the subscription of that id exists."""
    return Stmt(
        _FAN_OUT + (_WHILE_THERE if about is not None else ""),
        {
            **({"about": about} if about is not None else {}),
            "event_id": event.event_id,
            "event_type": event.event_type,
            "phone": event.phone_number,
            "head": event.head,
            "tail": event.tail,
            "due": event.at.timestamp(),
            "event_at": event.at,
            "partner": event.partner_id,
            "active": True,
            "event_pattern": like_member(event.event_type),
            # An event about no line (a subscription's own) passes every line filter.
            "phone_pattern": f"%,{event.phone_number},%" if event.phone_number else "%",
        },
    )


@dataclass(frozen=True)
class Subscription:
    id: str
    partner_id: str
    target_url: str
    events: list[str]
    phone_numbers: list[str] | None
    is_active: bool
    signing_secret: str
    webhook_version: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, partner_id, target_url, events, phone_numbers, is_active, signing_secret, webhook_version, "
    "created_at, updated_at"
)


@dataclass(frozen=True)
class Claimed:
    event_id: str
    subscription_id: str
    event_type: str
    body: str
    attempts: int  # including this one


@dataclass(frozen=True)
class Outcome:
    """One attempt's result, as `WebhookStore.finish` records it."""

    claimed: Claimed
    status: str  # pending (with next_at), delivered or failed
    next_at: float | None
    answer: int | None
    error: str | None
    latency_ms: float | None
    at: datetime


class TargetTaken(Exception):
    """The partner already has a subscription with this target URL."""


class WebhookStore:
    def __init__(self, writer: Transactions, *, dialect: str, lane: Transactions | None = None) -> None:
        """`lane`: the writer the delivery worker's claims and outcomes go through when not
        the card writes' own (PostgreSQL: a connection of their own, so that they never
        queue behind card writes; SQLite has one writer at a time, and shares its commits)."""
        self._writer = writer
        self._lane = lane or writer
        self._postgres = dialect == "postgresql"

    # --- the partner side ------------------------------------------------------------

    async def partner_of(self, key_hash: str) -> str | None:
        rows = await self._writer.read(
            Stmt("SELECT partner_id FROM api_keys WHERE key_hash = :key AND revoked_at IS NULL", {"key": key_hash})
        )
        return str(rows[0][0]) if rows else None

    async def owned_lines(self, partner_id: str, phones: list[str]) -> set[str]:
        names = {f"p{i}": phone for i, phone in enumerate(phones)}
        placeholders = ", ".join(f":{name}" for name in names)
        rows = await self._writer.read(
            Stmt(
                f"SELECT phone_number FROM lines WHERE partner_id = :partner AND phone_number IN ({placeholders})",
                {"partner": partner_id, **names},
            )
        )
        return {str(row[0]) for row in rows}

    async def subscriptions(self, partner_id: str) -> list[Subscription]:
        rows = await self._writer.read(
            Stmt(
                f"SELECT {_COLUMNS} FROM webhook_subscriptions WHERE partner_id = :partner ORDER BY created_at, id",
                {"partner": partner_id},
            )
        )
        return [_subscription(row) for row in rows]

    async def subscription(self, partner_id: str, subscription_id: str) -> Subscription | None:
        rows = await self._writer.read(
            Stmt(
                f"SELECT {_COLUMNS} FROM webhook_subscriptions WHERE partner_id = :partner AND id = :id",
                {"partner": partner_id, "id": subscription_id},
            )
        )
        return _subscription(rows[0]) if rows else None

    async def add(self, sub: Subscription, announce: Sequence[RecordedEvent] | None = None) -> None:
        """Store `sub`; `announce`: events about it, fanned out in the same transaction
        (after the insert, so that it may receive its own)."""
        try:
            await self._writer.run(
                [
                    Stmt(
                        f"INSERT INTO webhook_subscriptions ({_COLUMNS}) VALUES (:id, :partner_id, :target_url, "
                        ":events, :phone_numbers, :is_active, :signing_secret, :webhook_version, :created_at, "
                        ":updated_at)",
                        _params(sub),
                    ),
                    *(fan_out(event) for event in announce or ()),
                ],
                lines=NO_LINES,
            )
        except Exception as exc:
            if _is_unique_violation(exc):
                raise TargetTaken() from None
            raise

    async def replace(self, sub: Subscription, announce: Sequence[RecordedEvent] | None = None) -> bool:
        """Store `sub` over its earlier self; False (and nothing announced) when it is gone.
        The UPDATE takes the row's lock first, so that a delete under way elsewhere is
        waited for, and the announcement then finds the row gone."""
        try:
            results = await self._writer.run(
                [
                    Stmt(
                        "UPDATE webhook_subscriptions SET target_url = :target_url, events = :events, "
                        "phone_numbers = :phone_numbers, is_active = :is_active, webhook_version = :webhook_version, "
                        "updated_at = :updated_at WHERE id = :id AND partner_id = :partner_id RETURNING id",
                        _params(sub),
                        rows=True,
                    ),
                    *(fan_out(event, about=sub.id) for event in announce or ()),
                ],
                lines=NO_LINES,
            )
        except Exception as exc:
            if _is_unique_violation(exc):
                raise TargetTaken() from None
            raise
        return bool(results[0])

    async def remove(
        self, partner_id: str, subscription_id: str, announce: Sequence[RecordedEvent] | None = None
    ) -> bool:
        """Delete the subscription; False (and nothing announced) when it was gone already.
        The announcement is recorded first, while the row is there: on PostgreSQL the row is
        locked before it, so of two deletes at once the second waits, finds it gone and
        announces nothing (SQLite's one writer runs them one after the other)."""
        which = {"partner": partner_id, "id": subscription_id}
        lock = "SELECT id FROM webhook_subscriptions WHERE partner_id = :partner AND id = :id FOR UPDATE"
        results = await self._writer.run(
            [
                *([Stmt(lock, which)] if self._postgres else []),
                *(fan_out(event, about=subscription_id) for event in announce or ()),
                Stmt(
                    "DELETE FROM webhook_subscriptions WHERE partner_id = :partner AND id = :id RETURNING id",
                    which,
                    rows=True,
                ),
            ],
            lines=NO_LINES,
        )
        return bool(results[-1])

    # --- the delivery worker ---------------------------------------------------------

    async def has_due(self, now: float, real_now: float) -> bool:
        rows = await self._writer.read(
            Stmt(
                "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_at <= :now "
                "AND (lease_until IS NULL OR lease_until < :real_now) LIMIT 1",
                {"now": now, "real_now": real_now},
            )
        )
        return bool(rows)

    async def claim(
        self,
        now: float,
        real_now: float,
        lease_until: float,
        limit: int,
        *,
        skip: list[str] | None = None,
        per_subscription: int | None = None,
    ) -> list[Claimed]:
        """Take up to `limit` due attempts for this process until `lease_until` (real time),
        at most `per_subscription` of any one subscription, none of those in `skip`.

        A line's events go to a subscription in the order they happened: a row is due only
        while no earlier event of its line is pending for its subscription (under way,
        waiting for a retry, or due as well), so an `updated` is never attempted before its
        `created` has been delivered or given up. Events about no line are not ordered.

        On PostgreSQL the due rows are locked `SKIP LOCKED`: processes claiming at once
        each take other rows, never waiting for one another."""
        stmts = [*self._claim_plan(), self._claim_stmt(now, real_now, lease_until, limit, skip, per_subscription)]
        rows = (await self._lane.run(stmts, lines=NO_LINES))[-1]
        return [_claimed(r) for r in rows]

    async def finish_and_claim(
        self,
        outcomes: list[Outcome],
        now: float,
        real_now: float,
        lease_until: float,
        limit: int,
        *,
        skip: list[str] | None = None,
        per_subscription: int | None = None,
    ) -> list[Claimed]:
        """`finish_many` and `claim` in one transaction: a line whose event was just
        recorded has its next one claimed in the same commit, not one commit later."""
        stmts = [
            *self._finish_stmts(outcomes),
            *self._claim_plan(),
            self._claim_stmt(now, real_now, lease_until, limit, skip, per_subscription),
        ]
        rows = (await self._lane.run(stmts, lines=NO_LINES))[-1]
        return [_claimed(r) for r in rows]

    def _claim_plan(self) -> list[Stmt]:
        """On PostgreSQL, what the claim's transaction sets first: no bitmap scans. The
        claim wants the first `scan` due rows in `next_at` order, which an index scan reads
        and stops at; with the statistics behind a growing backlog (they always are) the
        planner picks a bitmap scan instead, which visits every pending row and sorts them
        all: 23 ms a claim at 20,000 pending rows against 3 ms, and deliveries from a
        backlog held to a few hundred a second. `SET LOCAL` ends with the transaction."""
        return [Stmt("SET LOCAL enable_bitmapscan = off", {})] if self._postgres else []

    def _claim_stmt(
        self,
        now: float,
        real_now: float,
        lease_until: float,
        limit: int,
        skip: list[str] | None,
        per_subscription: int | None,
    ) -> Stmt:
        skip_locked = " FOR UPDATE OF d SKIP LOCKED" if self._postgres else ""
        skipped = {f"k{i}": sid for i, sid in enumerate(skip or [])}
        not_these = f" AND d.subscription_id NOT IN ({', '.join(f':{k}' for k in skipped)})" if skipped else ""
        sql = f"""
WITH due AS (
  SELECT d.event_id, d.subscription_id, d.next_at FROM webhook_deliveries AS d
  WHERE d.status = 'pending' AND d.next_at <= :now AND (d.lease_until IS NULL OR d.lease_until < :real_now){not_these}
    AND (
      SELECT 1 FROM webhook_deliveries AS e
      WHERE e.subscription_id = d.subscription_id AND e.phone_number = d.phone_number AND e.status = 'pending'
        AND (e.created_at, e.event_id) < (d.created_at, d.event_id)
      LIMIT 1
    ) IS NULL
  ORDER BY d.next_at LIMIT :scan{skip_locked}
), ranked AS (
  SELECT event_id, subscription_id, next_at,
         ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY next_at, event_id) AS place
  FROM due
)
UPDATE webhook_deliveries SET lease_until = :lease, attempts = attempts + 1
WHERE (event_id, subscription_id) IN (
  SELECT event_id, subscription_id FROM ranked WHERE place <= :per_subscription ORDER BY next_at LIMIT :limit
)
RETURNING event_id, subscription_id, event_type, body, attempts
"""
        params = {
            "lease": lease_until,
            "now": now,
            "real_now": real_now,
            "limit": limit,
            # Rows looked at: enough that one subscription's backlog leaves the others room.
            "scan": limit * 4,
            "per_subscription": per_subscription or limit,
            **skipped,
        }
        return Stmt(sql, params, rows=True)

    async def release(self, claimed: list[Claimed]) -> None:
        """Give claimed attempts back unmade, due as they were."""
        await self._lane.run(
            [
                Stmt(
                    "UPDATE webhook_deliveries SET lease_until = NULL, attempts = attempts - 1 "
                    "WHERE event_id = :event_id AND subscription_id = :subscription_id",
                    {"event_id": c.event_id, "subscription_id": c.subscription_id},
                )
                for c in claimed
            ],
            lines=NO_LINES,
        )

    async def targets(self, ids: list[str]) -> dict[str, Subscription]:
        names = {f"s{i}": sid for i, sid in enumerate(ids)}
        placeholders = ", ".join(f":{name}" for name in names)
        rows = await self._writer.read(
            Stmt(f"SELECT {_COLUMNS} FROM webhook_subscriptions WHERE id IN ({placeholders})", names)
        )
        return {str(row[0]): _subscription(row) for row in rows}

    async def finish(
        self,
        claimed: Claimed,
        *,
        status: str,
        next_at: float | None,
        answer: int | None,
        error: str | None,
        latency_ms: float | None,
        at: datetime,
    ) -> None:
        """Record one attempt: `status` pending (with `next_at`), delivered or failed; the
        delivery's row keeps it as its last, the attempts table beside all the others."""
        await self.finish_many([Outcome(claimed, status, next_at, answer, error, latency_ms, at)])

    async def finish_many(self, outcomes: list[Outcome]) -> None:
        """Record several attempts in one transaction of two statements, however many
        there are: the outcomes travel as one JSON parameter the database unpacks, so the
        writer spends one statement's time on a batch, not two statements per attempt."""
        if not outcomes:
            return
        await self._lane.run(self._finish_stmts(outcomes), lines=NO_LINES)

    def _finish_stmts(self, outcomes: list[Outcome]) -> list[Stmt]:
        if not outcomes:
            return []
        rows = orjson.dumps([_outcome_row(o, postgres=self._postgres) for o in outcomes]).decode()
        update, insert = (_FINISH_PG, _ATTEMPTS_PG) if self._postgres else (_FINISH_SQLITE, _ATTEMPTS_SQLITE)
        return [Stmt(update, {"rows": rows}), Stmt(insert, {"rows": rows})]


def _claimed(r: Row) -> Claimed:
    return Claimed(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]))


def _outcome_row(outcome: Outcome, *, postgres: bool) -> dict[str, Any]:
    claimed, status = outcome.claimed, outcome.status
    at = outcome.at.isoformat() if postgres else sqlite_value(outcome.at)
    return {
        "event_id": claimed.event_id,
        "subscription_id": claimed.subscription_id,
        "status": status,
        "next_at": outcome.next_at,
        "answer": outcome.answer,
        "error": outcome.error[:400] if outcome.error else None,
        "latency": outcome.latency_ms,
        "finished": None if status == "pending" else at,
        "attempt": claimed.attempts,
        "at": at,
    }


_SQLITE_ROWS = """(SELECT json_extract(value, '$.event_id') AS event_id,
         json_extract(value, '$.subscription_id') AS subscription_id, json_extract(value, '$.status') AS status,
         json_extract(value, '$.next_at') AS next_at, json_extract(value, '$.answer') AS answer,
         json_extract(value, '$.error') AS error, json_extract(value, '$.latency') AS latency,
         json_extract(value, '$.finished') AS finished, json_extract(value, '$.attempt') AS attempt,
         json_extract(value, '$.at') AS at
  FROM json_each(:rows)) AS o"""
_PG_ROWS = """jsonb_to_recordset(CAST(:rows AS jsonb)) AS o(event_id text, subscription_id text, status text,
  next_at float8, answer integer, error text, latency float8, finished timestamptz, attempt integer, at timestamptz)"""

_FINISH = """
UPDATE webhook_deliveries SET status = o.status, next_at = COALESCE(o.next_at, webhook_deliveries.next_at),
  lease_until = NULL, last_status = o.answer, last_error = o.error, last_latency_ms = o.latency,
  finished_at = o.finished
FROM {rows}
WHERE webhook_deliveries.event_id = o.event_id AND webhook_deliveries.subscription_id = o.subscription_id
"""
# Only while the delivery is there: a subscription deleted during the attempt took its
# deliveries with it, and the attempt has nothing left to belong to.
_ATTEMPTS = """
INSERT INTO webhook_attempts (event_id, subscription_id, attempt, at, outcome, answer, latency_ms, error)
SELECT o.event_id, o.subscription_id, o.attempt, o.at, o.status, o.answer, o.latency, o.error
FROM {rows}
JOIN webhook_deliveries AS d ON d.event_id = o.event_id AND d.subscription_id = o.subscription_id
"""
_FINISH_SQLITE, _FINISH_PG = _FINISH.format(rows=_SQLITE_ROWS), _FINISH.format(rows=_PG_ROWS)
_ATTEMPTS_SQLITE, _ATTEMPTS_PG = _ATTEMPTS.format(rows=_SQLITE_ROWS), _ATTEMPTS.format(rows=_PG_ROWS)


def _params(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "partner_id": sub.partner_id,
        "target_url": sub.target_url,
        "events": wrap(sub.events),
        "phone_numbers": wrap(sub.phone_numbers),
        "is_active": sub.is_active,
        "signing_secret": sub.signing_secret,
        "webhook_version": sub.webhook_version,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
    }


def _subscription(row: Row) -> Subscription:
    return Subscription(
        id=str(row[0]),
        partner_id=str(row[1]),
        target_url=str(row[2]),
        events=unwrap(row[3]) or [],
        phone_numbers=unwrap(row[4]),
        is_active=bool(row[5]),
        signing_secret=str(row[6]),
        webhook_version=str(row[7]),
        created_at=_datetime(row[8]),
        updated_at=_datetime(row[9]),
    )


def _datetime(value: Any) -> datetime:
    """SQLite hands back the text the writer stored (UTC); PostgreSQL a datetime."""
    from datetime import UTC

    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _is_unique_violation(exc: Exception) -> bool:
    text = str(exc).lower()
    return "unique" in text or "duplicate key" in text
