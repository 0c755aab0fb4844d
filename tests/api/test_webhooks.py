"""Webhooks through the official SDK: the subscription API, and deliveries to a receiver
on 127.0.0.1 verified with the SDK's own `webhooks.unwrap` (and, with
`CONTACTCARD_TEST_EXAMPLES=1`, with docs/webhooks.md's Go `verify`)."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import linq
import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import WebhookVerificationError

from tests.api.test_openapi import check
from tests.conftest import ADMIN_TOKEN, Partner, RunningServer, make_partner, start_server
from tests.support.databases import own_database
from tests.support.node import node_sdk_folder
from tests.support.receiver import Receiver

CARD_EVENTS = ["contact_card.created", "contact_card.updated", "contact_card.deleted"]
# Seconds, so that a retried delivery arrives within a test.
FAST = {
    "image_allow_private": True,
    "write_budget": 0,
    "webhook_retry_delays": "0.2,0.2,0.2",
    "webhook_poll_interval": 0.1,
    "webhook_attempt_timeout": 2.0,
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture(scope="module")
def hooks_server(backend, postgres_url, image_host, tmp_path_factory) -> Iterator[RunningServer]:
    """A server with a database of its own: the delivery workers of every server sharing a
    database claim its deliveries, and the session's other servers refuse private targets."""
    settings = {**FAST, "image_allowed_hosts": image_host.host_port}
    with own_database(backend, postgres_url) as url:
        if url:
            settings["database_url"] = url
        server = start_server(settings, tmp_path_factory.mktemp("hooks"))
        yield server
        server.stop()


@pytest.fixture
def hooks(hooks_server) -> Partner:
    return make_partner(hooks_server)


def subscribe(partner: Partner, receiver: Receiver, **fields) -> tuple[str, str, str]:
    """(subscription id, secret, receiver path) of a new subscription to card events."""
    path = receiver.new_path()
    fields.setdefault("subscribed_events", CARD_EVENTS)
    created = partner.client().webhook_subscriptions.create(target_url=f"{receiver.base_url}{path}", **fields)
    return created.id, created.signing_secret, path


def unwrap(partner: Partner, secret: str, delivery) -> dict:
    """The body, once the SDK verified its signature (it raises otherwise)."""
    partner.client().webhooks.unwrap(delivery.body, headers=delivery.headers, key=secret)
    return json.loads(delivery.body)


# --- the subscription API -----------------------------------------------------------


def test_create_get_list_update_delete(hooks, receiver):
    client = hooks.client()
    target = f"{receiver.base_url}{receiver.new_path()}"
    created = client.webhook_subscriptions.create(
        target_url=target, subscribed_events=["contact_card.created"], phone_numbers=[hooks.lines[0]]
    )
    assert created.signing_secret.startswith("whsec_")
    assert len(__import__("base64").b64decode(created.signing_secret[6:])) >= 24
    assert (created.target_url, created.subscribed_events, created.phone_numbers, created.is_active) == (
        target,
        ["contact_card.created"],
        [hooks.lines[0]],
        True,
    )
    # The secret is shown once: never by get or list.
    raw = client.webhook_subscriptions.with_raw_response.retrieve(created.id).json()
    assert "signing_secret" not in raw and raw["id"] == created.id
    listed = client.webhook_subscriptions.list().subscriptions
    assert [s.id for s in listed] == [created.id]
    assert "signing_secret" not in client.webhook_subscriptions.with_raw_response.list().text()

    updated = client.webhook_subscriptions.update(
        created.id, is_active=False, phone_numbers=[], subscribed_events=CARD_EVENTS
    )
    assert (updated.is_active, updated.phone_numbers, updated.subscribed_events) == (False, None, CARD_EVENTS)
    assert updated.updated_at >= created.updated_at
    again = client.webhook_subscriptions.retrieve(created.id)
    assert (again.is_active, again.phone_numbers) == (False, None)

    assert client.webhook_subscriptions.delete(created.id) is None
    with pytest.raises(linq.NotFoundError) as caught:
        client.webhook_subscriptions.retrieve(created.id)
    assert caught.value.code == 2001
    assert client.webhook_subscriptions.list().subscriptions == []


