"""The pytest plugin, as a user of the package writes a test with it (no conftest needed)."""

import linq
import pytest


def test_a_429_then_the_window_passes(contactcard_partner, linq_client, contactcard_admin, contactcard_clock):
    phone = contactcard_partner.lines[0]
    contactcard_admin.change_settings(write_budget=1)
    linq_client.contact_card.create(phone_number=phone, first_name="Ada")
    with pytest.raises(linq.RateLimitError):
        linq_client.contact_card.update(phone_number=phone, first_name="Grace")
    contactcard_clock.advance(600)  # the budget window passes, without waiting
    assert linq_client.contact_card.update(phone_number=phone, first_name="Grace").first_name == "Grace"


def test_a_failing_device(contactcard_partner, linq_client, contactcard_device, contactcard_admin):
    phone = contactcard_partner.lines[1]
    contactcard_device.script(phone, fail_next=1)
    answer = linq_client.contact_card.with_raw_response.create(phone_number=phone, first_name="Ada")
    assert answer.parse().is_active is False
    [seen] = contactcard_admin.requests(trace_id=answer.headers["x-trace-id"])
    assert (seen["method"], seen["phone_number"], seen["status"]) == ("POST", phone, 200)
