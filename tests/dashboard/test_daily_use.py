"""A day on the dashboard in headless Chromium: reloading, going back, signing out, typing
mistakes, on a phone. One test per surprise an operator met before."""

from __future__ import annotations

import re
import uuid
import warnings
from urllib.parse import quote

import httpx
from linq import LinqAPIV3

from contactcard.dashboard.session import COOKIE
from contactcard.dashboard.throttle import TRIES as THROTTLE_TRIES
from contactcard.dashboard.throttle import SignInThrottle
from contactcard.store.controls import FORGOTTEN_TABLES, FORGOTTEN_WITH_EVERYTHING
from tests.conftest import ADMIN_TOKEN, admin_request, new_number
from tests.dashboard.conftest import csrf_of, sign_in
from tests.dashboard.test_http import _app
from tests.support import images

with warnings.catch_warnings():
    # Starlette asks for its `httpx2` fork; the locked httpx serves these in-process checks.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _new_partner(name: str | None = None) -> tuple[str, str]:
    name = name or f"Daily {uuid.uuid4().hex[:6]}"
    return admin_request_ok("POST", "/partners", json={"name": name})["id"], name


_server: dict[str, str] = {}


def admin_request_ok(method: str, path: str, **kwargs):
    answer = admin_request(_server["base_url"], method, path, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json() if answer.content else None


def _keys_of(partner_id: str) -> list[dict]:
    return [k for k in admin_request_ok("GET", "/keys") if k["partner_id"] == partner_id]


def _submit(page, button) -> None:
    """Click a form's button and wait for the page it leads to (before any reload)."""
    with page.expect_navigation():
        (page.locator(button) if isinstance(button, str) else button).click()


def _section(page, name: str):
    return page.locator("section.partner", has=page.locator(f"bdi:text-is('{name}')"))


def test_reloading_or_going_back_after_a_form_posts_nothing_again(page, dash_server):
    _server["base_url"] = dash_server.base_url
    partner_id, name = _new_partner()
    sign_in(page)
    page.goto("/dashboard/partners")
    _submit(page, _section(page, name).locator("button:has-text('Issue a key')"))
    key = page.inner_text("#issued-key").strip()
    assert key.startswith("cc_")
    # The answer is a GET page: a reload neither issues a second key nor shows this one again.
    assert page.url.endswith("/dashboard/partners")
    page.reload()
    assert key not in page.content() and page.locator("#issued-key").count() == 0
    assert len(_keys_of(partner_id)) == 1
    # Back and forward again: no bare "Method Not Allowed", and still one key.
    page.go_back()
    page.go_forward()
    assert "Method Not Allowed" not in page.content()
    assert len(_keys_of(partner_id)) == 1
    # A form's address opened by hand is a page of the dashboard, not plain text.
    answer = page.goto(f"/dashboard/partners/{partner_id}/keys")
    assert answer is not None and answer.status == 405
    assert page.locator("h1").inner_text() == "Nothing to show here"
    assert len(_keys_of(partner_id)) == 1

    # Every other form answers with a GET page too: reloading it changes nothing.
    number = new_number()
    page.goto("/dashboard/lines")
    page.select_option("#add-line select[name=partner_id]", partner_id)
    page.fill("#add-line input[name=phone_number]", number)
    page.click("#add-line button:has-text('Add line')")
    page.wait_for_url(re.compile(re.escape(number.replace("+", "%2B")) + "$|" + re.escape(number) + "$"))
    page.reload()
    page.fill("#script input[name=fail_next]", "2")
    _submit(page, "#script button:has-text('Save script')")
    page.reload()
    assert admin_request_ok("GET", f"/devices/{number}")["fail_next"] == 2
    page.goto("/dashboard/partners")
    _section(page, name).locator("a:has-text('Revoke')").click()
    _submit(page, "button:has-text('Revoke the key')")
    page.reload()
    assert "Key revoked" not in page.content()  # the message was shown once
    page.fill("#new-partner input[name=name]", "   ")
    _submit(page, "#new-partner button")
    assert page.locator("#new-partner p.error").count() == 1
    assert page.url.endswith("/dashboard/partners")
    page.reload()
    assert page.locator("p.error").count() == 0


def test_a_cookie_kept_after_sign_out_opens_nothing(page, dash_server):
    sign_in(page)
    (kept,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/dashboard/sign-in$"))
    # The cookie as a shared machine, a proxy log or curl kept it: replayed, it is refused.
    replayed = httpx.get(
        f"{dash_server.base_url}/dashboard/partners", cookies={COOKIE: kept["value"]}, follow_redirects=False
    )
    assert replayed.status_code == 303 and "/dashboard/sign-in" in replayed.headers["location"]
    page.context.add_cookies([kept])
    page.goto("/dashboard/partners")
    assert "/dashboard/sign-in" in page.url
    assert page.locator("h1").inner_text() == "Sign in"


def test_sign_in_lands_on_the_page_asked_for(page, dash_server):
    page.goto("/dashboard/lines?q=%2B1555")
    assert "/dashboard/sign-in?next=" in page.url
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r"/dashboard/lines\?q=%2B1555$"))
    assert page.input_value("input[name=q]") == "+1555"
    # Another site, a scheme or a protocol-relative address is never followed.
    for hostile in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        page.context.clear_cookies()
        page.goto(f"/dashboard/sign-in?next={quote(hostile, safe='')}")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(re.compile(r"/dashboard/$"))
        assert page.url.startswith(dash_server.base_url), hostile