def test_another_partners_subscription_is_not_found(hooks, receiver):
    subscription_id, _, _ = subscribe(hooks, receiver)
    stranger = make_partner(hooks.server).client().webhook_subscriptions
    for call in (
        lambda: stranger.retrieve(subscription_id),
        lambda: stranger.update(subscription_id, is_active=False),
        lambda: stranger.delete(subscription_id),
    ):
        with pytest.raises(linq.NotFoundError) as caught:
            call()
        assert caught.value.code == 2001
    assert hooks.client().webhook_subscriptions.retrieve(subscription_id).is_active is True


@pytest.mark.parametrize(
    ("fields", "error", "code"),
    [
        ({"phone_numbers": ["5551234"]}, linq.BadRequestError, 1002),
        ({"subscribed_events": ["contact_card.exploded"]}, linq.BadRequestError, 1005),
        ({"subscribed_events": []}, linq.BadRequestError, 1005),
        ({"target_url": "ftp://127.0.0.1/hook"}, linq.BadRequestError, 1005),
        ({"target_url": "https://user:pw@127.0.0.1/hook"}, linq.BadRequestError, 1005),
    ],
)
def test_bad_values_are_refused(hooks, receiver, fields, error, code):
    fields = {"target_url": f"{receiver.base_url}{receiver.new_path()}", "subscribed_events": CARD_EVENTS, **fields}
    with pytest.raises(error) as caught:
        hooks.client().webhook_subscriptions.create(**fields)
    assert caught.value.code == code
    assert hooks.client().webhook_subscriptions.list().subscriptions == []


def test_a_line_of_another_partner_is_forbidden(hooks, receiver):
    theirs = make_partner(hooks.server, lines=1).lines[0]
    with pytest.raises(linq.PermissionDeniedError) as caught:
        subscribe(hooks, receiver, phone_numbers=[hooks.lines[0], theirs])
    assert caught.value.code == 2005
    subscription_id, _, _ = subscribe(hooks, receiver)
    with pytest.raises(linq.PermissionDeniedError):
        hooks.client().webhook_subscriptions.update(subscription_id, phone_numbers=[theirs])


def test_one_subscription_per_target_url(hooks, receiver):
    _, _, path = subscribe(hooks, receiver)
    with pytest.raises(linq.BadRequestError) as caught:
        hooks.client().webhook_subscriptions.create(
            target_url=f"{receiver.base_url}{path}", subscribed_events=CARD_EVENTS
        )
    assert caught.value.code == 1005
    assert "target_url" in str(caught.value)


def test_an_unknown_key_is_401(hooks):
    bad = linq.LinqAPIV3(api_key="nope", base_url=hooks.server.partner_base, max_retries=0)
    with pytest.raises(linq.AuthenticationError):
        bad.webhook_subscriptions.list()
    with pytest.raises(linq.AuthenticationError):
        bad.webhook_events.list()


def test_event_types_are_listed(hooks):
    listed = hooks.client().webhook_events.list()
    assert set(CARD_EVENTS) <= set(listed.events)
    assert listed.doc_url == "https://docs.linqapp.com/channel/imessage/guides/webhooks/events"


def test_private_targets_are_refused_without_the_setting(farm, backend, receiver):
    partner = make_partner(farm.get(backend))  # private hosts off (one image host allowed)
    path = receiver.new_path()
    for target in (f"{receiver.base_url}{path}", "http://169.254.169.254/latest", "https://10.0.0.1/hook"):
        with pytest.raises(linq.BadRequestError) as caught:
            partner.client().webhook_subscriptions.create(target_url=target, subscribed_events=CARD_EVENTS)
        assert caught.value.code == 1005
    partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Nobody")
    time.sleep(0.5)
    assert receiver.on(path) == []


# --- deliveries -----------------------------------------------------------------------


