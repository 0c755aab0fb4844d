"""The webhook subscription use cases (`contactcard.webhooks.subscriptions.Subscriptions`) on an
in-memory store (tests/fakes.py `FakeSubscriptionRecords`) and a resolver that answers from a
dict: validation from the catalogue, one partner never sees another's, targets checked."""

from __future__ import annotations

import pytest

from contactcard import errors
from contactcard.errors import ApiError
from contactcard.images.addresses import HostPolicy
from contactcard.webhooks.subscriptions import Subscriptions
from tests.fakes import FakeSubscriptionRecords

pytestmark = pytest.mark.anyio

OURS, THEIRS = "+15550001001", "+15550001002"
EVENTS = ["contact_card.created", "contact_card.updated"]
NAMES = {"hooks.example.com": ["93.184.215.14"], "rebind.example.com": ["93.184.215.15", "10.0.0.8"]}


def resolve(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise OSError(f"{host} does not resolve")
    return NAMES[host]


def world(*, sandbox: bool = False) -> tuple[Subscriptions, FakeSubscriptionRecords]:
    records = FakeSubscriptionRecords()
    records.keys = {"key-a": "partner-a", "key-b": "partner-b"}
    records.lines = {OURS: "partner-a", THEIRS: "partner-b"}
    woken: list[int] = []
    subs = Subscriptions(
        records, HostPolicy(), resolver=resolve, on_event=lambda: woken.append(1), replace_same_target=sandbox
    )
    return subs, records


async def refused(step, entry=errors.BAD_VALUE) -> str:
    with pytest.raises(ApiError) as caught:
        await step
    assert caught.value.error is entry, caught.value
    return caught.value.reason


def body(**fields):
    return {"target_url": "https://hooks.example.com/in", "subscribed_events": EVENTS, **fields}


async def test_create_answers_the_secret_once_and_announces_itself():
    subs, records = world()
    created = await subs.create("partner-a", body(phone_numbers=[OURS]))
    assert created["signing_secret"].startswith("whsec_")
    assert created["subscribed_events"] == EVENTS and created["phone_numbers"] == [OURS]
    assert records.announced == ["webhook_subscription.created"]
    shown = await subs.get("partner-a", created["id"])
    assert "signing_secret" not in shown and shown["target_url"] == created["target_url"]
    assert [s["id"] for s in (await subs.list_all("partner-a"))["subscriptions"]] == [created["id"]]


async def test_a_key_is_its_partner_and_an_unknown_one_is_401():
    subs, _ = world()
    assert await subs.partner("key-a") == "partner-a"
    await refused(subs.partner("key-unknown"), errors.UNAUTHORIZED)


@pytest.mark.parametrize(
    ("fields", "entry", "needle"),
    [
        ({"target_url": None}, errors.MISSING_FIELD, "target_url"),
        ({"subscribed_events": None}, errors.MISSING_FIELD, "subscribed_events"),
        ({"target_url": 5}, errors.BAD_VALUE, "target_url must be a string"),
        ({"target_url": "http://hooks.example.com/in"}, errors.BAD_VALUE, "https"),
        ({"subscribed_events": []}, errors.BAD_VALUE, "non-empty array"),
        ({"subscribed_events": ["card.exploded"]}, errors.BAD_VALUE, "unknown event type"),
        ({"phone_numbers": "+15550001001"}, errors.BAD_VALUE, "phone_numbers must be an array"),
        ({"phone_numbers": ["555-0100"]}, errors.BAD_PHONE, "E.164"),
    ],
)
async def test_bad_fields_are_refused_from_the_catalogue_and_nothing_is_stored(fields, entry, needle):
    subs, records = world()
    assert needle in await refused(subs.create("partner-a", body(**fields)), entry)
    assert records.subs == {} and records.announced == []


@pytest.mark.parametrize(
    "target",
    [
        "https://127.0.0.1/in",  # a literal the policy refuses
        "https://[::1]/in",
        "https://169.254.169.254/latest",
        "https://rebind.example.com/in",  # one private address among public ones refuses them all
    ],
)
async def test_a_target_on_a_private_address_is_refused(target):
    subs, records = world()
    assert "non-public address" in await refused(subs.create("partner-a", body(target_url=target)))
    assert records.subs == {}


async def test_a_name_that_does_not_resolve_now_is_accepted():
    # Not provably wrong: each delivery attempt checks the address again.
    subs, _ = world()
    created = await subs.create("partner-a", body(target_url="https://later.example.com/in"))
    assert created["target_url"] == "https://later.example.com/in"


async def test_a_partner_never_sees_or_touches_anothers_subscription():
    subs, records = world()
    theirs = await subs.create("partner-b", body())
    await refused(subs.get("partner-a", theirs["id"]), errors.NOT_FOUND)
    await refused(subs.update("partner-a", theirs["id"], {"is_active": False}), errors.NOT_FOUND)
    await refused(subs.delete("partner-a", theirs["id"]), errors.NOT_FOUND)
    assert (await subs.list_all("partner-a"))["subscriptions"] == []
    assert records.subs[theirs["id"]].is_active is True


async def test_another_partners_line_is_403():
    subs, records = world()
    await refused(subs.create("partner-a", body(phone_numbers=[OURS, THEIRS])), errors.FORBIDDEN)
    assert records.subs == {}


async def test_an_update_announces_each_kind_of_change_and_keeps_the_secret():
    subs, records = world()
    created = await subs.create("partner-a", body())
    secret = records.subs[created["id"]].signing_secret
    updated = await subs.update(
        "partner-a", created["id"], {"subscribed_events": ["contact_card.deleted"], "is_active": False}
    )
    assert updated["subscribed_events"] == ["contact_card.deleted"] and updated["is_active"] is False
    assert records.announced == [
        "webhook_subscription.created",
        "webhook_subscription.events.updated",
        "webhook_subscription.disabled",
    ]
    assert records.subs[created["id"]].signing_secret == secret
    await refused(subs.update("partner-a", created["id"], {"is_active": "no"}))


async def test_one_target_per_partner_unless_the_sandbox_replaces_it():
    subs, _ = world()
    await subs.create("partner-a", body())
    assert "already used" in await refused(subs.create("partner-a", body()))
    assert len((await subs.create("partner-b", body()))["id"]) > 0  # another partner may use it

    sandbox, records = world(sandbox=True)
    first = await sandbox.create("partner-a", body())
    second = await sandbox.create("partner-a", body())
    assert list(records.subs) == [second["id"]] and first["id"] != second["id"]
    assert records.announced == [
        "webhook_subscription.created",
        "webhook_subscription.deleted",
        "webhook_subscription.created",
    ]


async def test_delete_then_get_is_404():
    subs, records = world()
    created = await subs.create("partner-a", body())
    await subs.delete("partner-a", created["id"])
    await refused(subs.get("partner-a", created["id"]), errors.NOT_FOUND)
    assert records.announced[-1] == "webhook_subscription.deleted"


async def test_a_database_that_does_not_answer_is_503_with_retry_after():
    subs, records = world()
    records.down = True
    with pytest.raises(ApiError) as caught:
        await subs.list_all("partner-a")
    assert caught.value.error is errors.DATABASE_UNAVAILABLE
    assert caught.value.headers["retry-after"] == "1"
