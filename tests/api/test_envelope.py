"""Raw HTTP: the exact envelope, headers and codes, from every route."""

from __future__ import annotations

import json

import httpx
import pytest

from contactcard import errors


def assert_envelope(response: httpx.Response, status: int, code: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "error", "trace_id"}
    assert body["success"] is False
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert body["error"]["status"] == status and body["error"]["code"] == code
    assert body["error"]["doc_url"].endswith(f"/docs/errors/{code}")
    assert body["error"]["message"].startswith(errors.BY_CODE[code].message.rstrip("."))
    assert "Traceback" not in response.text and "detail" not in body
    return body


def test_every_response_carries_a_unique_trace_id(partner):
    with partner.http() as http:
        ids = {http.get("/v3/contact_card").headers["x-trace-id"] for _ in range(5)}
        ids.add(http.get("/nope").headers["x-trace-id"])
    assert len(ids) == 6


def test_success_is_application_json(partner):
    with partner.http() as http:
        response = http.get("/v3/contact_card")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"contact_cards": []}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer"},
        {"authorization": "Basic abc"},
        {"authorization": "Bearer cc_unknown"},
        {"authorization": "Token cc_unknown"},
    ],
)
def test_missing_or_bad_keys_are_401(server, headers):
    response = httpx.get(f"{server.base_url}/v3/contact_card", headers=headers)
    assert_envelope(response, 401, 2004)


def test_two_authorization_headers_are_401(partner):
    response = httpx.get(
        f"{partner.server.base_url}/v3/contact_card",
        headers=[("authorization", f"Bearer {partner.key}"), ("authorization", f"Bearer {partner.key}")],
    )
    assert_envelope(response, 401, 2004)


def test_scheme_is_case_insensitive(partner):
    response = httpx.get(
        f"{partner.server.base_url}/v3/contact_card", headers={"authorization": f"bearer {partner.key}"}
    )
    assert response.status_code == 200


def test_a_revoked_key_stops_at_once(server):
    from tests.conftest import make_partner

    partner = make_partner(server)
    with partner.http() as http:
        assert http.get("/v3/contact_card").status_code == 200
        assert server.admin("DELETE", f"/keys/{partner.key_id}").status_code == 204
        assert_envelope(http.get("/v3/contact_card"), 401, 2004)


def test_bad_input_from_an_unknown_key_is_still_401(server):
    response = httpx.post(
        f"{server.base_url}/v3/contact_card", content=b"{not json", headers={"authorization": "Bearer cc_nobody"}
    )
    assert_envelope(response, 401, 2004)


def test_unknown_route_and_wrong_method(partner):
    with partner.http() as http:
        assert_envelope(http.get("/v3/nothing_here"), 404, 2001)
        response = http.delete("/v3/contact_card")
        assert_envelope(response, 405, 1405)
        assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST", "PATCH"}
        # No trailing-slash redirect: a 307 has no envelope.
        assert_envelope(http.get("/v3/contact_card/"), 404, 2001)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2]",
        b'"a string"',
        b'{"phone_number": "+15551234567", "first_name": "A", "first_name": "B"}',
        b'{"phone_number": "+15551234567", "first_name": "A", "x": NaN}',
        b'{"phone_number": "+15551234567", "first_name": "A", "x": Infinity}',
        b'{"phone_number": "+15551234567", "first_name": "A", "x": 1' + b"0" * 400 + b"}",
        b"\xff\xfe{}",
        b"[" * 20000 + b"]" * 20000,
    ],
)
def test_bodies_that_are_not_one_json_object_are_1003(partner, raw):
    with partner.http() as http:
        response = http.post("/v3/contact_card", content=raw, headers={"content-type": "application/json"})
    assert_envelope(response, 400, 1003)
    assert partner.client().contact_card.retrieve().contact_cards == []


def test_form_content_type_is_1003(partner):
    with partner.http() as http:
        response = http.post("/v3/contact_card", data={"phone_number": partner.lines[0], "first_name": "A"})
    body = assert_envelope(response, 400, 1003)
    assert "application/json" in body["error"]["message"]


def test_oversize_bodies_are_413_declared_or_chunked(partner):
    big = json.dumps({"phone_number": partner.lines[0], "first_name": "A", "pad": "x" * 70_000}).encode()
    with partner.http() as http:
        assert_envelope(
            http.post("/v3/contact_card", content=big, headers={"content-type": "application/json"}), 413, 1413
        )

        def chunks():
            for start in range(0, len(big), 4096):
                yield big[start : start + 4096]

        response = http.post("/v3/contact_card", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        assert_envelope(response, 413, 1413)
    assert partner.client().contact_card.retrieve().contact_cards == []


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"first_name": "A"}, 1001, "phone_number"),
        ({"phone_number": "+15551230000"}, 1001, "first_name"),
        ({"phone_number": "+15551230000", "first_name": None}, 1001, "first_name"),
        ({"phone_number": 15551230000, "first_name": "A"}, 1002, ""),
        ({"phone_number": "+15551230000\n", "first_name": "A"}, 1002, ""),
        ({"phone_number": "+1555١٢٣٤٥٦٧", "first_name": "A"}, 1002, ""),
        ({"phone_number": "+15551230000", "first_name": 5}, 1005, "first_name"),
        ({"phone_number": "+15551230000", "first_name": "   "}, 1005, "first_name"),
        ({"phone_number": "+15551230000", "first_name": "x" * 101}, 1005, "first_name"),
        ({"phone_number": "+15551230000", "first_name": "Bad\u0000Name"}, 1005, "first_name"),
        ({"phone_number": "+15551230000", "first_name": "Bad\u202eName"}, 1005, "first_name"),
        ({"phone_number": "+15551230000", "first_name": "A", "last_name": "\u2066x"}, 1005, "last_name"),
        (
            {"phone_number": "+15551230000", "first_name": "A", "image_url": "ftp://example.com/a.jpg"},
            1005,
            "image_url",
        ),
        ({"phone_number": "+15551230000", "first_name": "A", "image_url": 7}, 1005, "image_url"),
    ],
)
def test_field_validation(partner, body, code, needle):
    with partner.http() as http:
        response = http.post("/v3/contact_card", json=body)
    envelope = assert_envelope(response, 400, code)
    assert needle in envelope["error"]["message"]


