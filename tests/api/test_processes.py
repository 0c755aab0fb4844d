"""The server as separate operating-system processes: crash safety and multi-process sharing.

Each test starts `python -m contactcard serve` in subprocesses configured through
`CONTACTCARD_*` environment variables, waits for `/healthz`, and drives the processes with
the official SDK and raw httpx while reading the database directly with SQLAlchemy (the
process and database helpers are in `tests/support/processes.py`).

- A process SIGKILLed while a line's device is applying a card leaves the card whole
  and inactive; a restarted server shows it inactive and lets it be set up again.
- Two processes on one PostgreSQL database share the per-number write budget, see a
  revoked key at once, and serialise concurrent writes to one number between them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import linq
import pytest
from sqlalchemy import Engine, create_engine

from tests.support import images
from tests.support.processes import (
    NEEDS_POSTGRES,
    ProcPartner,
    ServerProcess,
    assert_clean_log,
    attempts,
    card_rows,
    create_partner,
    database_engine,
    device,
    issue_key,
    script,
)


@pytest.fixture
def engine(database_url, tmp_path) -> Iterator[Engine]:
    engine = database_engine(database_url, tmp_path / "data")
    yield engine
    engine.dispose()


def test_killed_between_store_and_apply_leaves_an_inactive_card(database_url, engine, tmp_path, processes, image_host):
    server = ServerProcess(
        tmp_path / "data",
        database_url,
        extra_env={"CONTACTCARD_IMAGE_ALLOWED_HOSTS": image_host.host_port},
    )
    processes.append(server)
    server.start()
    partner = create_partner(server, lines=1)
    phone = partner.lines[0]
    posted_image = image_host.serve(images.jpeg(colour=(10, 90, 200)))
    posted = {"phone_number": phone, "first_name": "Kill", "last_name": "Ninety-Nine", "image_url": posted_image}
    script(server, phone, apply_delay=30)

    outcome: list[BaseException | object] = []

    def post() -> None:
        try:
            outcome.append(server.client(partner.key, timeout=60).contact_card.create(**posted))
        except BaseException as exc:
            outcome.append(exc)

    poster = threading.Thread(target=post, daemon=True)
    poster.start()

    # The card is stored inactive and committed before the (30 s) device apply starts.
    # Kill only once the device has started applying (it consumes its one-shot delay as it
    # starts): killed earlier, the delay would still be scripted for the next apply, and
    # the POST after the restart would take 30 s.
    deadline = time.monotonic() + 15
    rows: list[Any] = []
    applying = False
    while time.monotonic() < deadline:
        rows = card_rows(engine, phone)
        applying = bool(rows) and device(server, phone)["apply_delay"] == 0
        if applying:
            break
        time.sleep(0.02)
    assert len(rows) == 1, f"no card row appeared while the device was applying:\n{server.log()}"
    assert applying, f"the device never started applying:\n{server.log()}"
    assert rows[0].is_active is False or rows[0].is_active == 0
    assert not outcome, f"the POST answered before the device apply finished: {outcome}"

    server.kill()
    poster.join(15)
    assert not poster.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], linq.APIConnectionError), outcome

    # The row is whole: every value is exactly the posted one, nothing half-written.
    (row,) = card_rows(engine, phone)
    assert (row.phone_number, row.first_name, row.last_name, row.image_source_url) == (
        phone,
        "Kill",
        "Ninety-Nine",
        posted_image,
    )
    cdn_prefix = f"{server.base_url}/cdn/contact-card/"
    assert (server.data_dir / "cdn" / row.image_blob).is_file()
    image_url = cdn_prefix + row.image_blob
    assert not row.is_active and not row.ever_active
    assert attempts(engine, phone) == 1
    card_id = row.id

    # Restart on the same data dir, database and port.
    server.start()
    client = server.client(partner.key)
    shown = client.contact_card.retrieve(phone_number=phone).contact_cards
    assert [(c.phone_number, c.first_name, c.last_name, c.image_url, c.is_active) for c in shown] == [
        (phone, "Kill", "Ninety-Nine", image_url, False)
    ]
    image = httpx.get(image_url, timeout=10)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert images.decode(image.content).size[0] == images.decode(image.content).size[1]
    assert device(server, phone)["applies"] == 0  # the device never finished the killed apply

    # The card can be set up again: POST is not a 409 while the card is inactive.
    created = client.contact_card.create(**posted)
    assert (created.phone_number, created.first_name, created.last_name, created.is_active) == (
        phone,
        "Kill",
        "Ninety-Nine",
        True,
    )
    assert created.image_url == image_url  # same bytes, same content address
    assert [c.is_active for c in client.contact_card.retrieve(phone_number=phone).contact_cards] == [True]
    shows = device(server, phone)
    assert (shows["first_name"], shows["last_name"], shows["image_url"], shows["applies"]) == (
        "Kill",
        "Ninety-Nine",
        image_url,
        1,
    )
    (after,) = card_rows(engine, phone)
    assert after.id == card_id and after.is_active and after.ever_active
    assert attempts(engine, phone) == 2


@pytest.fixture
def two_servers(postgres_url, tmp_path, processes) -> tuple[ServerProcess, ServerProcess]:
    if postgres_url is None:
        pytest.skip(NEEDS_POSTGRES)
    a = ServerProcess(tmp_path / "a", postgres_url, name="A")
    b = ServerProcess(tmp_path / "b", postgres_url, name="B")
    processes.extend([a, b])
    # One after the other: `serve` seeds a demo partner into an empty database.
    a.start()
    b.start()
    return a, b


def test_two_processes_share_budget_serialisation_and_revocation(two_servers, postgres_url):
    a, b = two_servers
    engine = create_engine(postgres_url)
    try:
        partner = create_partner(a, lines=2)
        _budget_is_shared(a, b, partner, engine)
        _revocation_is_seen_at_once(a, b, partner)
        _writes_are_serialised(a, b, partner, engine)
    finally:
        engine.dispose()
    for server in (a, b):
        assert server.running, f"{server.name} died:\n{server.log()}"
        assert_clean_log(server)


def _budget_is_shared(a: ServerProcess, b: ServerProcess, partner: ProcPartner, engine: Engine) -> None:
    phone = partner.lines[0]
    on_a, on_b = a.client(partner.key), b.client(partner.key)
    first = on_a.contact_card.create(phone_number=phone, first_name="One")
    assert first.is_active
    assert on_b.contact_card.update(phone_number=phone, first_name="Two").first_name == "Two"
    assert on_a.contact_card.update(phone_number=phone, first_name="Three").first_name == "Three"
    assert attempts(engine, phone) == 3

    for client in (on_b, on_a):  # the fourth call is refused whichever process gets it
        with pytest.raises(linq.RateLimitError) as caught:
            client.contact_card.update(phone_number=phone, first_name="Four")
        error = caught.value
        assert error.code == 1007
        retry_after = int(error.response.headers["retry-after"])
        assert retry_after in range(1, 601)
        assert error.response.json()["error"]["retry_after"] == retry_after
        assert error.response.headers["x-should-retry"] == "false"

    assert attempts(engine, phone) == 3  # refused calls do not count
    assert [c.first_name for c in on_b.contact_card.retrieve(phone_number=phone).contact_cards] == ["Three"]


def _revocation_is_seen_at_once(a: ServerProcess, b: ServerProcess, partner: ProcPartner) -> None:
    key, key_id = issue_key(a, partner.id)
    on_b = b.client(key)
    assert len(on_b.contact_card.retrieve().contact_cards) == 1  # B has used (and could cache) the key

    revoked = a.admin("DELETE", f"/keys/{key_id}")
    assert revoked.status_code == 204, revoked.text

    with pytest.raises(linq.AuthenticationError) as caught:
        on_b.contact_card.retrieve()
    assert caught.value.code == 2004
    with pytest.raises(linq.AuthenticationError) as caught:
        on_b.contact_card.create(phone_number=partner.lines[1], first_name="Revoked")
    assert caught.value.code == 2004
    # The partner's other key still works.
    assert len(b.client(partner.key).contact_card.retrieve().contact_cards) == 1


def _writes_are_serialised(a: ServerProcess, b: ServerProcess, partner: ProcPartner, engine: Engine) -> None:
    phone = partner.lines[1]  # fresh: no card, a whole budget of 3
    assert card_rows(engine, phone) == []
    # The first apply is slow, so any write not really queued behind it would see the
    # stored-but-inactive card and go ahead (a second POST 200, a budget overrun).
    script(a, phone, apply_delay=1.0)

    count = 20
    barrier = threading.Barrier(count)
    requests = [
        {
            "server": a if i % 2 == 0 else b,
            "method": "POST" if (i // 2) % 2 == 0 else "PATCH",
            "name": f"Racer{i:02d}",
        }
        for i in range(count)
    ]

    def fire(spec: dict) -> tuple[str, str, int, dict]:
        server: ServerProcess = spec["server"]
        headers = {"authorization": f"Bearer {partner.key}"}
        barrier.wait(10)
        if spec["method"] == "POST":
            response = httpx.post(
                f"{server.partner_base}/v3/contact_card",
                json={"phone_number": phone, "first_name": spec["name"]},
                headers=headers,
                timeout=30,
            )
        else:
            response = httpx.patch(
                f"{server.partner_base}/v3/contact_card",
                params={"phone_number": phone},
                json={"first_name": spec["name"]},
                headers=headers,
                timeout=30,
            )
        return spec["method"], spec["name"], response.status_code, response.json()

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(fire, requests))

    statuses = sorted(status for _, _, status, _ in results)
    # 404: a PATCH served before the first POST (no card yet) is a legitimate serial order.
    assert set(statuses) <= {200, 404, 409, 429, 503}, results
    succeeded = [(method, name, body) for method, name, status, body in results if status == 200]
    assert len([s for s in succeeded if s[0] == "POST"]) == 1, results  # one setup; the rest 409/429
    assert len(succeeded) in (1, 2, 3), results  # the budget of 3 held across both processes
    assert attempts(engine, phone) == len(succeeded)
    for method, _name, status, body in results:
        if status == 409:
            assert method == "POST" and body["error"]["code"] == 2014
        elif status == 429:
            assert body["error"]["code"] == 1007
        elif status == 404:
            assert method == "PATCH" and body["error"]["code"] == 2001

    rows = card_rows(engine, phone)
    assert len(rows) == 1, rows
    (row,) = rows
    requested = {spec["name"] for spec in requests}
    assert row.first_name in requested
    assert row.first_name in {name for _, name, _ in succeeded}  # the last write that was applied
    assert row.is_active
    shows = device(b, phone)
    assert (shows["first_name"], shows["applies"]) == (row.first_name, len(succeeded))