def test_wrong_admin_tokens_are_throttled_per_address_for_a_minute_at_most(tmp_path, monkeypatch):
    # In-process, with a clock of its own: the module's server is shared by the other tests,
    # which sign in from the same address.
    token = "a-long-admin-token-here"
    now = [1000.0]
    monkeypatch.setattr(SignInThrottle, "clock", staticmethod(lambda: now[0]))
    with TestClient(_app(tmp_path, token), base_url="https://cards.example.test", follow_redirects=False) as client:
        csrf = csrf_of(client.get("/dashboard/sign-in").text)

        def attempt(given: str) -> str:
            answer = client.post("/dashboard/sign-in", data={"csrf": csrf, "token": given})
            assert answer.status_code == 303
            if answer.headers["location"].endswith("/dashboard/"):
                return "signed in"
            return client.get(answer.headers["location"]).text

        for _ in range(THROTTLE_TRIES):
            assert "That is not the admin token." in attempt("guess")
        # Then even the right token waits: the tries stopped are not checked at all.
        assert "Too many wrong tokens from this address: try again in 60 s." in attempt(token)
        now[0] += 30
        assert "try again in 30 s." in attempt("guess")  # a refused try does not lengthen it
        now[0] += 30
        assert attempt(token) == "signed in"


def _journal_paths_after(base_url: str, after_id: int) -> list[str]:
    entries = admin_request(base_url, "GET", "/requests", params={"after_id": after_id, "limit": 1000}).json()
    return [entry["path"] for entry in entries]


def _newest_journal_id(base_url: str) -> int:
    # A request of its own first: an id to count from, even in an empty journal.
    httpx.get(f"{base_url}/v3/contact_card", params={"phone_number": new_number()})
    entries = admin_request(base_url, "GET", "/requests", params={"limit": 1000}).json()
    return max(entry["id"] for entry in entries)


def test_the_journal_keeps_api_requests_only_and_agents_in_any_script(page, dash_server, image_host):
    _server["base_url"] = base = dash_server.base_url
    partner_id, _name = _new_partner()
    key = admin_request_ok("POST", f"/partners/{partner_id}/keys")["key"]
    number = new_number()
    admin_request_ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    client = LinqAPIV3(api_key=key, base_url=f"{base}/api/partner", max_retries=0)
    client.contact_card.create(phone_number=number, first_name="Ada", image_url=image_host.serve(images.jpeg(64, 64)))
    since = _newest_journal_id(base)

    sign_in(page)
    page.goto(f"/dashboard/lines/{number}")  # its photo, from /cdn
    page.wait_for_function("document.querySelector('img.photo.large').naturalWidth > 0")
    page.goto("/docs")  # fetches /openapi.json
    page.wait_for_selector(".opblock")
    page.goto("/docs/errors/1007")
    assert httpx.get(f"{base}/favicon.ico").status_code == 200  # what browsers ask for by themselves
    # A UTF-8 user agent, as an SDK named in another script sends it.
    agent = "Fahrkarten-Zähler/2.0 (日本語; ✓)"
    httpx.get(f"{base}/v3/contact_card", params={"phone_number": number}, headers={"user-agent": agent.encode()})

    paths = _journal_paths_after(base, since)
    assert paths == ["/v3/contact_card"], paths  # the SDK-like call only: no /cdn, /docs, /openapi.json
    page.goto(f"/dashboard/requests?number={quote(number)}")
    assert agent in page.locator("table.journal td.agent").all_inner_texts()


