"""The dashboard over plain HTTP: CSRF, the session cookie, the security headers, the
switch-off, proxy paths, and the speed of its pages with 10,000 cards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from contactcard import keys
from contactcard.dashboard.app import PAGES
from contactcard.dashboard.session import COOKIE, SIGN_IN_COOKIE, Session, Sessions
from contactcard.http.app import create_app
from contactcard.settings import Settings
from contactcard.store.db import connect
from contactcard.store.schema import api_keys, cards, lines, partners
from tests.conftest import ADMIN_TOKEN, admin_request, new_number
from tests.dashboard.conftest import csrf_of, signed_in_http

with warnings.catch_warnings():
    # Starlette asks for its `httpx2` fork; the locked httpx serves these in-process checks.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _answered(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    """A form's answer (Post/Redirect/Get): a 303, and the GET page it leads to, once."""
    posted = client.post(path, data=data)
    assert posted.status_code == 303, (path, posted.status_code, posted.text[-500:])
    return client.get(posted.headers["location"])


def _partner_names(base_url: str) -> list[str]:
    return [p["name"] for p in admin_request(base_url, "GET", "/partners").json()]


def test_a_form_without_this_sessions_token_is_refused(dash_server):
    client, csrf = signed_in_http(dash_server.base_url)
    _other, other_csrf = signed_in_http(dash_server.base_url)
    name = f"refused {uuid.uuid4().hex[:6]}"
    attempts = [
        {"name": name},  # no token
        {"name": name, "csrf": ""},
        {"name": name, "csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")},  # altered
        {"name": name, "csrf": other_csrf},  # another session's
    ]
    for fields in attempts:
        answer = client.post("/dashboard/partners/new", data=fields)
        assert answer.status_code == 403, (fields, answer.status_code)
        assert "Form refused" in answer.text
    # JSON or multipart bodies are not forms, token or not.
    assert client.post("/dashboard/partners/new", json={"name": name, "csrf": csrf}).status_code == 403
    assert name not in _partner_names(dash_server.base_url)
    # A sign-out needs the token too; sign-in as well (no planted sign-in from another site).
    assert client.post("/dashboard/sign-out", data={}).status_code == 403
    fresh = httpx.Client(base_url=dash_server.base_url)
    fresh.get("/dashboard/sign-in")
    assert fresh.post("/dashboard/sign-in", data={"token": ADMIN_TOKEN}).status_code == 403
    # With the token, the same form works: the refusals above were for the token alone.
    assert client.post("/dashboard/partners/new", data={"name": name, "csrf": csrf}).status_code == 303
    assert name in _partner_names(dash_server.base_url)


