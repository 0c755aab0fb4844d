"""Device outcomes, the two profiles and the write budget."""

from __future__ import annotations

import linq
import pytest

from tests.conftest import make_partner


def test_failed_apply_answers_inactive_and_can_be_set_up_again(partner):
    phone = partner.lines[0]
    partner.script(phone, fail_next=1)
    client = partner.client()
    failed = client.contact_card.create(phone_number=phone, first_name="Try")
    assert failed.is_active is False
    assert client.contact_card.retrieve(phone_number=phone).contact_cards[0].is_active is False
    assert partner.device(phone)["first_name"] is None
    # Not set up successfully yet: PATCH is 404 in the seed profile; POST may be retried.
    with pytest.raises(linq.NotFoundError):
        client.contact_card.update(phone_number=phone, first_name="Nope")
    done = client.contact_card.create(phone_number=phone, first_name="Again")
    assert (done.first_name, done.is_active) == ("Again", True)


def test_failed_patch_keeps_the_new_values_inactive(partner):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="Before")
    partner.script(phone, fail_next=1)
    failed = client.contact_card.update(phone_number=phone, first_name="After")
    assert (failed.first_name, failed.is_active) == ("After", False)
    assert partner.device(phone)["first_name"] == "Before"
    # A card that was set up once may be POSTed again while inactive, and PATCHed.
    retried = client.contact_card.update(phone_number=phone)
    assert (retried.first_name, retried.is_active) == ("After", True)


def test_upstream_rate_limit_is_503_4004_not_retried(partner):
    phone = partner.lines[0]
    partner.script(phone, rate_limit_next=1)
    client = partner.client(max_retries=2)
    with pytest.raises(linq.InternalServerError) as caught:
        client.contact_card.create(phone_number=phone, first_name="Limited")
    assert caught.value.status_code == 503 and caught.value.code == 4004
    assert "rate-limited" in caught.value.body["message"]
    assert caught.value.response.headers["x-should-retry"] == "false"
    card = client.contact_card.retrieve(phone_number=phone).contact_cards[0]
    assert (card.first_name, card.is_active) == ("Limited", False)


def test_rcs_check_unavailable_blocks_patch_and_changes_nothing(partner):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="Stable")
    partner.script(phone, rcs_unavailable=True)
    with partner.http() as http:
        response = http.patch("/v3/contact_card", params={"phone_number": phone}, json={"first_name": "Changed"})
    assert response.status_code == 503
    assert response.json()["error"] | {"doc_url": None} == {
        "status": 503,
        "code": 4004,
        "message": "RCS capability check is temporarily unavailable.",
        "doc_url": None,
    }
    card = client.contact_card.retrieve(phone_number=phone).contact_cards[0]
    assert (card.first_name, card.is_active) == ("Stable", True)
    assert partner.device(phone)["applies"] == 1


def test_hosted_profile_answers_2022_and_patches_any_card(farm, backend):
    server = farm.get(backend, profile="hosted")
    partner = make_partner(server)
    phone = partner.lines[0]
    partner.script(phone, fail_next=1)
    client = partner.client()
    with pytest.raises(linq.InternalServerError) as caught:
        client.contact_card.create(phone_number=phone, first_name="Hosted")
    assert caught.value.status_code == 500 and caught.value.code == 2022
    assert client.contact_card.retrieve(phone_number=phone).contact_cards[0].is_active is False
    # hosted: PATCH needs only that a card exists.
    updated = client.contact_card.update(phone_number=phone, last_name="Patched")
    assert (updated.first_name, updated.last_name, updated.is_active) == ("Hosted", "Patched", True)


def test_write_budget_is_shared_by_post_and_patch(partner):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="One")
    client.contact_card.update(phone_number=phone, first_name="Two")
    client.contact_card.update(phone_number=phone, first_name="Three")
    with partner.http() as http:
        response = http.patch("/v3/contact_card", params={"phone_number": phone}, json={"first_name": "Four"})
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == 1007 and 590 <= error["retry_after"] <= 600
    assert response.headers["retry-after"] == str(error["retry_after"])
    assert response.headers["x-should-retry"] == "false"
    # 409 wins over 429: the state check comes first.
    with partner.http() as http:
        conflict = http.post("/v3/contact_card", json={"phone_number": phone, "first_name": "Five"})
    assert conflict.status_code == 409
    assert client.contact_card.retrieve(phone_number=phone).contact_cards[0].first_name == "Three"
    # Other numbers have their own budget.
    assert client.contact_card.create(phone_number=partner.lines[1], first_name="Other").is_active


def test_refused_calls_do_not_spend_the_budget(partner, image_host):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="Start")
    bad_image = image_host.serve(b"not an image", content_type="image/png")
    with partner.http() as http:
        for _ in range(3):
            assert http.post("/v3/contact_card", json={"phone_number": phone, "first_name": "X"}).status_code == 409
            assert (
                http.patch(
                    "/v3/contact_card", params={"phone_number": phone}, json={"image_url": bad_image}
                ).status_code
                == 400
            )
            assert (
                http.patch("/v3/contact_card", params={"phone_number": phone}, json={"first_name": ""}).status_code
                == 400
            )
    assert client.contact_card.update(phone_number=phone, first_name="Second").is_active
    assert client.contact_card.update(phone_number=phone, first_name="Third").is_active


def test_budget_can_be_switched_off(farm, backend):
    server = farm.get(backend, write_budget=0)
    partner = make_partner(server, lines=1)
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="0")
    for n in range(1, 7):
        assert client.contact_card.update(phone_number=phone, first_name=str(n)).first_name == str(n)


def test_budget_window_is_configurable(farm, backend):
    import time

    server = farm.get(backend, write_budget=1, write_budget_window=1)
    partner = make_partner(server, lines=1)
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="A")
    with pytest.raises(linq.RateLimitError) as caught:
        client.contact_card.update(phone_number=phone, first_name="B")
    assert caught.value.retry_after == 1
    time.sleep(1.1)
    assert client.contact_card.update(phone_number=phone, first_name="C").first_name == "C"


def test_upstream_rate_limit_on_patch_leaves_new_values_inactive(partner):
    phone = partner.lines[0]
    client = partner.client()
    client.contact_card.create(phone_number=phone, first_name="Before")
    partner.script(phone, rate_limit_next=1)
    with partner.http() as http:
        response = http.patch("/v3/contact_card", params={"phone_number": phone}, json={"first_name": "After"})
    assert response.status_code == 503 and response.json()["error"]["code"] == 4004
    assert response.headers["x-should-retry"] == "false"
    card = client.contact_card.retrieve(phone_number=phone).contact_cards[0]
    assert (card.first_name, card.is_active) == ("After", False)
    assert partner.device(phone)["first_name"] == "Before"