def test_error_pages_are_rendered_and_styled_and_1007_says_to_wait(page, dash_server):
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto("/docs/errors/1007")
    content = page.inner_text("main")
    assert "`" not in content  # Markdown rendered, not shown
    assert page.locator("main code", has_text="retry_after").count() >= 1
    assert "Retry: yes, once the retry_after seconds have passed" in content
    assert "no, fix the request first" not in content
    # Styled by its own stylesheet (the page's policy allows no inline style).
    assert page.eval_on_selector("main", "m => getComputedStyle(m).maxWidth") != "none"
    page.goto("/docs/errors")
    assert page.locator("table tbody tr").count() > 10
    assert violations == []


def test_the_reset_page_says_everything_each_choice_forgets(page, dash_server):
    sign_in(page)
    page.goto("/dashboard/controls")
    assert "webhook delivery" in page.inner_text("section.reset")
    page.click("text=Reset…")
    forgets = page.locator("#reset-forgets li").all_inner_texts()
    also = page.locator("#everything-forgets li").all_inner_texts()
    # One line per table each choice empties: a table added to a reset without words fails.
    assert len(forgets) == len(FORGOTTEN_TABLES) and len(also) == len(FORGOTTEN_WITH_EVERYTHING) + 1
    assert any("pending retries included" in line for line in forgets)
    assert any("webhook subscription" in line for line in also)
    # And the confirmation, after a cards-only reset, says the same.
    page.fill("input[name=confirm]", "reset")
    page.click("button:has-text('Reset')")
    assert "pending retries included" in page.inner_text("p.done")


def test_names_with_bidi_controls_are_refused_as_card_names_are(page, dash_server):
    spoof = "Acme \u202egnp.exe Ltd"
    refused = admin_request(dash_server.base_url, "POST", "/partners", json={"name": spoof})
    assert refused.status_code == 400 and "bidirectional" in refused.text
    sign_in(page)
    page.goto("/dashboard/partners")
    page.fill("#new-partner input[name=name]", spoof)
    _submit(page, "#new-partner button")
    assert "must not contain control or bidirectional characters" in page.inner_text("#new-partner p.error")
    assert spoof not in page.locator("bdi.partner-name").all_inner_texts()


def test_a_form_keeps_what_was_typed_and_shows_its_error_beside_it(page, dash_server):
    _server["base_url"] = dash_server.base_url
    partner_id, _name = _new_partner()
    number = new_number()
    admin_request_ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    sign_in(page)
    # The add-line form sits above the table, and a mistake is shown inside it, as typed.
    page.goto("/dashboard/lines")
    assert page.locator("#add-line").bounding_box()["y"] < page.locator("table.cards").bounding_box()["y"]
    page.select_option("#add-line select[name=partner_id]", partner_id)
    page.fill("#add-line input[name=phone_number]", "5551234")
    _submit(page, "#add-line button")
    assert "is not an E.164 phone number" in page.inner_text("#add-line p.error")
    assert page.input_value("#add-line input[name=phone_number]") == "5551234"
    assert page.input_value("#add-line select[name=partner_id]") == partner_id
    assert page.locator("main > p.error").count() == 0  # not at the top of the page
    # The device script keeps the values typed, not the stored zeros. (The browser's own
    # checks are off, as an old browser's would be: the server's are the ones tested.)
    page.goto(f"/dashboard/lines/{number}")
    page.eval_on_selector("#script", "f => { f.noValidate = true; }")
    page.fill("#script input[name=fail_next]", "3")
    page.fill("#script input[name=apply_delay]", "5000")
    page.check("#script input[name=rcs_unavailable]")
    _submit(page, "#script button")
    assert "0 to 3600" in page.inner_text("#script p.error")
    assert page.input_value("#script input[name=fail_next]") == "3"
    assert page.input_value("#script input[name=apply_delay]") == "5000"
    assert page.is_checked("#script input[name=rcs_unavailable]")
    assert admin_request_ok("GET", f"/devices/{number}")["fail_next"] == 0  # nothing saved


