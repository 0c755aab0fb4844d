"""The dashboard in a real browser (headless Debian Chromium) against a real server."""

from __future__ import annotations

import re
import uuid

import linq
import pytest
from linq import LinqAPIV3

from tests.conftest import admin_request, new_number
from tests.dashboard.conftest import sign_in
from tests.support import images


def _shoot(page, server, folder, name: str) -> None:
    # One set of screenshots, from the SQLite run (the pages are the same on both).
    if server.backend == "sqlite":
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5000, "a blank page?"


def _photo_loaded(page, selector: str) -> bool:
    # naturalWidth stays 0 for an image the browser could not load (or the CSP blocked).
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_partner_key_line_and_a_card_set_up_through_the_sdk(page, dash_server, image_host, screenshots):
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto("/dashboard")
    _shoot(page, dash_server, screenshots, "sign-in")
    sign_in(page)

    page.click("nav >> text=Partners and keys")
    name = f"Shop {uuid.uuid4().hex[:6]}"
    page.fill("input[name=name]", name)
    page.click("button:has-text('Create partner')")
    section = page.locator("section.partner", has=page.locator(f"bdi:text-is('{name}')"))
    section.locator("button:has-text('Issue a key')").click()
    key = page.inner_text("#issued-key").strip()
    assert key.startswith("cc_"), key
    partner_id = page.locator("section.partner", has=page.locator(f"bdi:text-is('{name}')")).get_attribute(
        "data-partner"
    )
    _shoot(page, dash_server, screenshots, "partners")
    # Shown once: the next visit has no key on it.
    page.goto("/dashboard/partners")
    assert key not in page.content()

    shown, failing = new_number(), new_number()
    for number in (shown, failing):
        page.click("nav >> text=Lines and cards")
        page.select_option("select[name=partner_id]", partner_id)
        page.fill("form:has(select) input[name=phone_number]", number)
        page.click("button:has-text('Add line')")
        page.wait_for_url(re.compile(re.escape(number.replace("+", "%2B")) + "$|" + re.escape(number) + "$"))

    client = LinqAPIV3(api_key=key, base_url=f"{dash_server.base_url}/api/partner", max_retries=0)
    source = image_host.serve(images.jpeg(300, 200, colour=(30, 90, 200)))
    card = client.contact_card.create(phone_number=shown, first_name="Ada", last_name="Lovelace", image_url=source)
    assert card.is_active is True

    page.goto(f"/dashboard/lines/{shown}")
    assert page.inner_text("#first-name") == "Ada"
    assert page.inner_text("#card-state") == "active"
    assert page.inner_text("#device-shows") == "Ada Lovelace"
    assert _photo_loaded(page, "img.photo.large")
    assert _photo_loaded(page, "img.device-photo")  # the device was given the same CDN copy
    _shoot(page, dash_server, screenshots, "line")

    # A failed apply scripted from the dashboard: the card is stored, inactive.
    page.goto(f"/dashboard/lines/{failing}")
    page.fill("input[name=fail_next]", "1")
    page.click("button:has-text('Save script')")
    assert page.input_value("input[name=fail_next]") == "1"
    failed = client.contact_card.create(phone_number=failing, first_name="Grace")
    assert failed.is_active is False
    page.reload()
    assert page.inner_text("#card-state") == "inactive"
    assert page.input_value("input[name=fail_next]") == "0"  # the script was used up

    page.goto(f"/dashboard/lines?partner={partner_id}")
    rows = page.locator("table.cards tbody tr")
    assert rows.count() == 2
    assert rows.nth(0 if shown < failing else 1).locator(".state").inner_text() == "active"
    assert rows.nth(1 if shown < failing else 0).locator(".state").inner_text() == "inactive"
    assert _photo_loaded(page, f"tr[data-number='{shown}'] img.photo")
    # Search by number finds the one line.
    page.goto("/dashboard/lines")
    page.fill("input[name=q]", shown)
    page.click("button:has-text('Search')")
    assert page.locator("table.cards tbody tr").count() == 1
    assert page.locator(f"tr[data-number='{shown}']").count() == 1
    page.goto(f"/dashboard/lines?partner={partner_id}")
    _shoot(page, dash_server, screenshots, "lines")

    # Every field of the script is saved as typed.
    page.goto(f"/dashboard/lines/{shown}")
    page.fill("input[name=rate_limit_next]", "2")
    page.fill("input[name=apply_delay]", "1.5")
    page.check("input[name=rcs_unavailable]")
    page.click("button:has-text('Save script')")
    device = admin_request(dash_server.base_url, "GET", f"/devices/{shown}").json()
    assert (device["fail_next"], device["rate_limit_next"], device["rcs_unavailable"], device["apply_delay"]) == (
        0,
        2,
        True,
        1.5,
    )
    assert page.is_checked("input[name=rcs_unavailable]")

    # Revoked from the dashboard, the key stops working at once.
    page.goto("/dashboard/partners")
    section = page.locator("section.partner", has=page.locator(f"bdi:text-is('{name}')"))
    assert section.locator("tbody tr").count() == 1  # the one key issued above
    section.locator("a:has-text('Revoke')").click()  # a page that asks first
    page.click("button:has-text('Revoke the key')")
    section = page.locator("section.partner", has=page.locator(f"bdi:text-is('{name}')"))
    assert "revoked" in section.locator("tbody tr").first.inner_text()
    assert section.locator("a:has-text('Revoke')").count() == 0
    with pytest.raises(linq.AuthenticationError):
        client.contact_card.retrieve()
    assert violations == []


