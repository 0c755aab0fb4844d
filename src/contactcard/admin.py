"""Operator use cases: partners, keys, lines and device scripts.

The `contactcard admin` command and the `/admin/v1` HTTP API both call these; the store
(`store/accounts.py`) runs every statement.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from contactcard import contract, keys
from contactcard.card import Card
from contactcard.device import DeviceScript, DeviceView, SimulatedDevice
from contactcard.errors import ApiError
from contactcard.store.accounts import Accounts, Counts, DeliveryRow, KeyInUse, LineTaken, NoSuchPartner
from contactcard.store.accounts import AttemptRow as Attempt
from contactcard.store.accounts import KeyRow as KeyInfo
from contactcard.store.accounts import LineCardRow as LineCard
from contactcard.store.accounts import LineRow as Line
from contactcard.store.accounts import PartnerRow as Partner
from contactcard.store.accounts import SubscriptionRow as Subscription
from contactcard.webhooks import events

__all__ = [
    "Admin",
    "AdminError",
    "Attempt",
    "Counts",
    "DeliveryRow",
    "IssuedKey",
    "KeyInfo",
    "Line",
    "LineCard",
    "Partner",
    "Subscription",
]


# What a number search may be: a phone number's first characters (`+` and digits).
_NUMBER_PREFIX = re.compile(r"\+?[0-9]{0,15}")


class AdminError(Exception):
    """An operator request that cannot be done; the message says why."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclass(frozen=True)
class IssuedKey:
    id: str
    partner_id: str
    key: str  # shown once; only its hash is stored


