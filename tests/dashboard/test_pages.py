"""What the dashboard's pages show, in headless Chromium: the overview, filters and pages,
the journal's API traffic only, the error pages and the reference, on a phone, under the policy."""

from __future__ import annotations

import uuid
import warnings
from urllib.parse import quote

import httpx
from linq import LinqAPIV3

from tests.conftest import admin_request, new_number
from tests.dashboard.conftest import PAGES, sign_in
from tests.support import images

with warnings.catch_warnings():
    # Starlette asks for its `httpx2` fork; the locked httpx serves these in-process checks.
    warnings.simplefilter("ignore")


def _journal_paths_after(base_url: str, after_id: int) -> list[str]:
    entries = admin_request(base_url, "GET", "/requests", params={"after_id": after_id, "limit": 1000}).json()
    return [entry["path"] for entry in entries]


def _newest_journal_id(base_url: str) -> int:
    # A request of its own first: an id to count from, even in an empty journal.
    httpx.get(f"{base_url}/v3/contact_card", params={"phone_number": new_number()})
    entries = admin_request(base_url, "GET", "/requests", params={"limit": 1000}).json()
    return max(entry["id"] for entry in entries)


def test_the_journal_keeps_api_requests_only_and_agents_in_any_script(page, dash_server, image_host, admin):
    base = dash_server.base_url
    partner_id, _name = admin.new_partner()
    key = admin.ok("POST", f"/partners/{partner_id}/keys")["key"]
    number = new_number()
    admin.ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
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


def test_the_overview_says_whether_anything_needs_the_operator(page, dash_server, receiver, screenshots, admin):
    base = dash_server.base_url
    partner_id, _name = admin.new_partner()
    key = admin.ok("POST", f"/partners/{partner_id}/keys")["key"]
    active, inactive = new_number(), new_number()
    for number in (active, inactive):
        admin.ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    client = LinqAPIV3(api_key=key, base_url=f"{base}/api/partner", max_retries=0)
    client.contact_card.create(phone_number=active, first_name="Overview")
    admin.ok("PUT", f"/devices/{inactive}/script", json={"fail_next": 1})
    client.contact_card.create(phone_number=inactive, first_name="Stalled")

    sign_in(page)
    counts = admin.ok("GET", "/partners")
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


def test_lines_are_found_by_name_and_state_and_the_journal_by_method_path_and_page(page, dash_server, admin):
    base = dash_server.base_url
    partner_id, name = admin.new_partner()
    key = admin.ok("POST", f"/partners/{partner_id}/keys")["key"]
    number = new_number()
    admin.ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
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
    # By partner: its lines' requests only.
    other_id, _ = admin.new_partner()
    other = new_number()
    admin.ok("POST", "/lines", json={"partner_id": other_id, "phone_number": other})
    httpx.get(f"{base}/v3/contact_card", params={"phone_number": other})
    page.goto(f"/dashboard/requests?partner={partner_id}")
    shown = set(page.locator("table.journal tbody tr td:nth-child(4)").all_inner_texts())
    assert shown == {number}, shown


def test_on_a_phone_no_page_scrolls_sideways_and_sign_out_is_in_reach(browser, dash_server, admin):
    partner_id, _name = admin.new_partner(f"A partner with a rather long name {uuid.uuid4().hex}")
    number = new_number()
    admin.ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=dash_server.base_url)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        sign_in(page)
        for path in (*PAGES, f"/dashboard/lines/{number}"):
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
    for path in PAGES:
        answer = page.goto(path)
        assert answer is not None
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy, path
        inline = page.evaluate("[...document.scripts].filter(s => !s.src).length")
        assert inline == 0, path
        assert page.locator("[style]").count() == 0, path  # no inline style either
    assert outside == [] and violations == []


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
