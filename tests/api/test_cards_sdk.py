"""The three endpoints through the official Python SDK, sync and async."""

from __future__ import annotations

import linq
import pytest

from tests.conftest import make_partner, new_number
from tests.support import images


def test_get_all_is_empty_for_a_new_partner(partner):
    assert partner.client().contact_card.retrieve().contact_cards == []


def test_setup_then_get_one_and_all(partner):
    client = partner.client()
    first, second = partner.lines[0], partner.lines[1]
    created = client.contact_card.create(phone_number=second, first_name="Ada", last_name="Lovelace")
    assert (created.phone_number, created.first_name, created.last_name, created.is_active) == (
        second,
        "Ada",
        "Lovelace",
        True,
    )
    assert created.image_url is None
    client.contact_card.create(phone_number=first, first_name="Grace")

    one = client.contact_card.retrieve(phone_number=second).contact_cards
    assert [(c.phone_number, c.first_name, c.is_active) for c in one] == [(second, "Ada", True)]
    every = client.contact_card.retrieve().contact_cards
    assert [c.phone_number for c in every] == sorted([first, second])
    assert client.contact_card.retrieve(phone_number=partner.lines[2]).contact_cards == []


def test_the_device_shows_what_was_applied(partner):
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Shown", last_name="Here")
    device = partner.device(phone)
    assert (device["first_name"], device["last_name"], device["applies"]) == ("Shown", "Here", 1)


def test_setup_twice_is_a_conflict_that_sdks_do_not_retry(partner):
    phone = partner.lines[0]
    client = partner.client(max_retries=2)
    client.contact_card.create(phone_number=phone, first_name="Once")
    with pytest.raises(linq.ConflictError) as caught:
        client.contact_card.create(phone_number=phone, first_name="Twice")
    assert caught.value.code == 2014
    assert caught.value.message.endswith("Contact card already exists") or "Contact card already exists" in str(
        caught.value
    )
    assert caught.value.response.headers["x-should-retry"] == "false"
    # The SDK honoured the header: one POST reached the device, the retry budget was not spent.
    assert partner.device(phone)["applies"] == 1
    assert client.contact_card.retrieve(phone_number=phone).contact_cards[0].first_name == "Once"


def test_patch_merges_present_fields_and_keeps_the_rest(partner):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="Old", last_name="Name")
    updated = client.contact_card.update(phone_number=phone, first_name="New")
    assert (updated.first_name, updated.last_name, updated.is_active) == ("New", "Name", True)
    assert partner.device(phone)["first_name"] == "New"


def test_patch_without_a_card_is_not_found(partner):
    with pytest.raises(linq.NotFoundError) as caught:
        partner.client().contact_card.update(phone_number=partner.lines[0], first_name="X")
    assert caught.value.code == 2001


def test_null_clears_last_name_and_image(partner, image_host):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(
        phone_number=phone, first_name="A", last_name="B", image_url=image_host.serve(images.jpeg())
    )
    cleared = client.contact_card.update(phone_number=phone, extra_body={"last_name": None, "image_url": None})
    assert (cleared.last_name, cleared.image_url) == (None, None)


def test_empty_patch_reapplies_the_stored_values(partner):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="Same")
    again = client.contact_card.update(phone_number=phone)
    assert (again.first_name, again.is_active) == ("Same", True)
    assert partner.device(phone)["applies"] == 2


def test_bad_phone_number_is_1002_on_every_endpoint(partner):
    client = partner.client()
    for call in (
        lambda: client.contact_card.retrieve(phone_number="5551234567"),
        lambda: client.contact_card.create(phone_number="+0123", first_name="A"),
        lambda: client.contact_card.update(phone_number="+1 555 123", first_name="A"),
    ):
        with pytest.raises(linq.BadRequestError) as caught:
            call()
        assert caught.value.code == 1002
        assert caught.value.doc_url.endswith("/errors/1002")


def test_a_wrong_key_is_401(server):
    client = linq.LinqAPIV3(api_key="cc_not-a-real-key", base_url=server.partner_base, max_retries=0)
    with pytest.raises(linq.AuthenticationError) as caught:
        client.contact_card.retrieve()
    assert caught.value.code == 2004


def test_unowned_and_unknown_numbers_are_the_same_403(partner, other_partner):
    client = partner.client()
    answers = []
    for number in (other_partner.lines[0], new_number()):
        with pytest.raises(linq.PermissionDeniedError) as caught:
            client.contact_card.retrieve(phone_number=number)
        answers.append((caught.value.status_code, caught.value.body))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403 and answers[0][1]["code"] == 2005


@pytest.mark.anyio
async def test_async_client_round_trip(partner):
    phone = partner.lines[0]
    async with partner.async_client() as client:
        created = await client.contact_card.create(phone_number=phone, first_name="Async")
        assert created.is_active is True
        updated = await client.contact_card.update(phone_number=phone, last_name="Client")
        assert (updated.first_name, updated.last_name) == ("Async", "Client")
        listed = await client.contact_card.retrieve(phone_number=phone)
        assert listed.contact_cards[0].last_name == "Client"


def test_both_mount_points_serve_the_same_cards(partner):
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Both")
    with partner.http() as http:
        short = http.get("/v3/contact_card", params={"phone_number": phone}).json()
        long = http.get("/api/partner/v3/contact_card", params={"phone_number": phone}).json()
    assert short == long and short["contact_cards"][0]["first_name"] == "Both"


def test_partners_never_see_each_others_cards(server):
    one, two = make_partner(server), make_partner(server)
    one.client().contact_card.create(phone_number=one.lines[0], first_name="One")
    two.client().contact_card.create(phone_number=two.lines[0], first_name="Two")
    assert [c.first_name for c in one.client().contact_card.retrieve().contact_cards] == ["One"]
    assert [c.first_name for c in two.client().contact_card.retrieve().contact_cards] == ["Two"]