def test_the_session_cookie_is_httponly_strict_and_the_token_is_never_shown(dash_server):
    client = httpx.Client(base_url=dash_server.base_url)
    form = client.get("/dashboard/sign-in")
    assert 'method="post"' in form.text and 'type="password"' in form.text
    # The form's page sets only its own cookie: arriving by a link from another site (which
    # SameSite=Strict sends without the session cookie) must not replace a signed-in session.
    assert [c.split("=")[0] for c in form.headers.get_list("set-cookie")] == [SIGN_IN_COOKIE]
    done = client.post("/dashboard/sign-in", data={"csrf": csrf_of(form.text), "token": ADMIN_TOKEN})
    assert done.status_code == 303 and ADMIN_TOKEN not in done.headers["location"]
    (cookie,) = [c for c in done.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}=")]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/dashboard" in flags
    assert "secure" not in flags  # plain http here: a Secure cookie would never come back
    assert ADMIN_TOKEN not in cookie  # signed with a key derived from it, never carrying it
    for path in ("/dashboard/", "/dashboard/partners", "/dashboard/lines"):
        page = client.get(path)
        assert page.status_code == 200 and ADMIN_TOKEN not in page.text, path
    # A wrong token signs nobody in.
    stranger = httpx.Client(base_url=dash_server.base_url)
    csrf = csrf_of(stranger.get("/dashboard/sign-in").text)
    refused = _answered(stranger, "/dashboard/sign-in", {"csrf": csrf, "token": "not-the-token"})
    assert "That is not the admin token." in refused.text
    assert stranger.get("/dashboard/partners").status_code == 303
    # Signing out ends the session in this browser.
    csrf = csrf_of(client.get("/dashboard/partners").text)
    out = client.post("/dashboard/sign-out", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"].endswith("/dashboard/sign-in")
    assert client.get("/dashboard/partners").status_code == 303


def test_a_forged_or_altered_cookie_is_not_a_session(dash_server):
    client, _ = signed_in_http(dash_server.base_url)
    real = client.cookies[COOKIE]
    payload, signature = real.split(".")
    sign_in_cookie = Sessions(ADMIN_TOKEN).dump(Session.new(signed_in=False))  # genuine, but not signed in
    for forged in (f"{payload}.{signature[:-2]}xx", f"{payload}x.{signature}", "e30.", "", sign_in_cookie):
        stranger = httpx.Client(base_url=dash_server.base_url, cookies={COOKIE: forged})
        assert stranger.get("/dashboard/partners").status_code == 303, forged


def test_every_dashboard_answer_carries_the_strict_headers(dash_server):
    client, _ = signed_in_http(dash_server.base_url)
    for path in ("/dashboard/sign-in", "/dashboard/partners", "/dashboard/lines", "/dashboard/static/dashboard.css"):
        headers = client.get(path).headers
        policy = headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, path
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer", path
    assert client.get("/dashboard/partners").headers["cache-control"] == "no-store"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "script-src 'self'" in docs.headers["content-security-policy"]
    assert "<script>" not in docs.text  # scripts only by src, as the policy demands
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs/assets/..%2Fcore.py").status_code == 404  # served by name only
    assert client.get("/docs/errors/1005").status_code == 200  # the error pages are still there


def test_bad_script_values_are_refused_with_a_reason(dash_server):
    client, csrf = signed_in_http(dash_server.base_url)
    partner_id = admin_request(dash_server.base_url, "POST", "/partners", json={"name": "scripted"}).json()["id"]
    number = new_number()
    admin_request(dash_server.base_url, "POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    for fields, reason in (
        ({"fail_next": "-1"}, "whole number"),
        ({"fail_next": "١"}, "whole number"),  # an Arabic-Indic digit is not one of ours
        ({"apply_delay": "nan"}, "0 to 3600"),
        ({"apply_delay": "1e9"}, "0 to 3600"),
    ):
        answer = _answered(client, f"/dashboard/lines/{number}/script", {"csrf": csrf, **fields})
        assert reason in answer.text, fields
    assert admin_request(dash_server.base_url, "GET", f"/devices/{number}").json()["fail_next"] == 0
    missing = _answered(client, "/dashboard/lines/+19990000000/script", {"csrf": csrf, "fail_next": "1"})
    assert "no line +19990000000" in missing.text
    # Not a number: a part of a name, searched for as text (it matches no card).
    odd_search = client.get("/dashboard/lines", params={"q": "' OR 1=1 --"})
    assert odd_search.status_code == 200 and "data-number=" not in odd_search.text


def _app(tmp_path: Path, token: str | None) -> object:
    return create_app(Settings(data_dir=tmp_path, admin_token=token, public_base_url="https://cards.example.test"))


def test_no_admin_token_no_dashboard(tmp_path):
    with TestClient(_app(tmp_path, None)) as client:
        for path in ("/dashboard", "/dashboard/", "/dashboard/sign-in", "/dashboard/static/dashboard.css"):
            assert client.get(path).status_code == 404, path
        assert client.post("/dashboard/sign-in", data={"token": "x"}).status_code == 404
        reference = client.get("/docs")
        assert reference.status_code == 200 and 'href="dashboard"' not in reference.text


def test_behind_https_and_a_proxy_path(tmp_path):
    # uvicorn --root-path /cards behind a proxy: every link and the cookie's path follow it,
    # and an https public address makes the cookie Secure.
    with TestClient(_app(tmp_path, "a-long-admin-token-here"), base_url="https://proxy.test", root_path="/cards") as c:
        form = c.get("/cards/dashboard/sign-in")
        links = re.findall(r'(?:href|action|src)="([^"]+)"', form.text)
        assert links and all(link.startswith("/cards/") for link in links), links
        flags = [part.strip().lower() for part in form.headers.get_list("set-cookie")[0].split(";")]
        assert "secure" in flags and "path=/cards/dashboard" in flags
        assert c.get("/cards/dashboard", follow_redirects=False).headers["location"] == "dashboard/"


def _seed(database_url: str, count: int) -> tuple[str, str]:
    """`count` lines with cards for a new partner, written straight to the database; its key."""
    database = connect(database_url)
    partner_id, key = uuid.uuid4().hex, keys.new_key()
    now = datetime.now(UTC)
    base = 17_770_000_000  # +1777…: apart from the numbers the other tests use
    try:
        with database.writer.begin() as conn:
            conn.execute(insert(partners).values(id=partner_id, name="ten thousand", created_at=now))
            conn.execute(
                insert(api_keys).values(
                    id=uuid.uuid4().hex,
                    partner_id=partner_id,
                    key_hash=keys.key_hash(key),
                    prefix=keys.display_prefix(key),
                    created_at=now,
                )
            )
            numbers = [f"+{base + i}" for i in range(count)]
            conn.execute(
                insert(lines), [{"phone_number": n, "partner_id": partner_id, "created_at": now} for n in numbers]
            )
            conn.execute(
                insert(cards),
                [
                    {
                        "phone_number": n,
                        "id": uuid.uuid4().hex,
                        "first_name": f"Card {i}",
                        "last_name": None,
                        "image_blob": None,
                        "image_source_url": None,
                        "is_active": i % 3 != 0,
                        "ever_active": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, n in enumerate(numbers)
                ],
            )
    finally:
        database.dispose()
    return partner_id, key


@pytest.mark.slow
def test_pages_of_10000_cards_answer_and_page_exactly(dash_server):
    """Every page answers with 10,000 cards in the database, and keyset paging lands exactly
    (the time they take is bench figure 11, never an assertion here)."""
    database_url = dash_server.database_url or f"sqlite:///{dash_server.data_dir / 'contactcard.db'}"
    partner_id, _ = _seed(database_url, 10_000)
    client, _ = signed_in_http(dash_server.base_url)
    deep = "+17770009000"  # page 181 of 200: keyset paging reads no row before it
    for path, params in (
        ("/dashboard/lines", {"partner": partner_id}),
        ("/dashboard/lines", {"partner": partner_id, "before": deep}),
        ("/dashboard/lines", {"q": "+1777000512"}),
        ("/dashboard/lines/+17770005000", {}),
        ("/dashboard/", {}),
        ("/dashboard/requests", {}),
        ("/dashboard/controls", {}),
        ("/dashboard/webhooks", {}),
    ):
        answer = client.get(path, params=params)
        assert answer.status_code == 200, (path, answer.status_code)
    # The total above the list: counted exactly up to 10,000, then "more than" (a count reads
    # every row it counts; the page does not wait for a million of them).
    other = admin_request(dash_server.base_url, "POST", "/partners", json={"name": "one more"}).json()["id"]
    added = admin_request(
        dash_server.base_url, "POST", "/lines", json={"partner_id": other, "phone_number": new_number()}
    )
    assert added.status_code == 200, added.text
    of_partner = client.get("/dashboard/lines", params={"partner": partner_id}).text
    assert re.search(r'id="lines-total">10000 lines of', of_partner), of_partner[:2000]
    every = client.get("/dashboard/lines").text
    assert 'id="lines-total">More than 10,000 lines' in every
    page = client.get("/dashboard/lines", params={"partner": partner_id, "after": deep}).text
    shown = re.findall(r'data-number="([^"]+)"', page)
    assert shown == [f"+{17_770_009_001 + i}" for i in range(50)]  # the page after `deep`
    # Its "previous page" link leads to the 50 numbers before, in order.
    back = re.search(r'rel="prev" href="([^"]+)"', page)
    assert back, "no previous page link"
    earlier = client.get(back.group(1).replace("&amp;", "&")).text
    assert re.findall(r'data-number="([^"]+)"', earlier) == [f"+{17_770_008_951 + i}" for i in range(50)]


def test_without_a_token_the_dashboard_is_never_loaded(tmp_path):
    # In a process of its own: this one has Jinja2 loaded already.
    script = """
import sys
from contactcard.http.app import create_app
from contactcard.settings import Settings
create_app(Settings(data_dir=sys.argv[1]))
print("jinja2" in sys.modules, "contactcard.dashboard.app" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_the_kit_pages_forms_without_this_sessions_token_are_refused(dash_server):
    client, csrf = signed_in_http(dash_server.base_url)
    _other, other_csrf = signed_in_http(dash_server.base_url)
    before = admin_request(dash_server.base_url, "GET", "/settings").json()
    forms = {
        "/dashboard/controls/settings": {
            "profile": "hosted",
            "write_budget": "1",
            "write_budget_window": "9",
            "journal_size": "5",
        },
        "/dashboard/controls/settings/restore": {},
        "/dashboard/controls/clock": {"action": "advance", "seconds": "86400"},
        "/dashboard/controls/reset": {"confirm": "reset", "everything": "on"},
        f"/dashboard/webhooks/deliveries/{'e' * 32}/{'5' * 32}/redeliver": {},
    }
    partners_before = _partner_names(dash_server.base_url)
    for path, fields in forms.items():
        for token in ({}, {"csrf": ""}, {"csrf": other_csrf}):
            answer = client.post(path, data={**fields, **token})
            assert answer.status_code == 403 and "Form refused" in answer.text, (path, token)
    # Nothing changed: not the settings, not the clock, and no reset (partners still there).
    assert admin_request(dash_server.base_url, "GET", "/settings").json() == before
    assert admin_request(dash_server.base_url, "GET", "/clock").json()["real"] is True
    assert _partner_names(dash_server.base_url) == partners_before
    # With the token, the clock form works: the refusals were for the token alone.
    done = client.post("/dashboard/controls/clock", data={"csrf": csrf, "action": "advance", "seconds": "60"})
    assert done.status_code == 303
    assert admin_request(dash_server.base_url, "GET", "/clock").json()["offset"] >= 60
    assert admin_request(dash_server.base_url, "DELETE", "/clock").status_code == 200
    # A delivery that does not exist, with the token: a 404 that says so.
    missing = _answered(client, f"/dashboard/webhooks/deliveries/{'e' * 32}/{'5' * 32}/redeliver", {"csrf": csrf})
    assert "no delivery of event" in missing.text


def test_bad_control_values_and_journal_filters_are_refused_with_a_reason(dash_server):
    client, csrf = signed_in_http(dash_server.base_url)
    before = admin_request(dash_server.base_url, "GET", "/settings").json()
    good = {"csrf": csrf, **{k: str(v) for k, v in before.items()}}
    for fields, reason in (
        ({"profile": "fast"}, "the profile must be one of"),
        ({"write_budget": "-1"}, "the write budget must be a whole number"),
        ({"write_budget": "²"}, "the write budget must be a whole number"),  # a digit to str.isdigit()
        ({"write_budget_window": "0"}, "the window must be a whole number from 1"),
        ({"journal_size": "1e3"}, "the journal&#39;s size must be a whole number"),
    ):
        answer = _answered(client, "/dashboard/controls/settings", {**good, **fields})
        assert reason in answer.text, (fields, answer.text[-2000:])
    assert admin_request(dash_server.base_url, "GET", "/settings").json() == before
    for fields, reason in (
        ({"action": "advance", "seconds": "nan"}, "a number of seconds, 0 or more"),
        ({"action": "advance", "seconds": "-5"}, "a number of seconds, 0 or more"),
        ({"action": "set", "instant": "soon"}, "the instant must be a date and time"),
        ({"action": "set", "instant": "2999-01-01T00:00:00"}, "more than a hundred years away"),
        ({"action": "backwards"}, "advance, set or real"),
    ):
        answer = _answered(client, "/dashboard/controls/clock", {"csrf": csrf, **fields})
        assert reason in answer.text, fields
    assert admin_request(dash_server.base_url, "GET", "/clock").json()["real"] is True
    unconfirmed = _answered(client, "/dashboard/controls/reset", {"csrf": csrf, "confirm": "rest"})
    assert "Nothing was reset" in unconfirmed.text
    for query, reason in (
        ({"trace_id": "' OR 1=1"}, "32 hexadecimal digits"),
        ({"number": "5551234567"}, "E.164"),
        ({"number": "+1555١٢٣"}, "E.164"),
        ({"status": "99"}, "from 100 to 599"),
    ):
        answer = client.get("/dashboard/requests", params=query)
        assert answer.status_code == 400 and reason in answer.text, query
        assert client.get("/dashboard/requests/live", params=query).status_code == 400, query


def _events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """The events of a text/event-stream, as their fields (comments skipped)."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def test_the_live_view_streams_new_requests_and_resumes_after_the_last_id(dash_server):
    client, _ = signed_in_http(dash_server.base_url)
    assert httpx.get(f"{dash_server.base_url}/dashboard/requests/live").status_code == 303  # signed in only
    first = httpx.get(f"{dash_server.base_url}/v3/contact_card").headers["x-trace-id"]  # a 401, journaled
    journaled = client.get("/dashboard/requests", params={"trace_id": first}).text
    first_id = int(re.findall(r'<tr data-id="(\d+)"', journaled)[0])
    second = httpx.get(f"{dash_server.base_url}/v3/contact_card").headers["x-trace-id"]
    # Reconnecting after `first`, as an EventSource does: the next event is `second`.
    with client.stream("GET", "/dashboard/requests/live", headers={"last-event-id": str(first_id)}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "default-src 'self'" in stream.headers["content-security-policy"]
        events = _events(stream.iter_lines())
        assert next(events) == {"retry": "1000"}
        arrived = next(events)
        assert arrived["event"] == "request" and int(arrived["id"]) > first_id
        entry = json.loads(arrived["data"])
        assert (entry["trace_id"], entry["status"], entry["error_code"]) == (second, 401, "2004")
        # One sent while the stream is open arrives too.
        third = httpx.get(f"{dash_server.base_url}/v3/contact_card").headers["x-trace-id"]
        assert json.loads(next(events)["data"])["trace_id"] == third
    # Filtered by status: a 404 sent meanwhile is the only one that comes.
    with client.stream("GET", "/dashboard/requests/live", params={"status": "404", "after": first_id}) as stream:
        events = _events(stream.iter_lines())
        next(events)
        missing = httpx.get(f"{dash_server.base_url}/v3/nowhere").headers["x-trace-id"]
        assert json.loads(next(events)["data"])["trace_id"] == missing


def test_a_reset_of_everything_forgets_partners_and_puts_the_clock_back(tmp_path):
    # In-process, on a server of its own: the module's shared server keeps its partners.
    token = "a-long-admin-token-here"
    admin = {"authorization": f"Bearer {token}"}
    with TestClient(_app(tmp_path, token), base_url="https://cards.example.test") as c:
        assert c.post("/admin/v1/partners", json={"name": "goes"}, headers=admin).status_code == 200
        assert c.post("/admin/v1/clock/advance", json={"seconds": 3600}, headers=admin).status_code == 200
        csrf = csrf_of(c.get("/dashboard/sign-in").text)
        assert c.post("/dashboard/sign-in", data={"csrf": csrf, "token": token}).status_code == 200
        csrf = csrf_of(c.get("/dashboard/controls/reset").text)
        # The cards-only reset keeps the partner; everything takes it, and the clock is real again.
        kept = c.post("/dashboard/controls/reset", data={"csrf": csrf, "confirm": "reset"}, follow_redirects=False)
        assert kept.status_code == 303 and kept.headers["location"].endswith("/controls?done=reset")
        assert [p["name"] for p in c.get("/admin/v1/partners", headers=admin).json()] == ["goes"]
        gone = c.post(
            "/dashboard/controls/reset",
            data={"csrf": csrf, "confirm": " Reset ", "everything": "on"},
            follow_redirects=False,
        )
        assert gone.status_code == 303 and gone.headers["location"].endswith("/controls?done=everything")
        assert c.get("/admin/v1/partners", headers=admin).json() == []
        assert c.get("/admin/v1/clock", headers=admin).json()["real"] is True
        assert "every webhook subscription" in c.get("/dashboard/controls?done=everything").text


def test_every_form_is_answered_with_a_redirect_to_a_page(dash_server):
    """Post/Redirect/Get for every POST route the dashboard has, now and added later: a
    reload or Back never posts again. Each is posted with this session's token and fields
    that do nothing (unknown ids, nothing confirmed, nothing typed)."""
    client, csrf = signed_in_http(dash_server.base_url)
    dummy = {"partner_id": "0" * 32, "key_id": "0" * 32, "subscription_id": "0" * 32, "event_id": "0" * 32}
    dummy["phone"] = "+19990000001"
    before = admin_request(dash_server.base_url, "GET", "/settings").json()
    posted = []
    for module in PAGES:
        for route in module.routes():
            if "POST" not in (route.methods or ()) or route.path in ("/sign-in", "/sign-out"):
                continue
            path = "/dashboard" + route.path.format(**dummy)
            answer = client.post(path, data={"csrf": csrf})
            assert answer.status_code == 303, (route.path, answer.status_code, answer.text[-300:])
            # A page of the dashboard (a confirmation page for an unknown id says it is not there).
            shown = client.get(answer.headers["location"])
            assert shown.status_code in (200, 404) and shown.headers["content-type"].startswith("text/html"), route.path
            posted.append(route.path)
    assert len(posted) >= 12, posted
    assert admin_request(dash_server.base_url, "GET", "/settings").json() == before
    out = client.post("/dashboard/sign-out", data={"csrf": csrf})
    assert out.status_code == 303