def test_the_clock_takes_0_or_more_seconds_as_the_docs_say(page, dash_server):
    _server["base_url"] = dash_server.base_url
    sign_in(page)
    page.goto("/dashboard/controls")
    form = "form:has(input[name=seconds])"
    page.eval_on_selector(form, "f => { f.noValidate = true; }")
    page.fill("input[name=seconds]", "-5")
    _submit(page, f"{form} button")
    assert "a number of seconds, 0 or more" in page.inner_text(f"{form} p.error")
    assert page.input_value("input[name=seconds]") == "-5"
    page.fill("input[name=seconds]", "0")
    _submit(page, f"{form} button")
    assert page.inner_text("p.done") == "Clock changed."
    # The same rule as the admin API's (and the docs' "0 or more"): 0 passes, -5 does not.
    assert admin_request(dash_server.base_url, "POST", "/clock/advance", json={"seconds": 0}).status_code == 200
    assert admin_request(dash_server.base_url, "POST", "/clock/advance", json={"seconds": -5}).status_code == 400
    admin_request_ok("DELETE", "/clock")


def test_the_overview_says_whether_anything_needs_the_operator(page, dash_server, receiver, screenshots):
    _server["base_url"] = base = dash_server.base_url
    partner_id, _name = _new_partner()
    key = admin_request_ok("POST", f"/partners/{partner_id}/keys")["key"]
    active, inactive = new_number(), new_number()
    for number in (active, inactive):
        admin_request_ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    client = LinqAPIV3(api_key=key, base_url=f"{base}/api/partner", max_retries=0)
    client.contact_card.create(phone_number=active, first_name="Overview")
    admin_request_ok("PUT", f"/devices/{inactive}/script", json={"fail_next": 1})
    client.contact_card.create(phone_number=inactive, first_name="Stalled")

    sign_in(page)
    counts = admin_request_ok("GET", "/partners")
    assert int(page.inner_text("#count-partners")) == len(counts)
    assert int(page.inner_text("#count-active")) >= 1 and int(page.inner_text("#count-inactive")) >= 1
    # Each count leads to its list, filtered to what it counted.
    page.click("a:has(#count-inactive)")
    assert "state=inactive" in page.url
    shown = page.locator("table.cards tbody tr").evaluate_all("rows => rows.map(r => r.dataset.number)")
    assert inactive in shown and active not in shown
    assert "with an inactive card" in page.inner_text("#lines-total")

    # A failed delivery: the overview's first line says so, and links to it.
    path = receiver.new_path()
    receiver.answer(path, 400)
    client.webhook_subscriptions.create(
        target_url=f"{receiver.base_url}{path}", subscribed_events=["contact_card.updated"]
    )
    client.contact_card.update(phone_number=active, first_name="Hooked")
    receiver.wait(path, 1)
    for _ in range(50):
        page.goto("/dashboard/")
        if "failed deliver" in page.inner_text("#health"):
            break
        page.wait_for_timeout(100)
    assert "Something needs a look" in page.inner_text("#health")
    if dash_server.backend == "sqlite":  # one set of screenshots (the pages are the same on both)
        page.screenshot(path=str(screenshots / "overview.png"), full_page=True)
    page.click("#health >> text=failed deliver")
    assert "state=failed" in page.url
    states = page.locator("table.deliveries td.delivery-state").all_inner_texts()
    assert states and set(states) == {"failed"}


