"""The test kit over HTTP: runtime settings, the clock, reset and the request journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import linq
import pytest

from tests.conftest import ADMIN_TOKEN, make_partner


@pytest.fixture
def kit_server(farm, backend):
    """A server of its own (its own SQLite file); on PostgreSQL the session's database is
    shared with other servers, so every control is put back afterwards."""
    server = farm.get(backend, journal_size=777)
    yield server
    assert server.admin("DELETE", "/settings").status_code == 200
    assert server.admin("DELETE", "/clock").status_code == 200


@pytest.fixture
def kit_partner(kit_server):
    return make_partner(kit_server)


def _settings(server, **changes):
    response = server.admin("PATCH", "/settings", json=changes)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_budget_window_passes_when_the_clock_moves(kit_partner):
    server, phone = kit_partner.server, kit_partner.lines[0]
    assert _settings(server, write_budget=2, write_budget_window=600)["write_budget"] == 2
    client = kit_partner.client()
    client.contact_card.create(phone_number=phone, first_name="One")
    client.contact_card.update(phone_number=phone, first_name="Two")
    with pytest.raises(linq.RateLimitError) as refused:
        client.contact_card.update(phone_number=phone, first_name="Three")
    wait = int(refused.value.response.headers["retry-after"])
    assert 590 <= wait <= 600
    moved = server.admin("POST", "/clock/advance", json={"seconds": 599})
    assert moved.status_code == 200 and moved.json()["real"] is False
    with pytest.raises(linq.RateLimitError) as still:
        client.contact_card.update(phone_number=phone, first_name="Three")
    assert int(still.value.response.headers["retry-after"]) <= wait - 590
    server.admin("POST", "/clock/advance", json={"seconds": 2})
    updated = client.contact_card.update(phone_number=phone, first_name="Three")
    assert updated.first_name == "Three"


def test_a_budget_of_zero_switches_it_off_at_run_time(kit_partner):
    server, phone = kit_partner.server, kit_partner.lines[0]
    _settings(server, write_budget=1)
    client = kit_partner.client()
    client.contact_card.create(phone_number=phone, first_name="A")
    with pytest.raises(linq.RateLimitError):
        client.contact_card.update(phone_number=phone, first_name="B")
    _settings(server, write_budget=0)
    for name in ("B", "C", "D"):
        assert client.contact_card.update(phone_number=phone, first_name=name).first_name == name
    # null: back to the server's own setting (3 per window), already spent by the writes above
    assert _settings(server, write_budget=None)["write_budget"] == 3


def test_the_profile_changes_at_run_time(kit_partner):
    server, phone = kit_partner.server, kit_partner.lines[0]
    kit_partner.script(phone, fail_next=2)
    with kit_partner.http() as http:
        seed = http.post("/v3/contact_card", json={"phone_number": phone, "first_name": "Seed"})
        assert seed.status_code == 200 and seed.json()["is_active"] is False
        assert _settings(server, profile="hosted")["profile"] == "hosted"
        hosted = http.post("/v3/contact_card", json={"phone_number": phone, "first_name": "Hosted"})
        assert hosted.status_code == 500 and hosted.json()["error"]["code"] == 2022


def test_the_clock_can_be_set_and_put_back(kit_server):
    instant = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)
    set_ = kit_server.admin("PUT", "/clock", json={"now": instant.isoformat()})
    assert set_.status_code == 200, set_.text
    shown = datetime.fromisoformat(kit_server.admin("GET", "/clock").json()["now"])
    assert instant <= shown < instant + timedelta(seconds=5)
    real = kit_server.admin("DELETE", "/clock").json()
    assert real["real"] is True and real["offset"] == 0
    assert abs(datetime.fromisoformat(real["now"]) - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("PATCH", "/settings", {"profile": "sandbox"}, 1005),
        ("PATCH", "/settings", {"write_budget": -1}, 1005),
        ("PATCH", "/settings", {"write_budget_window": 0}, 1005),
        ("PATCH", "/settings", {"read_cache_size": 0}, 1005),  # not a run-time setting
        ("PATCH", "/settings", {"write_budget": "3"}, 1005),
        ("POST", "/clock/advance", {"seconds": -5}, 1005),
        ("POST", "/clock/advance", {}, 1001),
        ("PUT", "/clock", {"now": "2030-01-01T00:00:00"}, 1005),  # no time zone
        ("PUT", "/clock", {"now": "soon"}, 1005),
        ("POST", "/reset", {"everything": "yes please"}, 1005),
    ],
)
def test_bad_controls_are_refused_in_the_envelope(kit_server, method, path, body, code):
    before = kit_server.admin("GET", "/settings").json()
    response = kit_server.admin(method, path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert kit_server.admin("GET", "/settings").json() == before
    assert kit_server.admin("GET", "/clock").json()["real"] is True


def test_a_body_that_is_not_json_is_refused(kit_server):
    response = httpx.patch(
        f"{kit_server.base_url}/admin/v1/settings",
        content=b"{nope",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == 1003


def test_reset_forgets_cards_budgets_and_scripts_but_keeps_partners_keys_and_lines(kit_partner):
    server, phone = kit_partner.server, kit_partner.lines[0]
    _settings(server, write_budget=1)
    client = kit_partner.client()
    client.contact_card.create(phone_number=phone, first_name="Before")
    kit_partner.script(kit_partner.lines[1], rcs_unavailable=True, fail_next=3)
    with kit_partner.http() as http:
        for _ in range(2):  # twice: the second answer may come from the GET memo
            assert http.get("/v3/contact_card", params={"phone_number": phone}).json()["contact_cards"]
        assert server.admin("POST", "/reset").status_code == 204
        after = http.get("/v3/contact_card", params={"phone_number": phone})
        assert after.status_code == 200 and after.json()["contact_cards"] == []
    lines = {
        line["phone_number"] for line in server.admin("GET", "/lines", params={"partner_id": kit_partner.id}).json()
    }
    assert lines == set(kit_partner.lines)
    device = kit_partner.device(kit_partner.lines[1])
    assert device["fail_next"] == 0 and device["rcs_unavailable"] is False
    # The budget was spent by the POST; after the reset the same key writes again.
    assert client.contact_card.create(phone_number=phone, first_name="After").first_name == "After"
    assert server.admin("GET", "/settings").json()["write_budget"] == 1  # settings are not data


def test_reset_everything_forgets_partners_and_puts_the_controls_back(kit_partner):
    server = kit_partner.server
    _settings(server, write_budget=7)
    server.admin("POST", "/clock/advance", json={"seconds": 3600})
    assert server.admin("POST", "/reset", json={"everything": True}).status_code == 204
    assert server.admin("GET", "/partners").json() == []
    with kit_partner.http() as http:
        assert http.get("/v3/contact_card").status_code == 401
    assert server.admin("GET", "/settings").json()["write_budget"] == server.settings.write_budget
    assert server.admin("GET", "/clock").json()["real"] is True


def _journal(server, **params):
    response = server.admin("GET", "/requests", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_journal_shows_requests_and_never_a_key(kit_partner):
    server, phone = kit_partner.server, kit_partner.lines[0]
    server.admin("POST", "/reset")
    client = kit_partner.client()
    created = client.contact_card.with_raw_response.create(phone_number=phone, first_name="Journal")
    create_trace = created.headers["x-trace-id"]
    with kit_partner.http() as http:
        refused = http.get("/v3/contact_card", params={"phone_number": "+19999999999"})
        assert refused.status_code == 403
        listing = http.get("/v3/contact_card")
        answers = [refused.text, listing.text]
    ours = [create_trace, refused.headers["x-trace-id"], listing.headers["x-trace-id"]]
    # Only this test's requests: another server on the same database may store requests of
    # an earlier test later (each process stores its own buffer on its own schedule).
    entries = [e for e in _journal(server) if e["trace_id"] in ours]
    assert [e["trace_id"] for e in entries] == ours
    post = _journal(server, trace_id=create_trace)
    assert len(post) == 1
    assert post[0]["method"] == "POST" and post[0]["phone_number"] == phone and post[0]["status"] == 200
    assert post[0]["retry_count"] == 0 and "python" in post[0]["user_agent"].lower()
    forbidden = _journal(server, status=403)
    assert [e["phone_number"] for e in forbidden] == ["+19999999999"]
    assert forbidden[0]["error_code"] == 2005 and forbidden[0]["duration_ms"] >= 0
    assert [e["trace_id"] for e in _journal(server, phone_number=phone)] == [create_trace]
    later = (datetime.fromisoformat(entries[-1]["at"]) + timedelta(seconds=1)).isoformat()
    assert _journal(server, since=later) == []
    assert [e for e in _journal(server, after_id=entries[-2]["id"]) if e["trace_id"] in ours] == entries[-1:]
    # Neither the key nor any part of its Authorization value is anywhere in the journal.
    listed = server.admin("GET", "/requests").text
    for text in (listed, *answers):
        assert kit_partner.key not in text
    assert kit_partner.key[8:24] not in listed
    if server.settings.database_url is None:  # SQLite: nor in the journal's files, WAL included
        for path in server.settings.data_dir.glob("contactcard-requests.db*"):
            assert kit_partner.key.encode() not in path.read_bytes()
        assert list(server.settings.data_dir.glob("contactcard-requests.db*"))


def test_the_journal_is_bounded_and_can_be_switched_off(kit_partner):
    server = kit_partner.server
    server.admin("POST", "/reset")
    _settings(server, journal_size=5)
    with kit_partner.http() as http:
        traces = [http.get("/v3/contact_card").headers["x-trace-id"] for _ in range(12)]
    assert [e["trace_id"] for e in _journal(server)] == traces[-5:]
    _settings(server, journal_size=0)
    with kit_partner.http() as http:
        unseen = http.get("/v3/contact_card").headers["x-trace-id"]
    assert _journal(server, trace_id=unseen) == []


def test_the_journal_times_requests_on_the_server_clock(kit_partner):
    server = kit_partner.server
    with kit_partner.http() as http:
        before = http.get("/v3/contact_card").headers["x-trace-id"]
        server.admin("POST", "/clock/advance", json={"seconds": 86400})
        after = http.get("/v3/contact_card").headers["x-trace-id"]
    [early] = _journal(server, trace_id=before)
    [late] = _journal(server, trace_id=after)
    gap = datetime.fromisoformat(late["at"]) - datetime.fromisoformat(early["at"])
    assert timedelta(seconds=86400) <= gap < timedelta(seconds=86400 + 30)
    tomorrow = (datetime.now(UTC) + timedelta(hours=12)).isoformat()
    assert [e["trace_id"] for e in _journal(server, since=tomorrow)] == [after]