def test_created_updated_deleted_are_signed_and_exact(hooks, receiver):
    subscription_id, secret, path = subscribe(hooks, receiver)
    client = hooks.client()
    phone = hooks.lines[0]
    client.contact_card.create(phone_number=phone, first_name="Ada", last_name="Lovelace")
    created = unwrap(hooks, secret, receiver.wait(path, 1)[0])
    assert created["event_type"] == "contact_card.created"
    assert (created["api_version"], created["partner_id"]) == ("v3", hooks.id)
    assert created["webhook_version"] == created["created_at"][:10]  # no ?version=: the creation date
    data = created["data"]
    assert (data["phone_number"], data["actor"], data["origin"]) == (phone, {"type": "api"}, "api")
    card = data["contact_card"]
    assert (card["first_name"], card["last_name"], card["image_url"]) == ("Ada", "Lovelace", None)
    assert "change" not in data

    # Same values: nothing changes, nothing is sent. Then one field changes.
    client.contact_card.update(phone_number=phone, first_name="Ada")
    client.contact_card.update(phone_number=phone, last_name="Byron")
    second = receiver.wait(path, 2)[1]
    updated = unwrap(hooks, secret, second)
    assert updated["event_type"] == "contact_card.updated"
    assert updated["data"]["change"] == {"last_name": {"from": "Lovelace", "to": "Byron"}}
    assert updated["data"]["contact_card"]["id"] == card["id"]  # the card's stable id
    assert updated["event_id"] != created["event_id"]
    headers = second.headers
    assert headers["webhook-id"] == updated["event_id"]
    assert (headers["x-webhook-event"], headers["x-webhook-subscription-id"]) == (
        "contact_card.updated",
        subscription_id,
    )

    assert hooks.server.admin("DELETE", f"/lines/{phone}").status_code == 204
    deleted = unwrap(hooks, secret, receiver.wait(path, 3)[2])
    assert deleted["event_type"] == "contact_card.deleted"
    assert (deleted["data"]["actor"], deleted["data"]["origin"]) == ({"type": "system"}, "linq")
    assert deleted["data"]["contact_card"] == {
        "id": card["id"],
        "first_name": "Ada",
        "last_name": "Byron",
        "image_url": None,
    }
    time.sleep(0.5)
    assert len(receiver.on(path)) == 3  # the repeated PATCH made no event


def test_unwrap_refuses_a_tampered_body_or_a_wrong_key(hooks, receiver):
    _, secret, path = subscribe(hooks, receiver)
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Tamper")
    delivery = receiver.wait(path, 1)[0]
    webhooks = hooks.client().webhooks
    with pytest.raises(WebhookVerificationError):
        webhooks.unwrap(delivery.body.replace("Tamper", "Temper"), headers=delivery.headers, key=secret)
    other_secret = subscribe(hooks, receiver)[1]
    with pytest.raises(WebhookVerificationError):
        webhooks.unwrap(delivery.body, headers=delivery.headers, key=other_secret)


def test_filters_by_line_event_type_and_is_active(hooks, receiver):
    _, _, by_line = subscribe(hooks, receiver, phone_numbers=[hooks.lines[1]])
    _, _, only_updates = subscribe(hooks, receiver, subscribed_events=["contact_card.updated"])
    off_id, _, switched_off = subscribe(hooks, receiver)
    hooks.client().webhook_subscriptions.update(off_id, is_active=False)
    client = hooks.client()
    client.contact_card.create(phone_number=hooks.lines[0], first_name="Zero")
    client.contact_card.create(phone_number=hooks.lines[1], first_name="One")
    client.contact_card.update(phone_number=hooks.lines[0], first_name="Zero again")
    got = receiver.wait(by_line, 1)
    updates = receiver.wait(only_updates, 1)
    time.sleep(0.5)
    assert [json.loads(r.body)["data"]["phone_number"] for r in receiver.on(by_line)] == [hooks.lines[1]]
    assert [json.loads(r.body)["event_type"] for r in receiver.on(only_updates)] == ["contact_card.updated"]
    assert json.loads(updates[0].body)["data"]["phone_number"] == hooks.lines[0]
    assert receiver.on(switched_off) == []
    assert len(got) == 1


