"""`contactcard serve --open`: any key is its own partner on every partner route, any number
it touches its line; the SDKs' generated tests (cards, webhook subscriptions, webhook
events) and the seed snippets run against a fresh server with no setup, and a receiver on
loopback gets signed events with nothing set up either."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import linq
import pytest

from tests.support.node import node_sdk_folder
from tests.support.processes import free_port

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
IMAGE = "https://cdn.linqapp.com/contact-card/example.jpg"  # what the generated tests send


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def sandbox(tmp_path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "open.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "contactcard", "serve", "--open", "--ephemeral", "--port", str(port)],
            env=_env(),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_the_generated_tests_calls_run_with_no_setup(sandbox):
    base, log = sandbox
    assert "OPEN SANDBOX" in log.read_text()
    # In file order, as linq-go's contactcard_test.go: New, Get, Update, key "My API Key".
    client = linq.LinqAPIV3(api_key="My API Key", base_url=base, max_retries=0)
    created = client.contact_card.create(
        first_name="John", phone_number="+15551234567", image_url=IMAGE, last_name="Doe"
    )
    assert created.is_active is True and created.image_url.startswith(f"{base}/cdn/contact-card/")
    [got] = client.contact_card.retrieve(phone_number="+15551234567").contact_cards
    assert got.first_name == "John"
    updated = client.contact_card.update(
        phone_number="+15551234567", first_name="John", image_url=IMAGE, last_name="Doe"
    )
    assert (updated.first_name, updated.last_name) == ("John", "Doe")


def test_partners_stay_apart_between_keys(sandbox):
    base, _ = sandbox
    first = linq.LinqAPIV3(api_key="first-sandbox-key-00001", base_url=base, max_retries=0)
    second = linq.LinqAPIV3(api_key="second-sandbox-key-0002", base_url=base, max_retries=0)
    first.contact_card.create(phone_number="+15554440001", first_name="First")
    with pytest.raises(linq.PermissionDeniedError):
        second.contact_card.create(phone_number="+15554440001", first_name="Second")
    with pytest.raises(linq.PermissionDeniedError):
        second.contact_card.retrieve(phone_number="+15554440001")
    second.contact_card.create(phone_number="+15554440002", first_name="Second")
    assert [c.phone_number for c in second.contact_card.retrieve().contact_cards] == ["+15554440002"]
    assert [c.phone_number for c in first.contact_card.retrieve().contact_cards] == ["+15554440001"]
    # A request without a key is still refused.
    assert httpx.get(f"{base}/v3/contact_card").status_code == 401


def test_the_seed_snippets_run_verbatim(sandbox):
    base, _ = sandbox
    env = {**_env(), "LINQ_API_V3_BASE_URL": base, "LINQ_API_V3_API_KEY": "My API Key"}
    for snippet, expected in (("seed_retrieve.py", "[]"), ("seed_create.py", "John")):
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / snippet)], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_an_open_sandbox_refuses_to_listen_beyond_loopback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "contactcard", "serve", "--open", "--ephemeral", "--host", "0.0.0.0"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "not loopback" in done.stdout


# --- webhooks in the open sandbox -----------------------------------------------------

GENERATED_EVENTS = ["message.sent", "message.delivered", "message.read"]  # what the generated tests send
GENERATED_TARGET = "https://webhooks.example.com/linq/events"
INVENTED_ID = "b2c3d4e5-f6a7-8901-bcde-f23456789012"  # the generated tests' id, which nobody created


@pytest.fixture(scope="module")
def node_sdk(tmp_path_factory) -> Path:
    return node_sdk_folder(tmp_path_factory.mktemp("node-sdk"))


def _not_found(call) -> None:
    with pytest.raises(linq.NotFoundError) as caught:
        call()
    assert caught.value.body["code"] == 2001


def test_every_webhook_route_takes_a_key_never_seen(sandbox):
    base, _ = sandbox

    def fresh(route: str) -> linq.LinqAPIV3:  # a key whose first request is on `route`
        return linq.LinqAPIV3(api_key=f"first seen on {route}", base_url=base, max_retries=0)

    assert "contact_card.updated" in fresh("events").webhook_events.list().events
    assert fresh("list").webhook_subscriptions.list().subscriptions == []
    created = fresh("create").webhook_subscriptions.create(
        target_url=GENERATED_TARGET, subscribed_events=["contact_card.created"]
    )
    assert created.signing_secret.startswith("whsec_")
    _not_found(lambda: fresh("get").webhook_subscriptions.retrieve(INVENTED_ID))
    _not_found(lambda: fresh("update").webhook_subscriptions.update(INVENTED_ID, is_active=False))
    _not_found(lambda: fresh("delete").webhook_subscriptions.delete(INVENTED_ID))
    # The key made on a webhook route is a partner like any other: its cards work too.
    assert fresh("create").webhook_subscriptions.list().subscriptions[0].id == created.id
    fresh("create").contact_card.create(phone_number="+15554440003", first_name="Hooked")
    # Without a key, each route is still refused.
    for method, path in (
        ("GET", "/v3/webhook-events"),
        ("GET", "/v3/webhook-subscriptions"),
        ("POST", "/v3/webhook-subscriptions"),
        ("GET", f"/v3/webhook-subscriptions/{created.id}"),
        ("PUT", f"/v3/webhook-subscriptions/{created.id}"),
        ("DELETE", f"/v3/webhook-subscriptions/{created.id}"),
    ):
        assert httpx.request(method, f"{base}{path}", json={}).status_code == 401, (method, path)


def test_the_generated_webhook_calls_run_with_no_setup(sandbox):
    """The calls of the SDKs' generated webhook tests (linq-go's, linq-python's, the
    TypeScript SDK's): every create and list passes; the invented id is not found."""
    base, _ = sandbox
    client = linq.LinqAPIV3(api_key="My API Key", base_url=base, max_retries=0)
    assert client.webhook_events.list().doc_url.startswith("https://docs.linqapp.com/")
    first = client.webhook_subscriptions.create(subscribed_events=GENERATED_EVENTS, target_url=GENERATED_TARGET)
    # A second create to the same URL (the generated files make several): in the sandbox it
    # replaces the first, so that it passes and one subscription per URL still holds.
    second = client.webhook_subscriptions.create(
        subscribed_events=GENERATED_EVENTS, target_url=GENERATED_TARGET, phone_numbers=["+12025551234", "+12025559876"]
    )
    (listed,) = client.webhook_subscriptions.list().subscriptions
    assert listed.id == second.id != first.id and listed.phone_numbers == ["+12025551234", "+12025559876"]
    _not_found(lambda: client.webhook_subscriptions.retrieve(INVENTED_ID))
    _not_found(
        lambda: client.webhook_subscriptions.update(
            subscription_id=INVENTED_ID,
            is_active=True,
            phone_numbers=["+12025551234"],
            subscribed_events=["message.sent", "message.delivered"],
            target_url=GENERATED_TARGET,
        )
    )
    _not_found(lambda: client.webhook_subscriptions.delete(INVENTED_ID))
    # What the generated calls do on ids that exist, they do here.
    updated = client.webhook_subscriptions.update(second.id, is_active=False, phone_numbers=["+12025551234"])
    assert (updated.is_active, updated.phone_numbers) == (False, ["+12025551234"])
    assert client.webhook_subscriptions.retrieve(second.id).is_active is False
    client.webhook_subscriptions.delete(second.id)
    assert client.webhook_subscriptions.list().subscriptions == []


