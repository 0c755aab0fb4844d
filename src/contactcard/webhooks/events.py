"""The events about cards, as the SDKs' `contact_card.*` webhook types define their bodies.

Pure: values in, the body's bytes out. The body is built here once, when the change is
recorded; each subscription's `webhook_version` is spliced in by the store (see `Outbox`),
so every attempt of every delivery sends bytes fixed at the change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import orjson

DOC_URL = "https://docs.linqapp.com/channel/imessage/guides/webhooks/events"
CARD_CREATED = "contact_card.created"
CARD_UPDATED = "contact_card.updated"
CARD_DELETED = "contact_card.deleted"

# Every type a subscription may name: the SDKs' `WebhookEventType` (subscribing to one this
# server never emits is allowed, as on the hosted API, where a partner subscribes once).
EVENT_TYPES: tuple[str, ...] = (
    "message.sent",
    "message.received",
    "message.read",
    "message.delivered",
    "message.failed",
    "message.edited",
    "reaction.added",
    "reaction.removed",
    "poll.received",
    "poll.failed",
    "poll.sent",
    "poll.delivered",
    "poll.read",
    "poll.updated",
    "poll.vote.added",
    "poll.vote.removed",
    "poll.reaction.added",
    "participant.added",
    "participant.removed",
    "chat.created",
    "chat.group_name_updated",
    "chat.group_icon_updated",
    "chat.group_name_update_failed",
    "chat.group_icon_update_failed",
    "chat.background_updated",
    "chat.background_update_failed",
    "chat.typing_indicator.started",
    "chat.typing_indicator.stopped",
    "phone_number.status_updated",
    "phone_number.assigned",
    "phone_number.released",
    "contact_card.received",
    "call.initiated",
    "call.ringing",
    "call.answered",
    "call.ended",
    "call.failed",
    "call.declined",
    "call.no_answer",
    "location.sharing.started",
    "location.sharing.stopped",
    "payment.succeeded",
    "payment.canceled",
    "payment.expired",
    "payment.declined",
    "payment.authorized",
    "connection.created",
    "connection.revoked",
    "zero_day_retention.updated",
    "phone_number.forwarding_updated",
    "environment.line_moved",
    "contact_card.created",
    "contact_card.updated",
    "contact_card.deleted",
    "api_token.created",
    "api_token.renamed",
    "api_token.expiry_scheduled",
    "api_token.expired",
    "api_token.activated",
    "api_token.deleted",
    "environment.created",
    "environment.renamed",
    "environment.deleted",
    "webhook_subscription.created",
    "webhook_subscription.deleted",
    "webhook_subscription.target_url_changed",
    "webhook_subscription.enabled",
    "webhook_subscription.disabled",
    "webhook_subscription.events.updated",
    "webhook_subscription.phone_numbers.updated",
    "webhook_subscription.routing_headers_set",
    "webhook_subscription.routing_headers_cleared",
    "team_member.added",
    "team_member.signed_in",
    "team_member.signed_out",
)
KNOWN_EVENTS = frozenset(EVENT_TYPES)

_CARD_FIELDS = ("first_name", "last_name", "image_url")
# Stands where each subscription's version goes; split out before anything is stored.
_VERSION_SLOT = "\x00webhook_version\x00"
_SLOT_JSON = orjson.dumps(_VERSION_SLOT).decode()


@dataclass(frozen=True)
class Outbox:
    """One event, ready to be fanned out to the subscriptions that match it.

    `head + webhook_version + tail` is the body a subscription receives."""

    event_id: str
    event_type: str
    partner_id: str
    phone_number: str | None  # None: about no line (the subscription events)
    at: datetime  # on the server's clock: when it happened, and when its first attempt is due
    head: str
    tail: str


@dataclass(frozen=True)
class CardView:
    """The card as an event shows it (`image_url` is the CDN URL)."""

    id: str
    first_name: str
    last_name: str | None
    image_url: str | None

    def wire(self) -> dict[str, object]:
        return {"id": self.id, "first_name": self.first_name, "last_name": self.last_name, "image_url": self.image_url}


def change(before: CardView, after: CardView) -> dict[str, dict[str, str | None]]:
    """Exactly the fields that differ, each as `{"from": old, "to": new}`."""
    found: dict[str, dict[str, str | None]] = {}
    for field in _CARD_FIELDS:
        old, new = getattr(before, field), getattr(after, field)
        if old != new:
            found[field] = {"from": old, "to": new}
    return found


def subscription_event(
    event_type: str,
    *,
    partner_id: str,
    subscription: dict[str, object],
    at: datetime,
    trace_id: str,
    changed: dict[str, object] | None = None,
) -> Outbox:
    """A `webhook_subscription.*` event: `subscription` is `{id, events, target_url}`;
    `changed` the `{"from", "to"}` of an update event."""
    noun = event_type.removeprefix("webhook_subscription.").replace("_", " ").replace(".", " ")
    data: dict[str, object] = {
        "summary": f"Webhook subscription {noun}",
        "occurred_at": _iso(at),
        "actor": {"type": "api"},
        "origin": "api",
        "webhook_subscription": subscription,
    }
    if changed is not None:
        data["change"] = changed
    return _outbox(event_type, partner_id, None, at, trace_id, data)


def _summary(event_type: str, phone: str) -> str:
    verb = {CARD_CREATED: "created", CARD_UPDATED: "updated", CARD_DELETED: "deleted"}[event_type]
    return f"Contact card {verb} for {phone}"


def card_event(
    event_type: str,
    *,
    partner_id: str,
    phone_number: str,
    card: CardView,
    at: datetime,
    trace_id: str,
    changed: dict[str, dict[str, str | None]] | None = None,
    actor: Literal["api", "system"] = "api",
) -> Outbox:
    data: dict[str, object] = {
        "summary": _summary(event_type, phone_number),
        "occurred_at": _iso(at),
        "actor": {"type": actor},
        # An operator's removal is the platform's doing, not the partner's API call.
        "origin": "api" if actor == "api" else "linq",
        "phone_number": phone_number,
        "contact_card": card.wire(),
    }
    if changed is not None:
        data["change"] = changed
    return _outbox(event_type, partner_id, phone_number, at, trace_id, data)


def _uuid4_hex() -> str:
    """`uuid.uuid4().hex`, the same bits, without building a UUID object on every write."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


def _outbox(
    event_type: str, partner_id: str, phone_number: str | None, at: datetime, trace_id: str, data: dict[str, object]
) -> Outbox:
    event_id = _uuid4_hex()
    body = {
        "api_version": "v3",
        "webhook_version": _VERSION_SLOT,
        "event_id": event_id,
        "event_type": event_type,
        "created_at": _iso(at),
        "partner_id": partner_id,
        "trace_id": trace_id or _uuid4_hex(),
        "data": data,
    }
    text = orjson.dumps(body).decode()
    head, slot, tail = text.partition(_SLOT_JSON)
    assert slot, "the version slot is the second key, before any caller-supplied value"
    return Outbox(event_id, event_type, partner_id, phone_number, at, head + '"', '"' + tail)


def _iso(at: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as the hosted API writes its timestamps."""
    # isoformat ends in "+00:00" once in UTC; it costs half of strftime.
    return at.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def webhook_version(target_url: str, created_at: datetime) -> str:
    """The date given as `?version=` on the target URL, else the subscription's creation date."""
    query = dict(parse_qsl(urlsplit(target_url).query))
    given = query.get("version", "")
    if len(given) == 10 and given[4] == given[7] == "-" and given.replace("-", "").isdigit():
        return given
    return created_at.astimezone(UTC).strftime("%Y-%m-%d")