def test_hostile_names_show_as_text(page, dash_server):
    # Names refuse control and bidi characters (cards' and partners' alike) but not markup.
    hostile = "<script>window.__pwned = 1</script>evil & co"
    created = admin_request(dash_server.base_url, "POST", "/partners", json={"name": hostile})
    assert created.status_code == 200, created.text
    partner_id = created.json()["id"]
    key = admin_request(dash_server.base_url, "POST", f"/partners/{partner_id}/keys").json()["key"]
    number = new_number()
    added = admin_request(
        dash_server.base_url, "POST", "/lines", json={"partner_id": partner_id, "phone_number": number}
    )
    assert added.status_code == 200, added.text
    markup = '<img src=x onerror="window.__pwned = 2">'
    client = LinqAPIV3(api_key=key, base_url=f"{dash_server.base_url}/api/partner", max_retries=0)
    client.contact_card.create(phone_number=number, first_name=markup, last_name='O\'Brien & "Co"')

    sign_in(page)
    for path in ("/dashboard/partners", f"/dashboard/lines?partner={partner_id}", f"/dashboard/lines/{number}"):
        page.goto(path)
        assert page.evaluate("window.__pwned") is None, path  # nothing ran
    page.goto("/dashboard/partners")
    names = page.locator("bdi.partner-name").all_inner_texts()
    assert hostile in names  # as text, inside its own <bdi>
    page.goto(f"/dashboard/lines/{number}")
    assert page.inner_text("#first-name") == markup
    assert page.inner_text("#last-name") == 'O\'Brien & "Co"'
    assert page.locator("main img").count() == 0  # the name's <img> is text, not an element


def test_the_api_reference_is_searchable_and_linked_from_the_error_pages(page, dash_server, screenshots):
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto("/docs/errors/1005")
    page.click("text=API reference")
    page.wait_for_url(re.compile(r"/docs$"))
    page.wait_for_selector("#reference .opblock")
    every = page.locator("#reference .opblock").count()
    assert "Search paths" in (page.get_attribute("#reference input.operation-filter-input", "placeholder") or "")
    assert every >= 3  # GET, POST and PATCH of the contact card at least
    page.fill("#reference input.operation-filter-input", "patch")
    page.wait_for_function(f"document.querySelectorAll('#reference .opblock').length < {every}")
    shown = page.locator("#reference .opblock").all_inner_texts()
    assert shown and all("PATCH" in text for text in shown), shown
    page.fill("#reference input.operation-filter-input", "")
    page.wait_for_function(f"document.querySelectorAll('#reference .opblock').length == {every}")
    _shoot(page, dash_server, screenshots, "api-reference")
    assert violations == []
