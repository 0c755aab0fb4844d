"""Concurrent writes to one number are serialised: one card, some serial order, never a 500."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from contactcard.store.schema import cards
from tests.conftest import make_partner


async def _burst(partner, phone: str, count: int) -> list[httpx.Response]:
    headers = {"authorization": f"Bearer {partner.key}"}
    async with httpx.AsyncClient(base_url=partner.server.base_url, headers=headers, timeout=60) as http:

        async def write(n: int) -> httpx.Response:
            body = {"first_name": f"F{n}", "last_name": f"L{n}"}
            if n % 2:
                return await http.post("/v3/contact_card", json={"phone_number": phone, **body})
            return await http.patch("/v3/contact_card", params={"phone_number": phone}, json=body)

        return await asyncio.gather(*(write(n) for n in range(count)))


def _card_rows(server, phone: str) -> int:
    engine = create_engine(server.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(cards).where(cards.c.phone_number == phone)
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.anyio
@pytest.mark.parametrize("budget", [0, 3])
async def test_a_burst_of_writes_to_one_number(farm, backend, budget):
    server = farm.get(backend, write_budget=budget)
    partner = make_partner(server, lines=1)
    phone = partner.lines[0]
    responses = await _burst(partner, phone, 100)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 404, 409, 429}, statuses
    ok = [r.json() for r in responses if r.status_code == 200]
    assert ok, "some write must succeed"
    # Exactly one POST set the card up; every later POST met an active card (409 beats 429).
    posts = [s for n, s in enumerate(statuses) if n % 2]
    assert posts.count(200) == 1 and posts.count(429) == 0
    if budget:
        assert len(ok) == budget
    assert _card_rows(server, phone) == 1
    final = partner.client().contact_card.retrieve(phone_number=phone).contact_cards[0]
    stored = {"first_name": final.first_name, "last_name": final.last_name}
    # The result is that of a serial order: the last acknowledged write, whole.
    assert stored in [{"first_name": b["first_name"], "last_name": b["last_name"]} for b in ok]
    assert stored["first_name"][1:] == stored["last_name"][1:]


def test_gets_stay_prompt_while_a_write_is_slow(partner):
    """A slow device apply holds the line's gate, never the event loop."""
    import threading
    import time

    phone = partner.lines[0]
    partner.script(phone, apply_delay=3)
    writer = threading.Thread(
        target=lambda: partner.client().contact_card.create(phone_number=phone, first_name="Slow")
    )
    writer.start()
    while partner.client().contact_card.retrieve(phone_number=phone).contact_cards == []:
        time.sleep(0.05)  # the card is stored inactive; the device is still applying it
    with partner.http() as http:
        listed = http.get("/v3/contact_card").json()["contact_cards"]
    # The read was answered while the write was still in flight, and saw it inactive.
    assert writer.is_alive()
    assert [(c["first_name"], c["is_active"]) for c in listed] == [("Slow", False)]
    writer.join()
    assert partner.client().contact_card.retrieve(phone_number=phone).contact_cards[0].is_active
