"""Webhook targets on a machine without DNS: a name that does not resolve is accepted at
creation, each attempt fails as a connection failure and is retried, and the event is
delivered once the name resolves; the address rules still run at every attempt.

DNS is the one fake here, behind the server's resolver seam: a table of names that the
test fills in. The receiver is real, on 127.0.0.1; the retries are made due by moving the
server's test clock (admin API), not by waiting.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import linq
import pytest

from tests.conftest import Partner, RunningServer, make_partner, start_server
from tests.support.databases import own_database
from tests.support.receiver import Receiver

RECEIVER_HOST = "hooks.partner.example"  # allowlisted: http and a private address are fine for it
REBINDING_HOST = "rebind.partner.example"  # not allowlisted: public addresses only
RETRY_DELAY_S = 300  # longer than any test: a retry runs only when the clock is moved


class TableDns:
    """Names to addresses, filled in by the test; a name not in the table does not resolve."""

    def __init__(self) -> None:
        self._table: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        with self._lock:
            self.asked.append(host)
            found = self._table.get(host)
        if found is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return found

    def add(self, host: str, *addresses: str) -> None:
        with self._lock:
            self._table[host] = list(addresses)


@pytest.fixture(scope="module")
def dns(backend) -> TableDns:
    return TableDns()  # one per server (per backend)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture(scope="module")
def offline_server(backend, postgres_url, tmp_path_factory, dns) -> Iterator[RunningServer]:
    settings = {
        "image_allowed_hosts": RECEIVER_HOST,
        "write_budget": 0,
        "webhook_retry_delays": ",".join([str(RETRY_DELAY_S)] * 4),
        "webhook_poll_interval": 0.1,
        "webhook_attempt_timeout": 2.0,
    }
    with own_database(backend, postgres_url) as url:
        if url:
            settings["database_url"] = url
        server = start_server(settings, tmp_path_factory.mktemp("offline"), resolver=dns)
        yield server
        server.admin("DELETE", "/clock")
        server.stop()


@pytest.fixture
def offline(offline_server) -> Partner:
    return make_partner(offline_server)


def _delivery(partner: Partner, subscription_id: str, attempts: int, status: str = "pending") -> dict:
    """The subscription's one delivery once its `attempts`-th attempt is recorded."""
    deadline = time.monotonic() + 15
    while True:
        found = partner.server.admin("GET", "/webhook-deliveries", params={"subscription_id": subscription_id}).json()
        recorded = found and (found[0]["last_error"] is not None or found[0]["last_status"] is not None)
        if recorded and found[0]["attempts"] >= attempts and found[0]["status"] == status:
            return found[0]
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def _retry_now(server: RunningServer) -> None:
    assert server.admin("POST", "/clock/advance", json={"seconds": RETRY_DELAY_S * 2}).status_code == 200


def test_an_unresolvable_target_is_accepted_retried_and_delivered_once_it_resolves(offline, receiver, dns):
    path = receiver.new_path()
    port = receiver.base_url.rsplit(":", 1)[1]
    target = f"http://{RECEIVER_HOST}:{port}{path}"
    created = offline.client().webhook_subscriptions.create(
        target_url=target, subscribed_events=["contact_card.created"]
    )
    assert created.target_url == target and RECEIVER_HOST in dns.asked  # it was looked up, and failed

    offline.client().contact_card.create(phone_number=offline.lines[0], first_name="Offline")
    first = _delivery(offline, created.id, 1)
    assert (first["attempts"], first["last_status"]) == (1, None)
    assert "could not be resolved" in first["last_error"] and first["next_attempt_at"] is not None

    _retry_now(offline.server)  # still no DNS: a second failed attempt, and another retry due
    second = _delivery(offline, created.id, 2)
    assert second["attempts"] == 2 and "could not be resolved" in second["last_error"]
    assert receiver.on(path) == []

    dns.add(RECEIVER_HOST, "127.0.0.1")
    _retry_now(offline.server)
    (delivery,) = receiver.wait(path, 1)
    assert delivery.headers["host"] == f"{RECEIVER_HOST}:{port}"
    offline.client().webhooks.unwrap(delivery.body, headers=delivery.headers, key=created.signing_secret)
    assert json.loads(delivery.body)["data"]["contact_card"]["first_name"] == "Offline"
    done = _delivery(offline, created.id, 3, "delivered")
    assert (done["attempts"], done["last_status"]) == (3, 200)


def test_a_name_that_resolves_to_a_private_address_later_is_refused_at_the_attempt(offline, dns):
    target = f"https://{REBINDING_HOST}/hook"
    created = offline.client().webhook_subscriptions.create(
        target_url=target, subscribed_events=["contact_card.created"]
    )
    dns.add(REBINDING_HOST, "10.0.0.1")  # the name now points inside: no attempt may reach it
    offline.client().contact_card.create(phone_number=offline.lines[1], first_name="Rebound")
    found = _delivery(offline, created.id, 1)
    assert found["last_status"] is None and "non-public address" in found["last_error"]


def test_what_is_provably_wrong_is_refused_at_creation_naming_the_field(offline, dns):
    dns.add("inside.partner.example", "192.168.1.20")
    subscriptions = offline.client().webhook_subscriptions
    refused = {
        "http://public.partner.example/hook": "target_url must be an absolute https URL",
        "https://10.0.0.1/hook": "target_url points to a non-public address",
        "https://[::1]/hook": "target_url points to a non-public address",
        "https://inside.partner.example/hook": "target_url points to a non-public address",
        "ftp://public.partner.example/hook": "target_url must be an absolute",
    }
    for target, message in refused.items():
        with pytest.raises(linq.BadRequestError) as caught:
            subscriptions.create(target_url=target, subscribed_events=["contact_card.created"])
        assert caught.value.code == 1005 and message in caught.value.message, (target, caught.value.message)
    with pytest.raises(linq.BadRequestError) as caught:
        subscriptions.create(target_url="https://nowhere.partner.example/hook", subscribed_events=["card.exploded"])
    assert caught.value.code == 1005 and "subscribed_events" in caught.value.message
    with pytest.raises(linq.BadRequestError) as caught:
        subscriptions.create(
            target_url="https://nowhere.partner.example/hook",
            subscribed_events=["contact_card.created"],
            phone_numbers="+15550000000",  # type: ignore[arg-type]
        )
    assert caught.value.code == 1005 and "phone_numbers" in caught.value.message
    # A name that does not resolve is not provably wrong: accepted.
    created = subscriptions.create(
        target_url="https://nowhere.partner.example/hook", subscribed_events=["contact_card.created"]
    )
    assert created.target_url == "https://nowhere.partner.example/hook"