def test_version_from_the_target_url(hooks, receiver):
    path = receiver.new_path()
    created = hooks.client().webhook_subscriptions.create(
        target_url=f"{receiver.base_url}{path}?version=2026-02-03", subscribed_events=CARD_EVENTS
    )
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Versioned")
    body = unwrap(hooks, created.signing_secret, receiver.wait(path, 1)[0])
    assert body["webhook_version"] == "2026-02-03"


@pytest.mark.parametrize("failure", [500, 503, 429])
def test_a_failed_delivery_is_retried_with_the_same_body(hooks, receiver, failure):
    _, secret, path = subscribe(hooks, receiver)
    receiver.answer(path, failure, failure)
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Retry")
    attempts = receiver.wait(path, 3)
    assert len({a.body for a in attempts}) == 1
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    for attempt in attempts:
        unwrap(hooks, secret, attempt)  # each attempt is signed afresh and verifies
    assert attempts[1].at - attempts[0].at >= 0.1  # backed off, not hammered
    time.sleep(0.8)
    assert len(receiver.on(path)) == 3  # delivered on the third: no more


@pytest.mark.parametrize("final", [400, 404, 410])
def test_a_client_error_is_final(hooks, receiver, final):
    _, _, path = subscribe(hooks, receiver)
    receiver.answer(path, final)
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Final")
    receiver.wait(path, 1)
    time.sleep(1.0)  # five retry delays
    assert len(receiver.on(path)) == 1


def test_an_update_never_arrives_before_its_created(hooks, receiver):
    # The server's guarantee: at one subscription, an event about a line is not attempted
    # before the line's earlier events are delivered or given up.
    _, secret, path = subscribe(hooks, receiver)
    receiver.answer(path, 503)  # the created fails once; its retry is 0.2 s away
    client = hooks.client()
    phone = hooks.lines[0]
    client.contact_card.create(phone_number=phone, first_name="First")
    receiver.wait(path, 1)
    for name in ("Second", "Third"):  # due at once, while the created waits for its retry
        client.contact_card.update(phone_number=phone, first_name=name)
    arrived = [unwrap(hooks, secret, a) for a in receiver.wait(path, 4)]
    assert [(b["event_type"], b["data"]["contact_card"]["first_name"]) for b in arrived] == [
        ("contact_card.created", "First"),
        ("contact_card.created", "First"),
        ("contact_card.updated", "Second"),
        ("contact_card.updated", "Third"),
    ]


def test_a_redirect_is_not_followed(hooks, receiver):
    _, _, path = subscribe(hooks, receiver)
    elsewhere = receiver.new_path()
    receiver.answer(path, (302, {"location": f"{receiver.base_url}{elsewhere}"}))
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Redirected")
    attempts = receiver.wait(path, 2)  # the 3xx failed the attempt; the retry got a 200
    assert attempts[0].headers["webhook-id"] == attempts[1].headers["webhook-id"]
    time.sleep(0.5)
    assert receiver.on(elsewhere) == []


def test_retries_stop_after_the_schedule(hooks, receiver):
    _, _, path = subscribe(hooks, receiver)
    receiver.answer(path, *([500] * 10))
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Gone")
    receiver.wait(path, 4)  # the first attempt and three retries
    time.sleep(1.0)
    assert len(receiver.on(path)) == 4