def test_lines_are_found_by_name_and_state_and_the_journal_by_method_path_and_page(page, dash_server):
    _server["base_url"] = base = dash_server.base_url
    partner_id, name = _new_partner()
    key = admin_request_ok("POST", f"/partners/{partner_id}/keys")["key"]
    number = new_number()
    admin_request_ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    client = LinqAPIV3(api_key=key, base_url=f"{base}/api/partner", max_retries=0)
    unique = f"Zeta{uuid.uuid4().hex[:6]}"
    client.contact_card.create(phone_number=number, first_name="Ada", last_name=unique)

    sign_in(page)
    page.goto("/dashboard/lines")
    page.fill("input[name=q]", unique.lower())  # a part of a name, any case
    page.click("button:has-text('Search')")
    assert page.locator("table.cards tbody tr").evaluate_all("rows => rows.map(r => r.dataset.number)") == [number]
    assert page.inner_text("#lines-total").startswith("1 line matching")
    page.goto(f"/dashboard/lines?partner={partner_id}&state=none")
    assert page.locator("table.cards tbody tr[data-number]").count() == 0
    assert name in page.inner_text("#lines-total")  # which partner the list is of

    # The journal: by method and path, and past its newest 100.
    for _ in range(105):
        httpx.get(
            f"{base}/v3/contact_card", params={"phone_number": number}, headers={"authorization": f"Bearer {key}"}
        )
    page.goto(f"/dashboard/requests?method=PATCH&number={quote(number)}")
    assert page.locator("table.journal tbody tr").count() == 0
    page.goto(f"/dashboard/requests?method=POST&path=/api/partner/v3&number={quote(number)}")
    assert page.locator("table.journal tbody tr").count() == 1  # the create
    httpx.get(f"{base}/wp-login.php")  # a scanner's request: journaled, hidden by "API paths only"
    page.goto("/dashboard/requests?path=/wp-login.php")
    assert page.locator("table.journal tbody tr").count() >= 1
    page.goto("/dashboard/requests?path=/wp-login.php&api=on")
    assert page.locator("table.journal tbody tr").count() == 0
    assert page.is_checked("input[name=api]")
    page.goto(f"/dashboard/requests?method=GET&number={quote(number)}")
    newest = page.locator("table.journal tbody tr").evaluate_all("rows => rows.map(r => Number(r.dataset.id))")
    assert len(newest) == 100
    page.click("#older")
    older = page.locator("table.journal tbody tr").evaluate_all("rows => rows.map(r => Number(r.dataset.id))")
    assert len(older) == 5 and max(older) < min(newest)
    assert page.get_attribute("#journal", "data-live") is None  # no live view on an older page


_PAGES = (
    "/dashboard/",
    "/dashboard/partners",
    "/dashboard/lines",
    "/dashboard/webhooks",
    "/dashboard/requests",
    "/dashboard/controls",
    "/dashboard/controls/reset",
    "/docs/errors",
    "/docs/errors/1007",
)


def test_on_a_phone_no_page_scrolls_sideways_and_sign_out_is_in_reach(browser, dash_server):
    _server["base_url"] = dash_server.base_url
    partner_id, _name = _new_partner(f"A partner with a rather long name {uuid.uuid4().hex}")
    number = new_number()
    admin_request_ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=dash_server.base_url)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        sign_in(page)
        for path in (*_PAGES, f"/dashboard/lines/{number}"):
            page.goto(path)
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 390, (path, wide)
            if path.startswith("/dashboard"):
                box = page.locator("button:has-text('Sign out')").bounding_box()
                assert box is not None and box["x"] + box["width"] <= 390, (path, box)
                for link in page.locator("header nav a").all():
                    shown = link.bounding_box()
                    assert shown is not None and shown["x"] + shown["width"] <= 390, (path, shown)
        assert violations == []
    finally:
        context.close()


def test_every_page_keeps_the_strict_policy_no_inline_script_and_nothing_from_outside(page, dash_server):
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(dash_server.base_url) else None)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(page)
    for path in _PAGES:
        answer = page.goto(path)
        assert answer is not None
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, path
        inline = page.evaluate("[...document.scripts].filter(s => !s.src).length")
        assert inline == 0, path
        assert page.locator("[style]").count() == 0, path  # no inline style either
    assert outside == [] and violations == []


def test_serve_prints_the_dashboards_address_never_the_token(dash_server):
    printed = dash_server.log(None)
    assert f"{dash_server.base_url}/dashboard/" in printed
    assert ADMIN_TOKEN not in printed


