"""The test kit's pages in a real browser: the request journal (filters and its live view) and
the runtime controls (write budget, clock, reset). A module of its own, so its server's
settings, clock and reset touch no other test's server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import linq
import pytest
from linq import LinqAPIV3

from tests.conftest import admin_request, new_number
from tests.dashboard.conftest import sign_in
from tests.dashboard.test_browser import _shoot

# Header values are bytes (the journal reads them as Latin-1): markup, quotes and an ampersand.
HOSTILE_AGENT = '<script>window.__pwned = 1</script> &amp; "quoted" &'
HOSTILE_PATH = '/v3/<img src=x onerror="window.__pwned = 2">'


@pytest.fixture
def partner(dash_server) -> Iterator[tuple[str, LinqAPIV3, list[str]]]:
    """A partner with two lines and an SDK client with its key (no retries: a 429 is seen)."""
    base = dash_server.base_url
    partner_id = admin_request(base, "POST", "/partners", json={"name": f"kit {uuid.uuid4().hex[:6]}"}).json()["id"]
    key = admin_request(base, "POST", f"/partners/{partner_id}/keys").json()["key"]
    numbers = [new_number(), new_number()]
    for number in numbers:
        added = admin_request(base, "POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
        assert added.status_code == 200, added.text
    yield partner_id, LinqAPIV3(api_key=key, base_url=f"{base}/api/partner", max_retries=0), numbers
    # Whatever a test changed, the next one starts from the server's own settings and time.
    assert admin_request(base, "DELETE", "/settings").status_code == 200
    assert admin_request(base, "DELETE", "/clock").status_code == 200


def _csp_watch(page) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    return violations


def test_a_request_found_by_its_trace_id_and_new_ones_shown_live(page, dash_server, partner, screenshots):
    _partner_id, client, (number, _) = partner
    violations = _csp_watch(page)
    created = client.contact_card.with_raw_response.create(phone_number=number, first_name="Ada")
    trace_id = created.headers["x-trace-id"]
    client.contact_card.retrieve(phone_number=number)  # another request of the same number

    sign_in(page)
    page.click("nav >> text=Requests")
    page.fill("input[name=trace_id]", trace_id)
    page.click("button:has-text('Filter')")
    # The filter is in the query string: the page can be linked to and reloaded.
    assert f"trace_id={trace_id}" in page.url
    rows = page.locator("table.journal tbody tr")
    assert rows.count() == 1
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[1:5] == ["POST", "/api/partner/v3/contact_card", number, "200"], cells
    assert cells[-1] == trace_id
    # By number: both requests, newest first (the GET, then the POST).
    page.goto(f"/dashboard/requests?number={number.replace('+', '%2B')}")
    methods = [row.locator("td").nth(1).inner_text() for row in page.locator("table.journal tbody tr").all()]
    assert methods == ["GET", "POST"], methods

    # The live view: a request sent after the page was loaded appears without a reload.
    page.goto("/dashboard/requests")
    page.wait_for_selector("#live-state:has-text('Live')")
    page.evaluate("window.__same_page = true")  # gone if the page were reloaded
    later = client.contact_card.with_raw_response.retrieve(phone_number=number).headers["x-trace-id"]
    page.wait_for_selector(f"table.journal tbody tr[data-trace='{later}']", timeout=10_000)
    assert page.locator("table.journal tbody tr").first.get_attribute("data-trace") == later  # at the top
    assert page.evaluate("window.__same_page") is True

    # Hostile fields arriving live are text: built with textContent, nothing runs.
    hostile = httpx.get(f"{dash_server.base_url}{HOSTILE_PATH}", headers={"user-agent": HOSTILE_AGENT})
    assert hostile.status_code == 404
    hostile_trace = hostile.headers["x-trace-id"]
    row = page.locator(f"table.journal tbody tr[data-trace='{hostile_trace}']")
    row.wait_for(timeout=10_000)
    assert row.locator("td.agent").inner_text() == HOSTILE_AGENT
    assert row.locator("td.path").inner_text() == HOSTILE_PATH
    assert page.locator("main img").count() == 0  # the path's <img> is text, not an element
    assert page.evaluate("window.__pwned") is None
    # And as the server renders them, after a reload.
    page.reload()
    row = page.locator(f"table.journal tbody tr[data-trace='{hostile_trace}']")
    assert row.locator("td.agent").inner_text() == HOSTILE_AGENT
    assert row.locator("td.path").inner_text() == HOSTILE_PATH
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img").count() == 0
    _shoot(page, dash_server, screenshots, "requests")
    assert violations == []


def test_budget_and_clock_from_the_controls_page(page, dash_server, partner, screenshots):
    _partner_id, client, (number, _) = partner
    violations = _csp_watch(page)
    own = admin_request(dash_server.base_url, "GET", "/settings").json()
    assert own["write_budget"] != 2  # else saving 2 would prove nothing
    sign_in(page)
    page.click("nav >> text=Runtime controls")
    page.fill("input[name=write_budget]", "2")
    page.fill("input[name=write_budget_window]", "600")
    page.click("button:has-text('Save settings')")
    assert page.inner_text("p.done") == "Settings saved."
    assert page.input_value("input[name=write_budget]") == "2"

    # Two writes of this number pass within the window, the third is refused.
    client.contact_card.create(phone_number=number, first_name="One")
    client.contact_card.update(phone_number=number, first_name="Two")
    with pytest.raises(linq.RateLimitError):
        client.contact_card.update(phone_number=number, first_name="Three")
    page.goto("/dashboard/requests?status=429")
    assert page.locator("table.journal tbody tr").count() == 1

    # The server's clock, moved past the window: the budget is back.
    page.goto("/dashboard/controls")
    shown_before = page.inner_text("#server-now")
    assert page.inner_text("#clock-offset") == "real time"
    page.fill("input[name=seconds]", "601")
    page.click("button:has-text('Advance')")
    assert page.inner_text("#clock-offset") == "10 min 1 s ahead of real time"
    assert page.inner_text("#server-now") > shown_before  # same format: text order is time order
    assert client.contact_card.update(phone_number=number, first_name="Three").first_name == "Three"
    _shoot(page, dash_server, screenshots, "controls")

    # Set to an instant, then back to real time.
    page.fill("input[name=instant]", "2030-01-02T03:04:05")
    page.click("button:has-text('Set clock')")
    assert page.inner_text("#server-now").startswith("2030-01-02 03:04:0")
    page.click("button:has-text('Back to real time')")
    assert page.inner_text("#clock-offset") == "real time"
    assert page.is_disabled("button:has-text('Back to real time')")

    # A bad value is refused with the reason, and nothing changes.
    page.fill("input[name=write_budget_window]", "0")
    page.eval_on_selector(
        "input[name=write_budget_window]", "i => i.removeAttribute('min')"
    )  # past the browser's check
    page.click("button:has-text('Save settings')")
    assert "the window must be a whole number from 1" in page.inner_text("p.error")
    assert admin_request(dash_server.base_url, "GET", "/settings").json()["write_budget_window"] == 600
    page.goto("/dashboard/controls")
    page.click("button:has-text('Put back the server')")
    assert page.inner_text("p.done") == "Settings put back to the server's own."
    assert admin_request(dash_server.base_url, "GET", "/settings").json() == own
    assert violations == []


def test_reset_asks_for_confirmation_and_keeps_partners(page, dash_server, partner, screenshots):
    partner_id, client, (number, other) = partner
    client.contact_card.create(phone_number=number, first_name="Kept until the reset")
    sign_in(page)
    page.goto("/dashboard/controls")
    page.click("text=Reset…")
    page.wait_for_url(re.compile(r"/dashboard/controls/reset$"))
    _shoot(page, dash_server, screenshots, "reset")

    # The wrong word: nothing is reset.
    page.fill("input[name=confirm]", "yes")
    page.click("button:has-text('Reset')")
    assert "Nothing was reset" in page.inner_text("p.error")
    assert client.contact_card.retrieve(phone_number=number).contact_cards

    page.fill("input[name=confirm]", "reset")
    page.click("button:has-text('Reset')")
    page.wait_for_url(re.compile(r"/dashboard/controls\?done=reset$"))
    assert "Reset done" in page.inner_text("p.done")
    # Cards are gone; the partner, its key and its lines are kept.
    assert client.contact_card.retrieve(phone_number=number).contact_cards == []
    page.goto(f"/dashboard/lines?partner={partner_id}")
    shown = page.locator("table.cards tbody tr").evaluate_all("rows => rows.map(r => r.dataset.number)")
    assert sorted(shown) == sorted([number, other])
    assert page.locator("table.cards .hint:text-is('no card')").count() == 2
    # The journal was forgotten too: only what came after the reset.
    page.goto("/dashboard/requests")
    assert page.locator("table.journal tbody tr").count() == 1  # the retrieve just above


def test_a_webhook_delivery_seen_and_sent_again(page, dash_server, partner, receiver, screenshots):
    _partner_id, client, (number, _) = partner
    violations = _csp_watch(page)
    path = receiver.new_path()
    receiver.answer(path, 400)  # a client error is final: the delivery fails at once
    target = f"{receiver.base_url}{path}"
    subscription = client.webhook_subscriptions.create(target_url=target, subscribed_events=["contact_card.created"])
    client.contact_card.create(phone_number=number, first_name="Hooked")
    event_id = receiver.wait(path, 1)[0].headers["webhook-id"]

    sign_in(page)
    page.click("nav >> text=Webhooks")
    listed = page.locator(f"table.subscriptions tr[data-subscription='{subscription.id}']")
    assert listed.locator("td.url").inner_text() == target
    assert subscription.signing_secret not in page.content()  # never shown, not even to the operator
    listed.locator("text=deliveries").click()
    row = page.locator(f"table.deliveries tr[data-event='{event_id}']")
    # The attempt's outcome is stored just after the receiver answered: reload until it is.
    for _ in range(50):
        if row.locator("td.delivery-state").inner_text() != "pending":
            break
        page.wait_for_timeout(100)
        page.reload()
    assert row.locator("td.delivery-state").inner_text() == "failed"
    assert row.locator("td.attempts").inner_text() == "1"
    assert row.locator("td.answer").inner_text() == "400"
    assert float(row.locator("td.latency").inner_text()) > 0
    _shoot(page, dash_server, screenshots, "webhooks")

    row.locator("button:has-text('Redeliver')").click()
    assert "queued again" in page.inner_text("p.done")
    assert f"subscription={subscription.id}" in page.url  # back on the same subscription's list
    again = receiver.wait(path, 2)[1]
    assert again.headers["webhook-id"] == event_id  # the same event, sent again
    row = page.locator(f"table.deliveries tr[data-event='{event_id}']")
    for _ in range(50):
        if row.locator("td.delivery-state").inner_text() == "delivered":
            break
        page.wait_for_timeout(100)
        page.reload()
    assert row.locator("td.delivery-state").inner_text() == "delivered"
    assert row.locator("td.answer").inner_text() == "200"
    assert row.locator("td.attempts").inner_text() == "2"  # as many as its page lists

    # The delivery's own page lists every attempt, numbered on, marked where it was sent again.
    row.locator("a.attempts-link").click()
    assert page.inner_text("#delivery-state") == "delivered"
    assert page.inner_text("#attempts-made").startswith("2")
    rows = page.locator("table.attempts tbody tr")
    assert [r.get_attribute("class") or "" for r in rows.all()] == ["", "redelivered", ""]
    assert "Sent again by an operator" in rows.nth(1).inner_text()
    attempts = [
        r.locator("td").all_inner_texts() for r in page.locator("table.attempts tbody tr:not(.redelivered)").all()
    ]
    assert [(a[0], a[2], a[3]) for a in attempts] == [("1", "failed", "400"), ("2", "delivered", "200")], attempts
    assert all(float(a[4]) > 0 for a in attempts)
    _shoot(page, dash_server, screenshots, "delivery")
    assert violations == []