def test_answers_match_the_openapi_document(hooks, receiver):
    document = httpx.get(f"{hooks.server.base_url}/openapi.json").json()
    theirs = make_partner(hooks.server, lines=1)
    seen: set[tuple[str, int]] = set()
    for prefix in ("/v3", "/api/partner/v3"):
        collection, events = f"{prefix}/webhook-subscriptions", f"{prefix}/webhook-events"
        item = f"{collection}/{{subscription_id}}"
        with hooks.http() as http:
            target = f"{receiver.base_url}{receiver.new_path()}"
            created = http.post(collection, json={"target_url": target, "subscribed_events": CARD_EVENTS})
            sid = created.json()["id"]
            answers = [
                (created, collection),
                (http.post(collection, json={"target_url": target, "subscribed_events": CARD_EVENTS}), collection),
                (http.post(collection, json={"subscribed_events": CARD_EVENTS}), collection),
                (http.post(collection, content=b"{", headers={"content-type": "application/json"}), collection),
                (
                    http.post(
                        collection,
                        json={"target_url": target + "x", "subscribed_events": CARD_EVENTS, "phone_numbers": ["1"]},
                    ),
                    collection,
                ),
                (
                    http.post(
                        collection,
                        json={
                            "target_url": target + "y",
                            "subscribed_events": CARD_EVENTS,
                            "phone_numbers": theirs.lines,
                        },
                    ),
                    collection,
                ),
                (http.get(collection), collection),
                (http.get(f"{collection}/{sid}"), item),
                (http.get(f"{collection}/nope"), item),
                (http.put(f"{collection}/{sid}", json={"is_active": "yes"}), item),
                (http.put(f"{collection}/{sid}", json={"is_active": False}), item),
                (http.put(f"{collection}/{sid}", json={"phone_numbers": theirs.lines}), item),
                (http.put(f"{collection}/nope", json={}), item),
                (http.get(events), events),
                (http.delete(f"{collection}/{sid}"), item),
                (http.delete(f"{collection}/{sid}"), item),
                (httpx.get(f"{hooks.server.base_url}{collection}"), collection),
            ]
        for response, path in answers:
            check(document, response, path)
            seen.add((response.request.method, response.status_code))
    assert seen >= {
        ("POST", 201),
        ("POST", 400),
        ("POST", 403),
        ("GET", 200),
        ("GET", 401),
        ("GET", 404),
        ("PUT", 200),
        ("PUT", 400),
        ("PUT", 403),
        ("PUT", 404),
        ("DELETE", 204),
        ("DELETE", 404),
    }


def test_operators_see_deliveries_and_send_one_again(hooks, receiver):
    subscription_id, _, path = subscribe(hooks, receiver)
    receiver.answer(path, 400)
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Again")
    event_id = receiver.wait(path, 1)[0].headers["webhook-id"]
    admin = hooks.server.admin

    def deliveries() -> list[dict]:
        listed = admin("GET", "/webhook-deliveries", params={"subscription_id": subscription_id})
        assert listed.status_code == 200, listed.text
        return listed.json()

    deadline = time.monotonic() + 10
    while deliveries()[0]["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)  # the attempt's result is recorded just after the receiver answered
    (failed,) = deliveries()
    assert (failed["event_id"], failed["status"], failed["attempts"], failed["last_status"]) == (
        event_id,
        "failed",
        1,
        400,
    )
    assert failed["next_attempt_at"] is None and failed["last_latency_ms"] > 0
    by_event = admin("GET", "/webhook-deliveries", params={"event_id": event_id}).json()
    assert [d["subscription_id"] for d in by_event] == [subscription_id]

    again = admin("POST", f"/webhook-deliveries/{event_id}/{subscription_id}/redeliver")
    assert again.status_code == 200 and again.json()["status"] == "pending"
    second = receiver.wait(path, 2)[1]
    assert second.headers["webhook-id"] == event_id
    deadline = time.monotonic() + 10
    while deliveries()[0]["status"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert deliveries()[0]["status"] == "delivered"
    assert admin("POST", f"/webhook-deliveries/{event_id}/nope/redeliver").status_code == 404


def test_listen_prints_verified_deliveries_and_forwards_them(hooks, receiver):
    path = receiver.new_path()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="200")
    command = [sys.executable, "-m", "contactcard", "webhooks", "listen", "--key", hooks.key]
    command += ["--server", hooks.server.base_url, "--forward-to", f"{receiver.base_url}{path}"]
    listen = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in listen.stdout], daemon=True).start()

    def next_line() -> str:
        return lines.get(timeout=15)

    try:
        assert next_line().startswith("Ready: subscription ")
        (subscription,) = hooks.client().webhook_subscriptions.list().subscriptions
        hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Listened", last_name="To")
        shown = next_line()
        assert "contact_card.created" in shown and hooks.lines[0] in shown and "'Listened To'" in shown
        assert next_line().strip() == "forwarded: 200"
        (forwarded,) = receiver.wait(path, 1)
        assert json.loads(forwarded.body)["data"]["contact_card"]["first_name"] == "Listened"
        assert forwarded.headers["x-webhook-subscription-id"] == subscription.id
    finally:
        listen.send_signal(signal.SIGINT)
        listen.wait(15)
    assert hooks.client().webhook_subscriptions.list().subscriptions == []


