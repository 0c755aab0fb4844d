"""Forms on the dashboard in headless Chromium: a reload or Back posts nothing again, a
mistake keeps what was typed beside its form, and what each action does is said first."""

from __future__ import annotations

import re
import warnings

import httpx
from linq import LinqAPIV3

from contactcard.store.controls import FORGOTTEN_TABLES, FORGOTTEN_WITH_EVERYTHING
from tests.conftest import admin_request, new_number
from tests.dashboard.conftest import section, sign_in, submit

with warnings.catch_warnings():
    # Starlette asks for its `httpx2` fork; the locked httpx serves these in-process checks.
    warnings.simplefilter("ignore")


def test_reloading_or_going_back_after_a_form_posts_nothing_again(page, dash_server, admin):
    partner_id, name = admin.new_partner()
    sign_in(page)
    page.goto("/dashboard/partners")
    submit(page, section(page, name).locator("button:has-text('Issue a key')"))
    key = page.inner_text("#issued-key").strip()
    assert key.startswith("cc_")
    # The answer is a GET page: a reload neither issues a second key nor shows this one again.
    assert page.url.endswith("/dashboard/partners")
    page.reload()
    assert key not in page.content() and page.locator("#issued-key").count() == 0
    assert len(admin.keys_of(partner_id)) == 1
    # Back and forward again: no bare "Method Not Allowed", and still one key.
    page.go_back()
    page.go_forward()
    assert "Method Not Allowed" not in page.content()
    assert len(admin.keys_of(partner_id)) == 1
    # A form's address opened by hand is a page of the dashboard, not plain text.
    answer = page.goto(f"/dashboard/partners/{partner_id}/keys")
    assert answer is not None and answer.status == 405
    assert page.locator("h1").inner_text() == "Nothing to show here"
    assert len(admin.keys_of(partner_id)) == 1

    # Every other form answers with a GET page too: reloading it changes nothing.
    number = new_number()
    page.goto("/dashboard/lines")
    page.select_option("#add-line select[name=partner_id]", partner_id)
    page.fill("#add-line input[name=phone_number]", number)
    page.click("#add-line button:has-text('Add line')")
    page.wait_for_url(re.compile(re.escape(number.replace("+", "%2B")) + "$|" + re.escape(number) + "$"))
    page.reload()
    page.fill("#script input[name=fail_next]", "2")
    submit(page, "#script button:has-text('Save script')")
    page.reload()
    assert admin.ok("GET", f"/devices/{number}")["fail_next"] == 2
    page.goto("/dashboard/partners")
    section(page, name).locator("a:has-text('Revoke')").click()
    submit(page, "button:has-text('Revoke the key')")
    page.reload()
    assert "Key revoked" not in page.content()  # the message was shown once
    page.fill("#new-partner input[name=name]", "   ")
    submit(page, "#new-partner button")
    assert page.locator("#new-partner p.error").count() == 1
    assert page.url.endswith("/dashboard/partners")
    page.reload()
    assert page.locator("p.error").count() == 0


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
    submit(page, "#new-partner button")
    assert "must not contain control or bidirectional characters" in page.inner_text("#new-partner p.error")
    assert spoof not in page.locator("bdi.partner-name").all_inner_texts()


def test_a_form_keeps_what_was_typed_and_shows_its_error_beside_it(page, dash_server, admin):
    partner_id, _name = admin.new_partner()
    number = new_number()
    admin.ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
    sign_in(page)
    # The add-line form sits above the table, and a mistake is shown inside it, as typed.
    page.goto("/dashboard/lines")
    assert page.locator("#add-line").bounding_box()["y"] < page.locator("table.cards").bounding_box()["y"]
    page.select_option("#add-line select[name=partner_id]", partner_id)
    page.fill("#add-line input[name=phone_number]", "5551234")
    submit(page, "#add-line button")
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
    submit(page, "#script button")
    assert "0 to 3600" in page.inner_text("#script p.error")
    assert page.input_value("#script input[name=fail_next]") == "3"
    assert page.input_value("#script input[name=apply_delay]") == "5000"
    assert page.is_checked("#script input[name=rcs_unavailable]")
    assert admin.ok("GET", f"/devices/{number}")["fail_next"] == 0  # nothing saved