def test_an_operator_renames_and_deletes_a_partner_removes_a_line_and_pauses_a_subscription(
    page, dash_server, receiver
):
    _server["base_url"] = base = dash_server.base_url
    partner_id, name = _new_partner()
    key = admin_request_ok("POST", f"/partners/{partner_id}/keys")["key"]
    kept, removed = new_number(), new_number()
    for number in (kept, removed):
        admin_request_ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    client = LinqAPIV3(api_key=key, base_url=f"{base}/api/partner", max_retries=0)
    path = receiver.new_path()
    subscription = client.webhook_subscriptions.create(
        target_url=f"{receiver.base_url}{path}", subscribed_events=["contact_card.created", "contact_card.updated"]
    )
    client.contact_card.create(phone_number=kept, first_name="Paid")
    event_id = receiver.wait(path, 1)[0].headers["webhook-id"]
    sign_in(page)

    # A delivery's payload: the signed body, never the secret.
    page.goto(f"/dashboard/webhooks/deliveries/{event_id}/{subscription.id}")
    payload = page.inner_text("#payload")
    assert '"first_name": "Paid"' in payload and subscription.signing_secret not in page.content()
    # Disabled, a subscription receives no new event; enabled again, it does.
    page.goto("/dashboard/webhooks")
    row = page.locator(f"table.subscriptions tr[data-subscription='{subscription.id}']")
    _submit(page, row.locator("button:has-text('Disable')"))
    assert "disabled" in page.inner_text(f"table.subscriptions tr[data-subscription='{subscription.id}'] .state")
    client.contact_card.create(phone_number=removed, first_name="Unheard")
    _submit(page, page.locator(f"table.subscriptions tr[data-subscription='{subscription.id}'] button"))
    client.contact_card.update(phone_number=kept, first_name="Heard")
    received = receiver.wait(path, 2)
    assert "Heard" in received[1].body and not any("Unheard" in r.body for r in received)  # not while disabled

    # From a line, its deliveries: this number's only.
    page.goto(f"/dashboard/lines/{kept}")
    page.click("#line-deliveries")
    numbers = page.locator("table.deliveries tbody tr[data-event] td:nth-child(3)").all_inner_texts()
    assert numbers == [kept, kept], numbers

    # A line removed, after a page that says what goes.
    page.goto(f"/dashboard/lines/{removed}")
    page.click("text=Remove the line…")
    assert "its card" in page.inner_text("#confirm-goes")
    _submit(page, "button:has-text('Remove the line')")
    assert f"Line {removed} removed." in page.inner_text("p.done")
    assert removed not in [line["phone_number"] for line in admin_request_ok("GET", "/lines")]

    # Renamed, then deleted with everything that is the partner's.
    page.goto("/dashboard/partners")
    new_name = f"{name} renamed"
    section = _section(page, name)
    section.locator("form.rename input[name=name]").fill(new_name)
    _submit(page, section.locator("button:has-text('Rename')"))
    assert new_name in [p["name"] for p in admin_request_ok("GET", "/partners")]
    _section(page, new_name).locator("a:has-text('Delete partner')").click()
    goes = page.inner_text("#confirm-goes")
    assert "1 key" in goes and "1 line" in goes and "1 webhook subscription" in goes
    page.reload()  # the page that asks changes nothing
    assert partner_id in [p["id"] for p in admin_request_ok("GET", "/partners")]
    _submit(page, "button:has-text('Delete the partner')")
    assert partner_id not in [p["id"] for p in admin_request_ok("GET", "/partners")]
    gone = httpx.get(
        f"{base}/v3/contact_card", params={"phone_number": kept}, headers={"authorization": f"Bearer {key}"}
    )
    assert gone.status_code == 401  # its key went with it


def test_the_api_reference_is_grouped_by_resource(page, dash_server):
    page.goto("/docs")
    page.wait_for_selector("#reference .opblock-tag")
    sections = [t.strip() for t in page.locator("#reference .opblock-tag-section h3 .nostyle span").all_inner_texts()]
    assert "default" not in sections
    assert sections[:3] == ["Contact cards", "Webhook subscriptions", "Images"], sections
    # Each contact-card route once in its own section; the SDKs' alias paths apart.
    cards = page.locator("#reference .opblock-tag-section", has=page.locator("h3:has-text('Contact cards')"))
    paths = cards.locator(".opblock-summary-path").all_inner_texts()
    assert paths and all(not p.startswith("/api/partner") for p in paths), paths


def test_a_key_is_issued_with_a_label_shown_beside_it(page, dash_server):
    _server["base_url"] = dash_server.base_url
    partner_id, name = _new_partner()
    sign_in(page)
    page.goto("/dashboard/partners")
    section = _section(page, name)
    section.locator("form.issue input[name=label]").fill("staging laptop")
    _submit(page, section.locator("button:has-text('Issue a key')"))
    assert page.inner_text("#issued-key").startswith("cc_")
    assert _section(page, name).locator("td.label").all_inner_texts() == ["staging laptop"]
    assert [k["label"] for k in _keys_of(partner_id)] == ["staging laptop"]


def test_the_api_reference_has_the_admin_api_in_a_section_of_its_own(page, dash_server):
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto("/docs")
    page.wait_for_selector("#admin-reference .opblock")
    admin_paths = page.locator("#admin-reference .opblock-summary-path").all_inner_texts()
    assert any(p.strip().startswith("/partners") for p in admin_paths), admin_paths
    partner_paths = page.locator("#reference .opblock-summary-path").all_inner_texts()
    assert not any(p.strip().startswith("/partners") for p in partner_paths)
    assert violations == []