def _delivery(hooks: Partner, subscription_id: str, done: Callable[[dict], bool]) -> dict:
    """The subscription's one delivery once `done` holds for it (the admin API's view)."""
    deadline = time.monotonic() + 15
    while True:
        (found,) = hooks.server.admin("GET", "/webhook-deliveries", params={"subscription_id": subscription_id}).json()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_receiver_slower_than_the_deadline_is_retried(hooks, receiver):
    subscription_id, _, path = subscribe(hooks, receiver)
    receiver.answer(path, (200, {}, 3.0))  # the attempt's deadline is 2 s
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Slow")
    attempts = receiver.wait(path, 2)
    assert attempts[0].headers["webhook-id"] == attempts[1].headers["webhook-id"]
    found = _delivery(hooks, subscription_id, lambda d: d["status"] == "delivered")
    assert (found["status"], found["attempts"]) == ("delivered", 2)


def test_a_receiver_that_is_not_there_is_retried_then_given_up(hooks, receiver):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        target = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
        created = hooks.client().webhook_subscriptions.create(target_url=target, subscribed_events=CARD_EVENTS)
        hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Nobody home")
        found = _delivery(hooks, created.id, lambda d: d["status"] == "failed")
    finally:
        closed.close()
    assert (found["status"], found["attempts"], found["last_status"]) == ("failed", 4, None)
    assert found["last_error"] == "could not connect"


def test_list_is_partner_scoped_and_a_put_is_checked_like_a_create(hooks, receiver):
    subscription_id, secret, old_path = subscribe(hooks, receiver)
    _, _, taken_path = subscribe(hooks, receiver)
    stranger = make_partner(hooks.server)
    assert stranger.client().webhook_subscriptions.list().subscriptions == []
    subscriptions = hooks.client().webhook_subscriptions
    for target in ("ftp://127.0.0.1/x", f"{receiver.base_url}{taken_path}"):
        with pytest.raises(linq.BadRequestError) as caught:
            subscriptions.update(subscription_id, target_url=target)
        assert caught.value.code == 1005
    with pytest.raises(linq.BadRequestError) as caught:
        subscriptions.update(subscription_id, subscribed_events=["contact_card.exploded"])
    assert caught.value.code == 1005
    with pytest.raises(linq.BadRequestError) as caught:
        subscriptions.update(subscription_id, phone_numbers=["not a number"])
    assert caught.value.code == 1002

    # A new target gets the next deliveries, with the version its URL asks for.
    new_path = receiver.new_path()
    moved = subscriptions.update(subscription_id, target_url=f"{receiver.base_url}{new_path}?version=2026-02-03")
    assert moved.target_url.endswith("?version=2026-02-03")
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Moved")
    body = unwrap(hooks, secret, receiver.wait(new_path, 1)[0])  # the secret did not change
    assert body["webhook_version"] == "2026-02-03"
    assert receiver.on(old_path) == []


SUBSCRIPTION_EVENTS = [
    "webhook_subscription.created",
    "webhook_subscription.deleted",
    "webhook_subscription.target_url_changed",
    "webhook_subscription.enabled",
    "webhook_subscription.disabled",
    "webhook_subscription.events.updated",
    "webhook_subscription.phone_numbers.updated",
]


