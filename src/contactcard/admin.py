"""Operator use cases: partners, keys, lines, webhook deliveries and device scripts.

The `contactcard admin` command, the `/admin/v1` HTTP API and the dashboard all call
these. `Admin` names what it needs of the store as protocols (below), one per aggregate;
`bootstrap.py` hands it the real records (`store/partners.py`, `api_keys.py`, `lines.py`,
`subscriptions.py`, `deliveries.py`, `overview.py`) and the unit tests hand it the fakes
of `tests/fakes.py`. A request that cannot be done raises `ApiError` from the catalogue:
`BAD_VALUE` or `NOT_FOUND`, its detail in the operator's words (`ApiError.reason`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from contactcard import contract, errors, keys
from contactcard.card import Card
from contactcard.device import DeviceScript, DeviceView
from contactcard.errors import ApiError
from contactcard.store.api_keys import KeyInUse, NewKey
from contactcard.store.api_keys import KeyRow as KeyInfo
from contactcard.store.deliveries import EVERY_DELIVERY, DeliveryFilter, DeliveryRow
from contactcard.store.deliveries import AttemptRow as Attempt
from contactcard.store.lines import EVERY_LINE, DeletedEvent, LineFilter, LineTaken
from contactcard.store.lines import LineCardRow as LineCard
from contactcard.store.lines import LineRow as Line
from contactcard.store.overview import Counts
from contactcard.store.partners import Holdings, NoSuchPartner
from contactcard.store.partners import PartnerRow as Partner
from contactcard.store.subscriptions import SubscriptionRow as Subscription
from contactcard.webhooks import events

__all__ = [
    "Admin",
    "AdminRecords",
    "Attempt",
    "Counts",
    "DeliveryRow",
    "Holdings",
    "IssuedKey",
    "KeyInfo",
    "Line",
    "LineCard",
    "LineFilter",
    "Partner",
    "Subscription",
]


# What a number search may be: a phone number's first characters (`+` and digits).
_NUMBER_PREFIX = re.compile(r"\+?[0-9]{0,15}")


# --- the seams: what the use cases need of the store (each call is one transaction) --------


class PartnerRecords(Protocol):
    def add(self, partner: Partner) -> None: ...
    def all(self) -> list[Partner]: ...
    def count(self) -> int: ...
    def rename(self, partner_id: str, name: str) -> bool: ...  # False: no such partner
    def holdings(self, partner_id: str) -> Holdings: ...
    def delete(self, partner_id: str) -> bool: ...  # with everything of theirs; False: unknown


class KeyRecords(Protocol):
    def add(self, key: NewKey) -> None: ...  # raises NoSuchPartner, KeyInUse
    def owner(self, key_hash: str) -> str | None: ...
    def all(self, partner_id: str | None = None) -> list[KeyInfo]: ...
    def revoke(self, key_id: str, at: datetime) -> bool: ...  # False: no such key


class LineRecords(Protocol):
    def add(self, partner_id: str, phone_number: str, created_at: datetime) -> Line: ...  # NoSuchPartner, LineTaken
    def remove(self, phone_number: str, deleted: DeletedEvent | None = None) -> bool: ...
    def all(self, partner_id: str | None = None) -> list[Line]: ...
    def has(self, phone_number: str) -> bool: ...
    def page(
        self, where: LineFilter = EVERY_LINE, *, after: str = "", before: str | None = None, limit: int = 50
    ) -> list[LineCard]: ...
    def count(self, where: LineFilter = EVERY_LINE, *, at_most: int | None = None) -> int: ...


class SubscriptionRecords(Protocol):
    def all(self, partner_id: str | None = None) -> list[Subscription]: ...
    def set_active(self, subscription_id: str, active: bool, at: datetime) -> bool: ...


class DeliveryRecords(Protocol):
    def body(self, event_id: str, subscription_id: str) -> str | None: ...
    def newest(
        self, where: DeliveryFilter = EVERY_DELIVERY, *, limit: int = 200, offset: int = 0
    ) -> list[DeliveryRow]: ...
    def attempts(self, event_id: str, subscription_id: str) -> list[Attempt]: ...
    def redeliver(self, event_id: str, subscription_id: str, due: float) -> bool: ...


class OverviewRecords(Protocol):
    def counts(self) -> Counts: ...


class LineDevices(Protocol):
    """What the operator does to a line's (simulated) device: script it, see what it shows.
    `SimulatedDevice` and its records (`store/devices.py`) both do."""

    def set_script(self, phone_number: str, script: DeviceScript) -> None: ...
    def view(self, phone_number: str) -> DeviceView: ...


@dataclass(frozen=True)
class AdminRecords:
    """The store as the operator's use cases see it, one record set per aggregate."""

    partners: PartnerRecords
    keys: KeyRecords
    lines: LineRecords
    subscriptions: SubscriptionRecords
    deliveries: DeliveryRecords
    overview: OverviewRecords


