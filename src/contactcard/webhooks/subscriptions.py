"""The partner's webhook subscriptions: create, list, get, replace fields, delete.

Same keys, envelope and error catalogue as the card endpoints. The signing secret is
returned by `create` only; nothing here logs it.

A target URL is refused at creation only when it is provably wrong: not `https` (unless
the host policy lets its host through), a literal address the policy refuses, or a name
that resolves to one. A name that does not resolve right now (an offline machine, a CI
runner without DNS) is accepted: each attempt checks the address again, and fails as a
connection failure, retried, until the name resolves.

`Subscriptions` names what it needs of the store as one protocol, `SubscriptionStore`
(`store/webhooks.py` `WebhookStore` in a server, `tests/fakes.py` `FakeSubscriptionStore`
in the unit tests), and takes the name resolution as a function (`Resolver`).
"""

from __future__ import annotations

import base64
import ipaddress
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import anyio

from contactcard import contract, errors
from contactcard.errors import ApiError
from contactcard.images.addresses import HostPolicy, IPAddress
from contactcard.images.urls import ImageUrl
from contactcard.store.core import StoreUnavailable
from contactcard.store.outbox import RecordedEvent
from contactcard.store.webhooks import Subscription, TargetTaken
from contactcard.webhooks.delivery import Resolver, TargetRefused, parse_target, system_resolver
from contactcard.webhooks.events import DOC_URL, EVENT_TYPES, KNOWN_EVENTS, Outbox, subscription_event, webhook_version

T = TypeVar("T")
SECRET_BYTES = 32
RESOLVE_DEADLINE = 2.0  # seconds a create or update waits for the target host's name, then accepts it
MAX_PHONE_NUMBERS = 1000
_RETRY_SOON = {"retry-after": "1", "x-should-retry": "true"}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def wire(sub: Subscription, *, with_secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": sub.id,
        "target_url": sub.target_url,
        "subscribed_events": sub.events,
        "phone_numbers": sub.phone_numbers,
        "is_active": sub.is_active,
        "created_at": _iso(sub.created_at),
        "updated_at": _iso(sub.updated_at),
    }
    if with_secret:
        body["signing_secret"] = sub.signing_secret
    return body


def _announce(event_type: str, sub: Subscription, trace_id: str, changed: dict[str, object] | None = None) -> Outbox:
    about: dict[str, object] = {"id": sub.id, "events": sub.events, "target_url": sub.target_url}
    return subscription_event(
        event_type, partner_id=sub.partner_id, subscription=about, at=sub.updated_at, trace_id=trace_id, changed=changed
    )


def _changes(before: Subscription, after: Subscription, trace_id: str) -> list[Outbox]:
    """The `webhook_subscription.*` events of an update, one per kind of change."""
    found = []
    change: dict[str, object]
    if before.target_url != after.target_url:
        change = {"from": before.target_url, "to": after.target_url}
        found.append(_announce("webhook_subscription.target_url_changed", after, trace_id, change))
    if before.events != after.events:
        change = {"from": before.events, "to": after.events}
        found.append(_announce("webhook_subscription.events.updated", after, trace_id, change))
    if before.phone_numbers != after.phone_numbers:
        change = {"from": before.phone_numbers, "to": after.phone_numbers}
        found.append(_announce("webhook_subscription.phone_numbers.updated", after, trace_id, change))
    if before.is_active != after.is_active:
        kind = "enabled" if after.is_active else "disabled"
        found.append(_announce(f"webhook_subscription.{kind}", after, trace_id))
    return found


def event_list() -> dict[str, Any]:
    return {"events": list(EVENT_TYPES), "doc_url": DOC_URL}