def test_changes_to_subscriptions_are_events_too(hooks, receiver):
    # A line filter does not hold these back: they are about no line.
    watcher_id, secret, path = subscribe(
        hooks, receiver, subscribed_events=SUBSCRIPTION_EVENTS, phone_numbers=[hooks.lines[0]]
    )
    own = unwrap(hooks, secret, receiver.wait(path, 1)[0])  # its own creation, as on the hosted API
    assert own["event_type"] == "webhook_subscription.created"
    assert own["data"]["webhook_subscription"]["id"] == watcher_id
    assert "phone_number" not in own["data"] and "contact_card" not in own["data"]

    subscriptions = hooks.client().webhook_subscriptions
    watched_id, _, _ = subscribe(hooks, receiver)
    moved_to = f"{receiver.base_url}{receiver.new_path()}"
    subscriptions.update(watched_id, target_url=moved_to, is_active=False)
    subscriptions.update(watched_id, is_active=True, subscribed_events=["contact_card.updated"])
    subscriptions.delete(watched_id)
    bodies = [unwrap(hooks, secret, d) for d in receiver.wait(path, 7)[1:]]
    assert sorted(b["event_type"] for b in bodies) == sorted(
        [
            "webhook_subscription.created",
            "webhook_subscription.target_url_changed",
            "webhook_subscription.disabled",
            "webhook_subscription.enabled",
            "webhook_subscription.events.updated",
            "webhook_subscription.deleted",
        ]
    )
    assert {b["data"]["webhook_subscription"]["id"] for b in bodies} == {watched_id}
    moved = next(b for b in bodies if b["event_type"] == "webhook_subscription.target_url_changed")
    assert moved["data"]["change"]["to"] == moved_to
    updated = next(b for b in bodies if b["event_type"] == "webhook_subscription.events.updated")
    assert updated["data"]["change"] == {"from": CARD_EVENTS, "to": ["contact_card.updated"]}
    time.sleep(0.5)
    assert len(receiver.on(path)) == 7


# --- metrics --------------------------------------------------------------------------


