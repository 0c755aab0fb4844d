"""Keys: stored hashed, compared in constant time, unknown and wrong keys alike, never logged."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import create_engine, select

from contactcard.keys import key_hash
from contactcard.store.schema import api_keys
from tests.conftest import ADMIN_TOKEN, make_partner, start_server
from tests.support.reads import recorded_lookups

pytestmark = pytest.mark.slow


def test_only_the_hash_of_a_key_is_in_the_database(partner):
    engine = create_engine(partner.server.settings.resolved_database_url)
    try:
        with engine.connect() as conn:
            stored = [tuple(row) for row in conn.execute(select(api_keys))]
    finally:
        engine.dispose()
    everything = repr(stored)
    assert partner.key not in everything
    assert key_hash(partner.key) in everything


def _statements(server, request) -> list[str]:
    """The SQL the read path ran while the server answered `request()`."""
    with recorded_lookups(server) as seen:
        response = request()
    assert response.status_code == 401
    return seen


def test_unknown_and_known_but_wrong_keys_take_the_same_path(partner):
    """An unknown key and a near miss of a real key run the very same queries, so their
    cost cannot tell an attacker how close a guess was."""
    base = partner.server.base_url
    near_miss = partner.key[:-1] + ("A" if partner.key[-1] != "A" else "B")
    for path, params in (("/v3/contact_card", {}), ("/v3/contact_card", {"phone_number": partner.lines[0]})):
        unknown = _statements(
            partner.server,
            # Default arguments bind this iteration's path and params (the call runs at once anyway).
            lambda path=path, params=params: httpx.get(
                f"{base}{path}", params=params, headers={"authorization": "Bearer cc_unknown"}
            ),
        )
        wrong = _statements(
            partner.server,
            lambda path=path, params=params: httpx.get(
                f"{base}{path}", params=params, headers={"authorization": f"Bearer {near_miss}"}
            ),
        )
        assert unknown == wrong
        assert len(unknown) == 1 and unknown[0].lstrip().upper().startswith("SELECT")


def test_a_revoked_key_is_refused_on_every_endpoint(server):
    partner = make_partner(server)
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Before")
    assert server.admin("DELETE", f"/keys/{partner.key_id}").status_code == 204
    with partner.http() as http:
        answers = [
            http.get("/v3/contact_card"),
            http.get("/v3/contact_card", params={"phone_number": phone}),
            http.post("/v3/contact_card", json={"phone_number": phone, "first_name": "After"}),
            http.patch("/v3/contact_card", params={"phone_number": phone}, json={"first_name": "After"}),
        ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [(401, 2004)] * 4


def test_nothing_secret_reaches_the_logs(tmp_path, image_host, caplog, monkeypatch):
    """Keys and the admin token never appear in any log record, errors and access log included."""
    caplog.set_level(logging.DEBUG)
    server = start_server({"image_allowed_hosts": image_host.host_port, "log_level": "debug"}, tmp_path)
    try:
        partner = make_partner(server)
        phone = partner.lines[0]
        with partner.http() as http:
            http.post("/v3/contact_card", json={"phone_number": phone, "first_name": "Logged"})
            http.post("/v3/contact_card", content=b"{bad", headers={"content-type": "application/json"})
            http.get("/v3/contact_card", params={"phone_number": "bad"})
            httpx.get(f"{server.base_url}/v3/contact_card", headers={"authorization": f"Bearer {partner.key}x"})

            def explode(*args, **kwargs):
                raise RuntimeError("boom")

            monkeypatch.setattr(server.framework.state.cards, "list_cards", explode)
            assert http.get("/v3/contact_card").status_code == 500
        server.admin("GET", "/partners")
        httpx.get(f"{server.base_url}/admin/v1/partners", headers={"authorization": "Bearer wrong-admin-token"})
    finally:
        server.stop()
    server_records = [
        r for r in caplog.records if r.name.startswith(("contactcard", "uvicorn", "sqlalchemy", "fastapi"))
    ]
    assert any(r.name == "contactcard" for r in server_records), "the 500 must be logged"
    text = "\n".join(
        f"{r.getMessage()} {r.args!r} {logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
        for r in server_records
    )
    for secret in (partner.key, partner.key[3:], ADMIN_TOKEN, "wrong-admin-token"):
        assert secret not in text
