"""A day on the dashboard in headless Chromium: reloading, going back, signing out, typing
mistakes, on a phone. One test per surprise an operator met before."""

from __future__ import annotations

import re
import uuid

from tests.conftest import admin_request, new_number
from tests.dashboard.conftest import sign_in


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


def _section(page, name: str):
    return page.locator("section.partner", has=page.locator(f"bdi:text-is('{name}')"))


def test_reloading_or_going_back_after_a_form_posts_nothing_again(page, dash_server):
    _server["base_url"] = dash_server.base_url
    partner_id, name = _new_partner()
    sign_in(page)
    page.goto("/dashboard/partners")
    _section(page, name).locator("button:has-text('Issue a key')").click()
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
    page.click("#script button:has-text('Save script')")
    page.reload()
    assert admin_request_ok("GET", f"/devices/{number}")["fail_next"] == 2
    page.goto("/dashboard/partners")
    _section(page, name).locator("button:has-text('Revoke')").click()
    page.reload()
    assert "Key revoked" not in page.content()  # the message was shown once
    page.fill("#new-partner input[name=name]", "   ")
    page.click("#new-partner button")
    assert page.url.endswith("/dashboard/partners")
    page.reload()
    assert page.locator("p.error").count() == 0