def _attempts_counted(server: RunningServer) -> dict[str, float]:
    answer = httpx.get(f"{server.base_url}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    counted: dict[str, float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "contactcard_webhook_attempts_total":
                counted[sample.labels["outcome"]] = sample.value
    return counted


def test_attempts_are_counted_in_the_metrics_by_outcome(hooks_server, hooks, receiver):
    before = _attempts_counted(hooks_server)
    _, _, path = subscribe(hooks, receiver)
    receiver.answer(path, 503)  # one retry, then delivered
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Counted")
    receiver.wait(path, 2)
    deadline = time.monotonic() + 10
    while True:  # the attempt is counted once its outcome is stored, just after the answer
        after = _attempts_counted(hooks_server)
        grew = {outcome: after.get(outcome, 0) - before.get(outcome, 0) for outcome in ("retrying", "delivered")}
        if grew == {"retrying": 1, "delivered": 1} or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert grew == {"retrying": 1, "delivered": 1}, after


# --- the TypeScript SDK ---------------------------------------------------------------


def genuine_tampered_and_wrong_key(hooks, receiver) -> list[dict]:
    """A real delivery as received, the same with its body changed (Ada -> Eve), and the
    same with a wrong key: what each example's verifier must accept, refuse, refuse."""
    _, secret, path = subscribe(hooks, receiver)
    hooks.client().contact_card.create(phone_number=hooks.lines[0], first_name="Ada")
    delivery = receiver.wait(path, 1)[0]
    return [
        {"body": delivery.body, "headers": delivery.headers, "key": secret},
        {"body": delivery.body.replace("Ada", "Eve"), "headers": delivery.headers, "key": secret},
        {"body": delivery.body, "headers": delivery.headers, "key": "whsec_" + "A" * 32},
    ]


NODE_CHECKS = Path(__file__).resolve().parent.parent / "node"


@pytest.fixture(scope="module")
def node_sdk(tmp_path_factory) -> Path:
    """A folder with `@linqapp/sdk` installed from the npm registry, and the check scripts."""
    return node_sdk_folder(tmp_path_factory.mktemp("node-sdk"))


def test_the_typescript_sdk_unwraps_deliveries_and_refuses_a_forgery(hooks, receiver, node_sdk):
    checks = genuine_tampered_and_wrong_key(hooks, receiver)
    run = subprocess.run(
        ["node", "unwrap.mjs"], cwd=node_sdk, input=json.dumps(checks), capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    verified, tampered, wrong_key = run.stdout.splitlines()
    assert verified == "contact_card.created"
    assert tampered.startswith("refused:") and wrong_key.startswith("refused:"), run.stdout


# --- the Go example of docs/webhooks.md ------------------------------------------------

WEBHOOKS_DOC = Path(__file__).resolve().parent.parent.parent / "docs" / "webhooks.md"
# The example's own imports (the page shows the function alone), plus what `main` needs to
# read the deliveries.
GO_IMPORTS = [
    "crypto/hmac",
    "crypto/sha256",
    "encoding/base64",
    "encoding/json",
    "fmt",
    "math",
    "net/http",
    "os",
    "strconv",
    "strings",
    "time",
]
# Input (stdin): [{"body", "headers", "key"}, ...]; output: one line a delivery, "ok" or
# "refused". The headers go through `Set`, as net/http hands a handler canonical names.
GO_MAIN = """
func main() {
	var deliveries []struct {
		Body    string            `json:"body"`
		Headers map[string]string `json:"headers"`
		Key     string            `json:"key"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&deliveries); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, d := range deliveries {
		h := http.Header{}
		for name, value := range d.Headers {
			h.Set(name, value)
		}
		if verify(d.Key, h, []byte(d.Body)) {
			fmt.Println("ok")
		} else {
			fmt.Println("refused")
		}
	}
}
"""


def go_example() -> str:
    """The ```go block after the line starting with **Go**, as the page shows it."""
    found = re.search(r"^\*\*Go\*\*.*?^```go\n(.*?)^```$", WEBHOOKS_DOC.read_text(), re.M | re.S)
    assert found, f"no ```go block after **Go** in {WEBHOOKS_DOC.name}"
    return found.group(1)


@pytest.fixture(scope="module")
def go_verify(tmp_path_factory) -> Path:
    """docs/webhooks.md's `verify`, verbatim, built into a program by the local toolchain.
    Offline: the example uses the standard library only, so nothing is fetched.

    Built once per run: the program does not depend on the backend, and a cold build costs
    about ten seconds of both cores. The folder is the run's own (beside every xdist
    worker's temporary folder), and a lock on it makes the other workers wait and reuse it."""
    if shutil.which("go") is None:
        pytest.fail("go is needed to check the Go example of docs/webhooks.md (Debian: apt-get install golang-go)")
    work = tmp_path_factory.getbasetemp().parent / "go-verify"
    work.mkdir(exist_ok=True)
    program = work / "verify"
    with (work / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not program.exists():
            _go_build(work, program)
    return program


def _go_build(work: Path, program: Path) -> None:
    imports = "".join(f'\t"{name}"\n' for name in GO_IMPORTS)
    (work / "main.go").write_text(f"package main\n\nimport (\n{imports})\n\n{go_example()}{GO_MAIN}")
    (work / "go.mod").write_text("module verify\n\ngo 1.19\n")
    env = {
        **os.environ,
        "GO111MODULE": "on",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",  # a newer go would otherwise try to download another toolchain
        "CGO_ENABLED": "0",  # net/http without a C compiler
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
    }
    # Built under another name and renamed: a worker that finds `program` finds it whole.
    build = subprocess.run(
        ["go", "build", "-o", str(work / "verify.part"), "."],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (work / "verify.part").rename(program)


@pytest.mark.skipif(
    os.environ.get("CONTACTCARD_TEST_EXAMPLES") != "1",
    reason="set CONTACTCARD_TEST_EXAMPLES=1 (needs a Go toolchain)",
)
def test_the_go_example_verifies_deliveries_and_refuses_a_forgery(hooks, receiver, go_verify):
    checks = genuine_tampered_and_wrong_key(hooks, receiver)
    run = subprocess.run([str(go_verify)], input=json.dumps(checks), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["ok", "refused", "refused"], run.stdout