def test_names_are_trimmed_and_emoji_are_fine(partner):
    with partner.http() as http:
        response = http.post(
            "/v3/contact_card",
            json={"phone_number": partner.lines[0], "first_name": "  Zoë 👩‍💻  ", "last_name": "x" * 100},
        )
    assert response.status_code == 200, response.text
    assert response.json()["first_name"] == "Zoë 👩‍💻"


def test_query_phone_rules(partner):
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Q")
    base = partner.server.base_url
    with partner.http() as http:
        # An unencoded `+` typed by hand arrives as a space and is read as `+`.
        raw = http.get(f"{base}/v3/contact_card?phone_number={phone}")
        assert raw.status_code == 200 and raw.json()["contact_cards"][0]["phone_number"] == phone
        repeated = http.get(f"{base}/v3/contact_card", params=[("phone_number", phone), ("phone_number", phone)])
        assert_envelope(repeated, 400, 1005)
        assert_envelope(http.get(f"{base}/v3/contact_card?phone_number="), 400, 1002)
        assert_envelope(http.get(f"{base}/v3/contact_card?phone_number=%2B1555%20123"), 400, 1002)
        assert_envelope(http.patch("/v3/contact_card", json={"first_name": "A"}), 400, 1001)


def test_patch_body_ignores_phone_number_and_is_active(partner):
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Keep")
    with partner.http() as http:
        response = http.patch(
            "/v3/contact_card",
            params={"phone_number": phone},
            json={"phone_number": partner.lines[1], "is_active": False, "id": "x", "last_name": "Set"},
        )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "phone_number": phone,
        "first_name": "Keep",
        "last_name": "Set",
        "image_url": None,
        "is_active": True,
    }
    assert partner.client().contact_card.retrieve(phone_number=partner.lines[1]).contact_cards == []


def test_patch_cannot_empty_first_name(partner):
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Keep")
    with partner.http() as http:
        for value in ("", None, "  "):
            response = http.patch("/v3/contact_card", params={"phone_number": phone}, json={"first_name": value})
            assert_envelope(response, 400, 1005)
    assert partner.client().contact_card.retrieve(phone_number=phone).contact_cards[0].first_name == "Keep"


def test_cross_partner_access_is_403_on_every_endpoint(partner, other_partner):
    theirs = other_partner.lines[0]
    other_partner.client().contact_card.create(phone_number=theirs, first_name="Theirs")
    with partner.http() as http:
        assert_envelope(http.get("/v3/contact_card", params={"phone_number": theirs}), 403, 2005)
        assert_envelope(http.post("/v3/contact_card", json={"phone_number": theirs, "first_name": "Mine"}), 403, 2005)
        assert_envelope(
            http.patch("/v3/contact_card", params={"phone_number": theirs}, json={"first_name": "Mine"}), 403, 2005
        )
        # Checked before existence: an unowned number with no card is 403, never 404 or [].
        assert_envelope(
            http.patch("/v3/contact_card", params={"phone_number": other_partner.lines[1]}, json={}), 403, 2005
        )
    assert other_partner.client().contact_card.retrieve(phone_number=theirs).contact_cards[0].first_name == "Theirs"
    assert other_partner.device(theirs)["applies"] == 1


def test_an_unhandled_exception_is_500_3006_without_a_trace(partner, monkeypatch):
    cards = partner.server.framework.state.cards

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(cards, "list_cards", explode)
    with partner.http() as http:
        response = http.get("/v3/contact_card")
    assert_envelope(response, 500, 3006)
    assert "secret internals" not in response.text and "RuntimeError" not in response.text


def test_error_pages_exist_for_every_code(server):
    for entry in errors.CATALOGUE:
        page = httpx.get(f"{server.base_url}/docs/errors/{entry.code}")
        assert page.status_code == 200 and str(entry.code) in page.text and "text/html" in page.headers["content-type"]


def test_an_empty_body_declared_json_is_not_json(partner):
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Kept")
    json_type = {"content-type": "application/json"}
    with partner.http() as http:
        assert_envelope(http.post("/v3/contact_card", content=b"", headers=json_type), 400, 1003)
        patched = http.patch("/v3/contact_card", params={"phone_number": phone}, content=b"", headers=json_type)
        assert_envelope(patched, 400, 1003)
        again = http.patch("/v3/contact_card", params={"phone_number": phone}, json={})
        assert again.status_code == 200 and again.json()["first_name"] == "Kept"
    assert partner.device(phone)["applies"] == 2  # the refused PATCH never reached the device