class Admin:
    def __init__(self, accounts: Accounts, device: SimulatedDevice, *, card_url_prefix: str = "") -> None:
        self._accounts = accounts
        self.device = device
        self._card_url_prefix = card_url_prefix  # where the CDN serves card images (for events)

    @staticmethod
    def _partner_name(name: str) -> str:
        name = name.strip()
        if not name:
            raise AdminError("a partner needs a name")
        if len(name) > 200:  # the column's size
            raise AdminError("a partner's name is at most 200 characters")
        # Refused as in card names: a U+202E would make the dashboard show another name.
        if any(map(contract.hidden_character, name)):
            raise AdminError("a partner's name must not contain control or bidirectional characters")
        return name

    def create_partner(self, name: str) -> Partner:
        name = self._partner_name(name)
        partner = Partner(uuid.uuid4().hex, name, datetime.now(UTC))
        self._accounts.add_partner(partner)
        return partner

    def rename_partner(self, partner_id: str, name: str) -> None:
        if not self._accounts.rename_partner(partner_id, self._partner_name(name)):
            raise AdminError(f"no partner {partner_id}", not_found=True)

    def partner_holdings(self, partner_id: str) -> tuple[int, int, int]:
        """Its keys, lines and webhook subscriptions: what deleting it takes with it."""
        return self._accounts.partner_holdings(partner_id)

    def delete_partner(self, partner_id: str) -> None:
        """The partner, its keys, lines (their cards and devices) and subscriptions (their
        deliveries); no event is sent, since the subscriptions that would receive it go too."""
        if not self._accounts.delete_partner(partner_id):
            raise AdminError(f"no partner {partner_id}", not_found=True)

    def set_subscription_active(self, subscription_id: str, active: bool) -> None:
        """Deliveries to a disabled subscription stop being created; enabled, they start again."""
        if not self._accounts.set_subscription_active(subscription_id, active, datetime.now(UTC)):
            raise AdminError(f"no subscription {subscription_id}", not_found=True)

    def delivery_body(self, event_id: str, subscription_id: str) -> str:
        body = self._accounts.delivery_body(event_id, subscription_id)
        if body is None:
            raise AdminError(f"no delivery of event {event_id} to subscription {subscription_id}", not_found=True)
        return body

    def list_partners(self) -> list[Partner]:
        return self._accounts.partners()

    def partner_count(self) -> int:
        return self._accounts.partner_count()

    def counts(self) -> Counts:
        return self._accounts.counts()

    def issue_key(self, partner_id: str, key: str | None = None, label: str | None = None) -> IssuedKey:
        label = (label or "").strip() or None
        if label is not None and (len(label) > 100 or any(map(contract.hidden_character, label))):
            raise AdminError("a key's label is at most 100 characters, without control or bidirectional characters")
        key = key or keys.new_key()
        issued = IssuedKey(uuid.uuid4().hex, partner_id, key)
        try:
            self._accounts.add_key(
                issued.id, partner_id, keys.key_hash(key), keys.display_prefix(key), datetime.now(UTC), label
            )
        except NoSuchPartner:
            raise AdminError(f"no partner {partner_id}", not_found=True) from None
        except KeyInUse:
            raise AdminError("that key is already in use") from None
        return issued

    def key_owner(self, key_hash: str) -> str | None:
        """The partner a key (by its hash, revoked or not) belongs to."""
        return self._accounts.key_owner(key_hash)

    def list_keys(self, partner_id: str | None = None) -> list[KeyInfo]:
        return self._accounts.keys(partner_id)

    def revoke_key(self, key_id: str) -> None:
        if not self._accounts.revoke_key(key_id, datetime.now(UTC)):
            raise AdminError(f"no key {key_id}", not_found=True)

    def add_line(self, partner_id: str, phone_number: str) -> Line:
        try:
            contract.phone_number(phone_number)  # the contract's own E.164 rule
        except ApiError:
            raise AdminError(f"{phone_number!r} is not an E.164 phone number") from None
        try:
            return self._accounts.add_line(partner_id, phone_number, datetime.now(UTC))
        except NoSuchPartner:
            raise AdminError(f"no partner {partner_id}", not_found=True) from None
        except LineTaken:
            raise AdminError(f"{phone_number} already belongs to another partner") from None

    def remove_line(self, phone_number: str) -> None:
        """Remove the line; its card, if any, is gone too (`contact_card.deleted`)."""
        if not self._accounts.remove_line(phone_number, self._deleted_event):
            raise AdminError(f"no line {phone_number}", not_found=True)

    def _deleted_event(self, partner_id: str, card: Card) -> events.Outbox:
        view = events.CardView(card.id, card.first_name, card.last_name, card.image_url(self._card_url_prefix))
        return events.card_event(
            events.CARD_DELETED,
            partner_id=partner_id,
            phone_number=card.phone_number,
            card=view,
            at=datetime.now(UTC),
            trace_id="",
            actor="system",
        )

    def list_subscriptions(self, partner_id: str | None = None) -> list[Subscription]:
        return self._accounts.subscriptions(partner_id)

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
        return self._accounts.deliveries(
            subscription_id=subscription_id,
            event_id=event_id,
            state=state,
            limit=limit,
            offset=offset,
            phone_number=phone_number,
        )

    def delivery(self, event_id: str, subscription_id: str) -> tuple[DeliveryRow, list[Attempt]]:
        """One delivery and every attempt made of it."""
        found = [
            row
            for row in self._accounts.deliveries(event_id=event_id, subscription_id=subscription_id)
            if row.subscription_id == subscription_id
        ]
        if not found:
            raise AdminError(f"no delivery of event {event_id} to subscription {subscription_id}", not_found=True)
        return found[0], self._accounts.attempts(event_id, subscription_id)

    def redeliver(self, event_id: str, subscription_id: str) -> DeliveryRow:
        """Send one delivery again now (whatever became of it), with a fresh retry schedule."""
        if not self._accounts.redeliver(event_id, subscription_id, datetime.now(UTC).timestamp()):
            raise AdminError(f"no delivery of event {event_id} to subscription {subscription_id}", not_found=True)
        (row,) = self._accounts.deliveries(subscription_id=subscription_id, event_id=event_id)
        return row

    def list_lines(self, partner_id: str | None = None) -> list[Line]:
        return self._accounts.lines(partner_id)

    def line_cards(
        self,
        *,
        after: str = "",
        before: str | None = None,
        number_prefix: str = "",
        partner_id: str | None = None,
        limit: int = 50,
        state: str | None = None,
        name: str = "",
    ) -> list[LineCard]:
        """One page of lines with their cards (the dashboard): in number order after `after`,
        or with `before`, the lines just before it, nearest first."""
        number_prefix = self._number_prefix(number_prefix)
        return self._accounts.line_cards(
            after=after,
            before=before,
            number_prefix=number_prefix,
            partner_id=partner_id,
            limit=limit,
            state=state,
            name=name,
        )

    def line_count(
        self, *, number_prefix: str = "", partner_id: str | None = None, state: str | None = None, name: str = ""
    ) -> int:
        return self._accounts.line_count(
            number_prefix=self._number_prefix(number_prefix), partner_id=partner_id, state=state, name=name
        )

    @staticmethod
    def _number_prefix(number_prefix: str) -> str:
        if not _NUMBER_PREFIX.fullmatch(number_prefix):
            raise AdminError(f"{number_prefix!r} is not the start of a phone number")
        if number_prefix and not number_prefix.startswith("+"):
            return "+" + number_prefix  # every stored number starts with it
        return number_prefix

    def _require_line(self, phone_number: str) -> None:
        if not self._accounts.has_line(phone_number):
            raise AdminError(f"no line {phone_number}", not_found=True)

    def script_device(self, phone_number: str, script: DeviceScript) -> DeviceView:
        if script.fail_next < 0 or script.rate_limit_next < 0:
            raise AdminError("scripted counts cannot be negative")
        self._require_line(phone_number)
        self.device.set_script(phone_number, script)
        return self.device.view(phone_number)

    def device_view(self, phone_number: str) -> DeviceView:
        self._require_line(phone_number)
        return self.device.view(phone_number)