def _events(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ApiError(errors.BAD_VALUE, "subscribed_events must be a non-empty array of event types")
    for item in value:
        if not isinstance(item, str) or item not in KNOWN_EVENTS:
            raise ApiError(errors.BAD_VALUE, f"subscribed_events: unknown event type {str(item)[:80]!r}")
    return list(dict.fromkeys(value))


def _phones(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ApiError(errors.BAD_VALUE, "phone_numbers must be an array of E.164 numbers or null")
    if len(value) > MAX_PHONE_NUMBERS:
        raise ApiError(errors.BAD_VALUE, f"phone_numbers may list at most {MAX_PHONE_NUMBERS} numbers")
    return list(dict.fromkeys(contract.phone_number(v) for v in value)) or None


def _active(value: object) -> bool:
    if not isinstance(value, bool):
        raise ApiError(errors.BAD_VALUE, "is_active must be a boolean")
    return value


class SubscriptionStore(Protocol):
    """A partner's subscriptions and what they refer to. `add` and `replace` raise
    `TargetTaken` when another of the partner's subscriptions has the target URL; every
    method raises `StoreUnavailable` when the database does not answer in time. `announce`:
    events about the subscription, stored in the same transaction."""

    async def partner_of(self, key_hash: str) -> str | None: ...
    async def owned_lines(self, partner_id: str, phones: list[str]) -> set[str]: ...
    async def subscriptions(self, partner_id: str) -> list[Subscription]: ...
    async def subscription(self, partner_id: str, subscription_id: str) -> Subscription | None: ...
    async def add(self, sub: Subscription, announce: Sequence[RecordedEvent] | None = None) -> None: ...
    async def replace(
        self, sub: Subscription, announce: Sequence[RecordedEvent] | None = None
    ) -> bool: ...  # False: gone meanwhile
    async def remove(
        self, partner_id: str, subscription_id: str, announce: Sequence[RecordedEvent] | None = None
    ) -> bool: ...


class Subscriptions:
    def __init__(
        self,
        store: SubscriptionStore,
        policy: HostPolicy,
        *,
        resolver: Resolver | None = None,
        on_event: Callable[[], None] | None = None,
        replace_same_target: bool = False,
    ) -> None:
        self._store = store
        self._policy = policy
        self._resolver = resolver or system_resolver
        self._on_event = on_event or (lambda: None)  # wakes this process's delivery worker
        # The open sandbox: a create to a target URL the partner already uses replaces that
        # subscription, so the SDKs' generated tests (several creates to one URL) all pass.
        self._replace_same_target = replace_same_target

    async def partner(self, key_hash: str) -> str:
        try:
            partner = await self._store.partner_of(key_hash)
        except StoreUnavailable:
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None
        if partner is None:
            raise ApiError(errors.UNAUTHORIZED)
        return partner

    async def create(self, partner: str, body: dict[str, Any], trace_id: str = "") -> dict[str, Any]:
        for required in ("target_url", "subscribed_events"):
            if body.get(required) is None:
                raise ApiError(errors.MISSING_FIELD, required)
        target = await self._target(body["target_url"])
        events = _events(body["subscribed_events"])
        phones = await self._owned(partner, _phones(body.get("phone_numbers")))
        now = datetime.now(UTC)
        sub = Subscription(
            id=uuid.uuid4().hex,
            partner_id=partner,
            target_url=target,
            events=events,
            phone_numbers=phones,
            is_active=True,
            signing_secret=new_secret(),
            webhook_version=webhook_version(target, now),
            created_at=now,
            updated_at=now,
        )
        announce = [_announce("webhook_subscription.created", sub, trace_id)]
        if self._replace_same_target:
            await self._drop_same_target(partner, target, trace_id)
        await self._guarded(self._store.add(sub, announce))
        self._on_event()
        return wire(sub, with_secret=True)

    async def list_all(self, partner: str) -> dict[str, Any]:
        return {"subscriptions": [wire(s) for s in await self._guarded(self._store.subscriptions(partner))]}

    async def get(self, partner: str, subscription_id: str) -> dict[str, Any]:
        return wire(await self._found(partner, subscription_id))

    async def update(
        self, partner: str, subscription_id: str, body: dict[str, Any], trace_id: str = ""
    ) -> dict[str, Any]:
        current = await self._found(partner, subscription_id)
        changes: dict[str, Any] = {}
        if "target_url" in body:
            changes["target_url"] = await self._target(body["target_url"])
            changes["webhook_version"] = webhook_version(changes["target_url"], current.created_at)
        if "subscribed_events" in body:
            changes["events"] = _events(body["subscribed_events"])
        if "phone_numbers" in body:  # `[]` or null removes the filter
            changes["phone_numbers"] = await self._owned(partner, _phones(body["phone_numbers"]))
        if "is_active" in body:
            changes["is_active"] = _active(body["is_active"])
        # The secret, ids and unknown fields are not changed by a PUT.
        updated = replace(current, **changes, updated_at=datetime.now(UTC))
        announce = _changes(current, updated, trace_id)
        if not await self._guarded(self._store.replace(updated, announce)):
            raise ApiError(errors.NOT_FOUND)  # deleted since it was read: nothing was changed
        if announce:
            self._on_event()
        return wire(updated)

    async def delete(self, partner: str, subscription_id: str, trace_id: str = "") -> None:
        current = await self._found(partner, subscription_id)
        announce = [_announce("webhook_subscription.deleted", current, trace_id)]
        if not await self._guarded(self._store.remove(partner, subscription_id, announce)):
            raise ApiError(errors.NOT_FOUND)
        self._on_event()

    async def _drop_same_target(self, partner: str, target: str, trace_id: str) -> None:
        for sub in await self._guarded(self._store.subscriptions(partner)):
            if sub.target_url == target:
                announce = [_announce("webhook_subscription.deleted", sub, trace_id)]
                await self._guarded(self._store.remove(partner, sub.id, announce))

    async def _found(self, partner: str, subscription_id: str) -> Subscription:
        found = await self._guarded(self._store.subscription(partner, subscription_id))
        if found is None:  # unknown, or another partner's: the same answer
            raise ApiError(errors.NOT_FOUND)
        return found

    async def _target(self, value: object) -> str:
        if not isinstance(value, str):
            raise ApiError(errors.BAD_VALUE, "target_url must be a string")
        try:
            url = parse_target(value, self._policy)
        except TargetRefused as exc:
            raise ApiError(errors.BAD_VALUE, str(exc)) from None
        # The parser takes `http` for every host once any host is allowed; a target takes
        # it only for the hosts the policy lets through (the sandbox's loopback receivers).
        if url.scheme == "http" and not (self._policy.allow_private or self._policy.is_allowlisted(url)):
            raise ApiError(errors.BAD_VALUE, "target_url must be an absolute https URL")
        # One refused address refuses them all (a rebinding host mixes public and private).
        if not all(self._policy.permits(url, ip) for ip in await self._addresses_now(url)):
            raise ApiError(errors.BAD_VALUE, "target_url points to a non-public address")
        return value

    async def _addresses_now(self, url: ImageUrl) -> list[IPAddress]:
        """The target's addresses right now; none when its name does not resolve (in time)."""
        if url.is_ip:
            return [ipaddress.ip_address(url.host)]
        try:
            with anyio.fail_after(RESOLVE_DEADLINE):
                answers = await anyio.to_thread.run_sync(self._resolver, url.host, url.port, abandon_on_cancel=True)
            return [ipaddress.ip_address(answer) for answer in answers]
        except Exception:  # no answer (gaierror, a timeout) or not an address: not provably wrong
            return []

    async def _owned(self, partner: str, phones: list[str] | None) -> list[str] | None:
        if not phones:
            return None
        owned = await self._guarded(self._store.owned_lines(partner, phones))
        if len(owned) != len(phones):
            raise ApiError(errors.FORBIDDEN)
        return phones

    async def _guarded(self, step: Awaitable[T]) -> T:
        try:
            return await step
        except StoreUnavailable:
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None
        except TargetTaken:
            raise ApiError(errors.BAD_VALUE, "target_url is already used by another subscription") from None