def test_the_clock_takes_0_or_more_seconds_as_the_docs_say(page, dash_server, admin):
    sign_in(page)
    page.goto("/dashboard/controls")
    form = "form:has(input[name=seconds])"
    page.eval_on_selector(form, "f => { f.noValidate = true; }")
    page.fill("input[name=seconds]", "-5")
    submit(page, f"{form} button")
    assert "a number of seconds, 0 or more" in page.inner_text(f"{form} p.error")
    assert page.input_value("input[name=seconds]") == "-5"
    page.fill("input[name=seconds]", "0")
    submit(page, f"{form} button")
    assert page.inner_text("p.done") == "Clock changed."
    # The same rule as the admin API's (and the docs' "0 or more"): 0 passes, -5 does not.
    assert admin_request(dash_server.base_url, "POST", "/clock/advance", json={"seconds": 0}).status_code == 200
    assert admin_request(dash_server.base_url, "POST", "/clock/advance", json={"seconds": -5}).status_code == 400
    admin.ok("DELETE", "/clock")


def test_an_operator_renames_and_deletes_a_partner_removes_a_line_and_pauses_a_subscription(
    page, dash_server, receiver, admin
):
    base = dash_server.base_url
    partner_id, name = admin.new_partner()
    key = admin.ok("POST", f"/partners/{partner_id}/keys")["key"]
    kept, removed = new_number(), new_number()
    for number in (kept, removed):
        admin.ok("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
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
    submit(page, row.locator("button:has-text('Disable')"))
    assert "disabled" in page.inner_text(f"table.subscriptions tr[data-subscription='{subscription.id}'] .state")
    client.contact_card.create(phone_number=removed, first_name="Unheard")
    submit(page, page.locator(f"table.subscriptions tr[data-subscription='{subscription.id}'] button"))
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
    submit(page, "button:has-text('Remove the line')")
    assert f"Line {removed} removed." in page.inner_text("p.done")
    assert removed not in [line["phone_number"] for line in admin.ok("GET", "/lines")]

    # Renamed, then deleted with everything that is the partner's.
    page.goto("/dashboard/partners")
    new_name = f"{name} renamed"
    found = section(page, name)
    found.locator("form.rename input[name=name]").fill(new_name)
    submit(page, found.locator("button:has-text('Rename')"))
    assert new_name in [p["name"] for p in admin.ok("GET", "/partners")]
    section(page, new_name).locator("a:has-text('Delete partner')").click()
    goes = page.inner_text("#confirm-goes")
    assert "1 key" in goes and "1 line" in goes and "1 webhook subscription" in goes
    page.reload()  # the page that asks changes nothing
    assert partner_id in [p["id"] for p in admin.ok("GET", "/partners")]
    submit(page, "button:has-text('Delete the partner')")
    assert partner_id not in [p["id"] for p in admin.ok("GET", "/partners")]
    gone = httpx.get(
        f"{base}/v3/contact_card", params={"phone_number": kept}, headers={"authorization": f"Bearer {key}"}
    )
    assert gone.status_code == 401  # its key went with it


def test_a_key_is_issued_with_a_label_shown_beside_it(page, dash_server, admin):
    partner_id, name = admin.new_partner()
    sign_in(page)
    page.goto("/dashboard/partners")
    found = section(page, name)
    found.locator("form.issue input[name=label]").fill("staging laptop")
    submit(page, found.locator("button:has-text('Issue a key')"))
    assert page.inner_text("#issued-key").startswith("cc_")
    assert section(page, name).locator("td.label").all_inner_texts() == ["staging laptop"]
    assert [k["label"] for k in admin.keys_of(partner_id)] == ["staging laptop"]
