"""Webhooks across server processes: an acknowledged change survives SIGKILL and is
delivered after the restart; two processes on one PostgreSQL database make each attempt
once between them."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from tests.support.databases import own_database
from tests.support.processes import ServerProcess, create_partner, stop_all

CARD_EVENTS = ["contact_card.created", "contact_card.updated", "contact_card.deleted"]


def webhook_env(**more: str) -> dict[str, str]:
    return {
        "CONTACTCARD_IMAGE_ALLOW_PRIVATE": "true",
        "CONTACTCARD_WRITE_BUDGET": "0",
        "CONTACTCARD_WEBHOOK_POLL_INTERVAL": "0.1",
        "CONTACTCARD_WEBHOOK_ATTEMPT_TIMEOUT": "2",
        **more,
    }


def test_killed_right_after_a_write_the_event_is_delivered_after_restart(database, tmp_path, processes, receiver):
    # Retries a second apart: the first attempt is refused (500), so only a delivery that
    # outlives the process can ever be answered 200.
    server = ServerProcess(tmp_path / "data", database, extra_env=webhook_env(CONTACTCARD_WEBHOOK_RETRY_DELAYS="1,1,1"))
    processes.append(server)
    server.start()
    partner = create_partner(server, lines=1)
    path = receiver.new_path()
    client = server.client(partner.key)
    created = client.webhook_subscriptions.create(
        target_url=f"{receiver.base_url}{path}", subscribed_events=CARD_EVENTS
    )
    receiver.answer(path, 500)
    client.contact_card.create(phone_number=partner.lines[0], first_name="Survivor")
    server.kill()  # no shutdown: whatever the worker held in memory is gone
    restarted_at = time.monotonic()
    server.start()
    attempts = receiver.wait(path, 2, timeout=30)
    assert attempts[-1].at > restarted_at
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    client = server.client(partner.key)
    client.webhooks.unwrap(attempts[-1].body, headers=attempts[-1].headers, key=created.signing_secret)
    body = json.loads(attempts[-1].body)
    assert (body["event_type"], body["data"]["contact_card"]["first_name"]) == ("contact_card.created", "Survivor")
    time.sleep(1.5)
    assert len(receiver.on(path)) == 2  # delivered once the 200 came: no more attempts


def test_two_processes_on_postgres_attempt_each_event_once(postgres_url, tmp_path, processes, receiver):
    with own_database("postgres", postgres_url) as url:
        servers = [
            ServerProcess(tmp_path / f"data{i}", url, name=f"server{i}", extra_env=webhook_env()) for i in range(2)
        ]
        processes.extend(servers)
        for server in servers:
            server.start()
        partner = create_partner(servers[0], lines=40)
        path = receiver.new_path()
        servers[0].client(partner.key).webhook_subscriptions.create(
            target_url=f"{receiver.base_url}{path}", subscribed_events=CARD_EVENTS
        )

        def write(index: int) -> None:
            server = servers[index % 2]
            server.client(partner.key).contact_card.create(phone_number=partner.lines[index], first_name=f"N{index}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(40)))
        received = receiver.wait(path, 40, timeout=30)
        time.sleep(1.5)  # time for any duplicate attempt to arrive
        received = receiver.on(path)
        ids = [r.headers["webhook-id"] for r in received]
        assert len(ids) == 40 and len(set(ids)) == 40
        assert sorted(json.loads(r.body)["data"]["phone_number"] for r in received) == sorted(partner.lines)
        stop_all(servers)