def test_sandbox_keys_stay_apart_on_every_webhook_route(sandbox):
    base, _ = sandbox
    first = linq.LinqAPIV3(api_key="first-sandbox-key-00001", base_url=base, max_retries=0)
    second = linq.LinqAPIV3(api_key="second-sandbox-key-0002", base_url=base, max_retries=0)
    mine = first.webhook_subscriptions.create(
        target_url=GENERATED_TARGET, subscribed_events=["contact_card.created"], phone_numbers=["+15554440011"]
    )
    assert second.webhook_subscriptions.list().subscriptions == []
    _not_found(lambda: second.webhook_subscriptions.retrieve(mine.id))
    _not_found(lambda: second.webhook_subscriptions.update(mine.id, is_active=False))
    _not_found(lambda: second.webhook_subscriptions.delete(mine.id))
    # A number the first key touched is its line: not the second key's to filter on.
    with pytest.raises(linq.PermissionDeniedError):
        second.webhook_subscriptions.create(
            target_url=GENERATED_TARGET, subscribed_events=["contact_card.created"], phone_numbers=["+15554440011"]
        )
    # The same URL is the second key's own subscription, and replaces nothing of the first's.
    theirs = second.webhook_subscriptions.create(
        target_url=GENERATED_TARGET, subscribed_events=["contact_card.created"]
    )
    assert [s.id for s in second.webhook_subscriptions.list().subscriptions] == [theirs.id]
    (kept,) = first.webhook_subscriptions.list().subscriptions
    assert (kept.id, kept.is_active) == (mine.id, True)
    _not_found(lambda: first.webhook_subscriptions.retrieve(theirs.id))