@dataclass(frozen=True)
class IssuedKey:
    id: str
    partner_id: str
    key: str  # shown once; only its hash is stored


def _refused(detail: str) -> ApiError:
    return ApiError(errors.BAD_VALUE, detail)


def _unknown(detail: str) -> ApiError:
    return ApiError(errors.NOT_FOUND, detail)


def _no_delivery(event_id: str, subscription_id: str) -> ApiError:
    return _unknown(f"no delivery of event {event_id} to subscription {subscription_id}")


class Admin:
    def __init__(
        self,
        records: AdminRecords,
        devices: LineDevices,
        *,
        card_url_prefix: str = "",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._records = records
        self._devices = devices
        self._card_url_prefix = card_url_prefix  # where the CDN serves card images (for events)
        self._now = now

    # --- partners ------------------------------------------------------------------------

    @staticmethod
    def _partner_name(name: str) -> str:
        name = name.strip()
        if not name:
            raise _refused("a partner needs a name")
        if len(name) > 200:  # the column's size
            raise _refused("a partner's name is at most 200 characters")
        # Refused as in card names: a U+202E would make the dashboard show another name.
        if any(map(contract.hidden_character, name)):
            raise _refused("a partner's name must not contain control or bidirectional characters")
        return name

    def create_partner(self, name: str) -> Partner:
        partner = Partner(uuid.uuid4().hex, self._partner_name(name), self._now())
        self._records.partners.add(partner)
        return partner

    def rename_partner(self, partner_id: str, name: str) -> None:
        if not self._records.partners.rename(partner_id, self._partner_name(name)):
            raise _unknown(f"no partner {partner_id}")

    def partner_holdings(self, partner_id: str) -> Holdings:
        """Its keys, lines and webhook subscriptions: what deleting it takes with it."""
        return self._records.partners.holdings(partner_id)

    def delete_partner(self, partner_id: str) -> None:
        """The partner, its keys, lines (their cards and devices) and subscriptions (their
        deliveries); no event is sent, since the subscriptions that would receive it go too."""
        if not self._records.partners.delete(partner_id):
            raise _unknown(f"no partner {partner_id}")

    def list_partners(self) -> list[Partner]:
        return self._records.partners.all()

    def partner_count(self) -> int:
        return self._records.partners.count()

    def counts(self) -> Counts:
        return self._records.overview.counts()

    # --- keys ----------------------------------------------------------------------------

    def issue_key(self, partner_id: str, key: str | None = None, label: str | None = None) -> IssuedKey:
        label = (label or "").strip() or None
        if label is not None and (len(label) > 100 or any(map(contract.hidden_character, label))):
            raise _refused("a key's label is at most 100 characters, without control or bidirectional characters")
        key = key or keys.new_key()
        issued = IssuedKey(uuid.uuid4().hex, partner_id, key)
        stored = NewKey(issued.id, partner_id, keys.key_hash(key), keys.display_prefix(key), self._now(), label)
        try:
            self._records.keys.add(stored)
        except NoSuchPartner:
            raise _unknown(f"no partner {partner_id}") from None
        except KeyInUse:
            raise _refused("that key is already in use") from None
        return issued

    def key_owner(self, key_hash: str) -> str | None:
        """The partner a key (by its hash, revoked or not) belongs to."""
        return self._records.keys.owner(key_hash)

    def list_keys(self, partner_id: str | None = None) -> list[KeyInfo]:
        return self._records.keys.all(partner_id)

    def revoke_key(self, key_id: str) -> None:
        if not self._records.keys.revoke(key_id, self._now()):
            raise _unknown(f"no key {key_id}")

    # --- lines ---------------------------------------------------------------------------

    def add_line(self, partner_id: str, phone_number: str) -> Line:
        try:
            contract.phone_number(phone_number)  # the contract's own E.164 rule
        except ApiError:
            raise _refused(f"{phone_number!r} is not an E.164 phone number") from None
        try:
            return self._records.lines.add(partner_id, phone_number, self._now())
        except NoSuchPartner:
            raise _unknown(f"no partner {partner_id}") from None
        except LineTaken:
            raise _refused(f"{phone_number} already belongs to another partner") from None

    def remove_line(self, phone_number: str) -> None:
        """Remove the line; its card, if any, is gone too (`contact_card.deleted`)."""
        if not self._records.lines.remove(phone_number, self._deleted_event):
            raise _unknown(f"no line {phone_number}")

    def _deleted_event(self, partner_id: str, card: Card) -> events.Outbox:
        view = events.CardView(card.id, card.first_name, card.last_name, card.image_url(self._card_url_prefix))
        return events.card_event(
            events.CARD_DELETED,
            partner_id=partner_id,
            phone_number=card.phone_number,
            card=view,
            at=self._now(),
            trace_id="",
            actor="system",
        )

    def list_lines(self, partner_id: str | None = None) -> list[Line]:
        return self._records.lines.all(partner_id)

    def line_cards(
        self, where: LineFilter = EVERY_LINE, *, after: str = "", before: str | None = None, limit: int = 50
    ) -> list[LineCard]:
        """One page of lines with their cards (the dashboard): in number order after `after`,
        or with `before`, the lines just before it, nearest first."""
        return self._records.lines.page(self._checked(where), after=after, before=before, limit=limit)

    def line_count(self, where: LineFilter = EVERY_LINE, *, at_most: int | None = None) -> int:
        """How many lines `where` finds; with `at_most`, counted no further than `at_most + 1`."""
        return self._records.lines.count(self._checked(where), at_most=at_most)

    @staticmethod
    def _checked(where: LineFilter) -> LineFilter:
        prefix = where.number_prefix
        if not _NUMBER_PREFIX.fullmatch(prefix):
            raise _refused(f"{prefix!r} is not the start of a phone number")
        if prefix and not prefix.startswith("+"):
            return replace(where, number_prefix="+" + prefix)  # every stored number starts with it
        return where

    # --- devices -------------------------------------------------------------------------

    def _require_line(self, phone_number: str) -> None:
        if not self._records.lines.has(phone_number):
            raise _unknown(f"no line {phone_number}")

    def script_device(self, phone_number: str, script: DeviceScript) -> DeviceView:
        if script.fail_next < 0 or script.rate_limit_next < 0:
            raise _refused("scripted counts cannot be negative")
        self._require_line(phone_number)
        self._devices.set_script(phone_number, script)
        return self._devices.view(phone_number)

    def device_view(self, phone_number: str) -> DeviceView:
        self._require_line(phone_number)
        return self._devices.view(phone_number)

    # --- webhook subscriptions and deliveries --------------------------------------------

    def list_subscriptions(self, partner_id: str | None = None) -> list[Subscription]:
        return self._records.subscriptions.all(partner_id)

    def set_subscription_active(self, subscription_id: str, active: bool) -> None:
        """Deliveries to a disabled subscription stop being created; enabled, they start again."""
        if not self._records.subscriptions.set_active(subscription_id, active, self._now()):
            raise _unknown(f"no subscription {subscription_id}")

    def delivery_body(self, event_id: str, subscription_id: str) -> str:
        body = self._records.deliveries.body(event_id, subscription_id)
        if body is None:
            raise _no_delivery(event_id, subscription_id)
        return body

    def list_deliveries(
        self,
        subscription_id: str | None = None,
        event_id: str | None = None,
        *,
        state: str | None = None,
        limit: int = 200,
        offset: int = 0,
        phone_number: str | None = None,
    ) -> list[DeliveryRow]:
        """The newest first; `state`: pending, retrying, delivered or failed."""
        where = DeliveryFilter(subscription_id, event_id, phone_number, state)
        return self._records.deliveries.newest(where, limit=limit, offset=offset)

    def delivery(self, event_id: str, subscription_id: str) -> tuple[DeliveryRow, list[Attempt]]:
        """One delivery and every attempt made of it."""
        found = [
            row
            for row in self._records.deliveries.newest(DeliveryFilter(subscription_id, event_id))
            if row.subscription_id == subscription_id  # an empty id filters nothing in the store
        ]
        if not found:
            raise _no_delivery(event_id, subscription_id)
        return found[0], self._records.deliveries.attempts(event_id, subscription_id)

    def redeliver(self, event_id: str, subscription_id: str) -> DeliveryRow:
        """Send one delivery again now (whatever became of it), with a fresh retry schedule."""
        if not self._records.deliveries.redeliver(event_id, subscription_id, self._now().timestamp()):
            raise _no_delivery(event_id, subscription_id)
        (row,) = self._records.deliveries.newest(DeliveryFilter(subscription_id, event_id))
        return row
