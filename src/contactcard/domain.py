"""The values a card write is made of, as they cross the seams: the use cases make them,
the store and the line's device take them.

A module of its own, beside `card.py` (the card as it is read and shown), because these
are the write's own values: the line's state under its lock, the new values, the write
as it goes to the store, and what the store answers. They import nothing but the card and
the standard library, so the store imports them from here and never the other way round
(the use cases, the store and the fakes of the tests all speak these types).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contactcard.card import Card, Outcome


@dataclass(frozen=True)
class CardValues:
    """What a write asks the line's card to be."""

    first_name: str
    last_name: str | None
    image_blob: str | None  # our CDN copy's name
    image_source_url: str | None  # the caller's URL it was fetched from


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
    device_scripted: bool | None = None  # the simulated device has outcomes scripted; None: not read


@dataclass(frozen=True)
class JoinedApply:
    """A device's apply made inside the card's own transaction: what the line's display
    shows there. The card is then stored active in the same commit exactly when the
    display showed it (`Device.joined_apply` says whether a device can do this)."""

    first_name: str
    last_name: str | None
    image_url: str | None  # our CDN's URL of the image


class RecordedEvent(Protocol):
    """A webhook event the store records with the change that made it, fanned out to the
    matching subscriptions in the change's own transaction (`webhooks/events.py` makes
    them as `Outbox` values). `head + webhook_version + tail` is the body a subscription
    receives."""

    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def partner_id(self) -> str: ...
    @property
    def phone_number(self) -> str | None: ...  # None: about no line
    @property
    def at(self) -> datetime: ...  # on the server's clock: when its first attempt is due
    @property
    def head(self) -> str: ...
    @property
    def tail(self) -> str: ...


@dataclass(frozen=True)
class PendingWrite:
    """One write of a line's card, as the use case hands it to the store: everything its
    commit holds."""

    phone: str
    values: CardValues
    attempt_at: float | None  # the write attempt that spends the budget; None: the budget is off
    prune_before: float  # attempts at or before this can never count again
    image_url: str | None  # our CDN's URL of the image, what the device shows
    card_id: str  # kept by an existing card
    event: RecordedEvent | None  # the webhook event the change makes; None: nothing changes
    joined: JoinedApply | None = None  # the device's apply in this commit; None: it applies after


@dataclass(frozen=True)
class Stored:
    """The card as the store's commit left it, and the device's answer when its apply
    joined that commit."""

    card: Card
    outcome: Outcome | None = None  # None: the device has yet to apply it