def test_the_python_sdk_receives_every_event_on_a_loopback_receiver(sandbox, receiver):
    """What a developer offline does: subscribe a realistic URL (which may not resolve) and
    a receiver of their own on loopback, with nothing set up first; every event reaches
    the local one, signed."""
    base, log = sandbox
    assert (
        "Webhook targets on loopback (http://127.0.0.1, http://localhost, http://[::1]) are allowed" in log.read_text()
    )
    client = linq.LinqAPIV3(api_key="My API Key", base_url=base, max_retries=0)
    card_events = ["contact_card.created", "contact_card.updated"]
    client.webhook_subscriptions.create(target_url=GENERATED_TARGET, subscribed_events=card_events)
    path = receiver.new_path()
    created = client.webhook_subscriptions.create(
        target_url=f"{receiver.base_url}{path}", subscribed_events=card_events
    )
    client.contact_card.create(phone_number="+15551234567", first_name="John")
    client.contact_card.update(phone_number="+15551234567", first_name="Johnny")
    deliveries = receiver.wait(path, 2)
    events = {}
    for delivery in deliveries:
        event = client.webhooks.unwrap(delivery.body, headers=delivery.headers, key=created.signing_secret)
        events[event.event_type] = json.loads(delivery.body)["data"]
    assert set(events) == set(card_events)
    assert events["contact_card.updated"]["change"] == {"first_name": {"from": "John", "to": "Johnny"}}


def test_the_typescript_sdk_runs_the_generated_calls_and_receives_a_signed_update(sandbox, receiver, node_sdk):
    base, _ = sandbox
    path = receiver.new_path()
    run = subprocess.run(
        ["node", "open_sandbox.mjs"],
        cwd=node_sdk,
        input=json.dumps({"base_url": base, "receiver_url": f"{receiver.base_url}{path}"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    ran = json.loads(run.stdout)
    answers = dict(ran["calls"])
    # Every create and list passes; the invented id is not found, as on any stateful server.
    # The second card create meets the first one's card: 409, as on the hosted API.
    assert answers == {
        "contactCard.create: only required params": "ok",
        "contactCard.create: required and optional params": "409 2014",
        "contactCard.retrieve": "ok",
        "contactCard.retrieve: unknown path": "404 2001",
        "contactCard.update: only required params": "ok",
        "contactCard.update: required and optional params": "ok",
        "webhookEvents.list": "ok",
        "webhookSubscriptions.create: only required params": "ok",
        "webhookSubscriptions.create: required and optional params": "ok",
        "webhookSubscriptions.list": "ok",
        "webhookSubscriptions.retrieve": "404 2001",
        "webhookSubscriptions.update": "404 2001",
        "webhookSubscriptions.delete": "404 2001",
    }
    (delivery,) = receiver.wait(path, 1)
    assert delivery.headers["x-webhook-subscription-id"] == ran["subscription"]["id"]
    check = [{"body": delivery.body, "headers": delivery.headers, "key": ran["subscription"]["secret"]}]
    verified = subprocess.run(
        ["node", "unwrap.mjs"], cwd=node_sdk, input=json.dumps(check), capture_output=True, text=True, timeout=60
    )
    assert verified.stdout.strip() == "contact_card.updated", verified.stdout + verified.stderr
    change = json.loads(delivery.body)["data"]["change"]
    assert change == {"first_name": {"from": "Jane", "to": "Janet"}, "last_name": {"from": None, "to": "Doe"}}


def test_webhooks_listen_works_against_the_sandbox_with_any_key(sandbox):
    base, _ = sandbox
    env = {**_env(), "COLUMNS": "200"}
    command = [sys.executable, "-m", "contactcard", "webhooks", "listen", "--key", "My API Key", "--server", base]
    listen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in listen.stdout], daemon=True).start()
    try:
        assert lines.get(timeout=30).startswith("Ready: subscription "), "listen did not subscribe"
        client = linq.LinqAPIV3(api_key="My API Key", base_url=base, max_retries=0)
        client.contact_card.create(phone_number="+15551234567", first_name="Listened")
        shown = lines.get(timeout=15)
        assert "contact_card.created" in shown and "+15551234567" in shown and "'Listened'" in shown
    finally:
        listen.send_signal(signal.SIGINT)
        listen.wait(15)


def test_the_sandbox_allows_loopback_receivers_only(sandbox):
    base, _ = sandbox
    subscriptions = linq.LinqAPIV3(api_key="My API Key", base_url=base, max_retries=0).webhook_subscriptions
    for target in ("http://127.0.0.1:3000/webhooks", "http://localhost:3000/webhooks", "http://[::1]:3000/webhooks"):
        assert subscriptions.create(target_url=target, subscribed_events=["contact_card.updated"]).target_url == target
    refused = {
        "http://webhooks.example.com/linq/events": "target_url must be an absolute https URL",
        "http://169.254.169.254/latest": "target_url must be an absolute https URL",
        "https://169.254.169.254/latest": "target_url points to a non-public address",
        "https://10.0.0.1/hook": "target_url points to a non-public address",
    }
    for target, message in refused.items():
        with pytest.raises(linq.BadRequestError) as caught:
            subscriptions.create(target_url=target, subscribed_events=["contact_card.updated"])
        assert caught.value.body["code"] == 1005 and message in caught.value.body["message"], target
