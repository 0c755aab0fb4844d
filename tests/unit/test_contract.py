"""The wire contract's input rules (`contactcard.contract`), with no server and no store.

Each test names the rule of CONTRACT.md it holds: E.164 numbers, names, JSON bodies,
image URLs, and how a PATCH body says "keep", "replace" and "clear".
"""

from __future__ import annotations

import pytest

from contactcard import contract, errors
from contactcard.contract import UNSET, ImageRules, UpdateRequest
from contactcard.errors import ApiError, ErrorCode

RULES = ImageRules(allow_http=False, own_cdn_prefix="https://cdn.test/contact-card/")
LOCAL_RULES = ImageRules(allow_http=True, own_cdn_prefix="http://127.0.0.1:8000/contact-card/")
BLOB = "ab" * 32 + ".jpg"


def refused(expected: ErrorCode, call, *args, **kwargs) -> ApiError:
    """Run `call` and return its ApiError, asserting it is the catalogue's `expected`."""
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    error = caught.value
    assert error.error is expected, f"{error} instead of {expected.status} {expected.code}"
    assert (error.error.status, error.error.code) == (expected.status, expected.code)
    return error


def setup_body(**fields):
    return {"phone_number": "+15551234567", "first_name": "Ada", **fields}


# --- E.164 -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["+15551234567", "+12", "+123456789012345", "+447911123456"])
def test_contract_e164_numbers_are_accepted(value):
    assert contract.phone_number(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "15551234567",  # no plus
        "+05551234567",  # leading zero
        "+1",  # too short
        "+1234567890123456",  # 16 digits
        "+1555123456７",  # full-width digit
        "+1555١٢٣٤٥٦٧",  # Arabic-Indic digits (matched by \d)
        "+1555123456\u0967",  # Devanagari digit
        "+15551234567\n",  # trailing newline ($ would accept it)
        "\n+15551234567",
        "+1 555 123 4567",
        "+1-555-123-4567",
        " 15551234567",  # the space-for-plus reading is for the query string only
        "",
        15551234567,
        None,
    ],
)
def test_contract_non_e164_numbers_are_refused_with_1002(value):
    refused(errors.BAD_PHONE, contract.phone_number, value)


def test_contract_body_phone_number_is_e164_checked_with_1002():
    refused(errors.BAD_PHONE, contract.setup_request, setup_body(phone_number="+1 555 1234567"), RULES)
    refused(errors.BAD_PHONE, contract.setup_request, setup_body(phone_number=" 15551234567"), RULES)


def test_contract_query_space_followed_by_digits_is_read_as_plus():
    assert contract.phone_from_query([" 15551234567"], required=True) == "+15551234567"
    assert contract.phone_from_query(["+15551234567"], required=True) == "+15551234567"


@pytest.mark.parametrize(
    "value",
    [
        " 1555١٢٣٤",  # the space rule needs ASCII digits
        "  15551234567",  # two spaces
        " +15551234567",
        " ",
        " 1555 1234",
        " 15551234567\n",
    ],
)
def test_contract_query_space_rule_does_not_accept_anything_else(value):
    refused(errors.BAD_PHONE, contract.phone_from_query, [value], required=True)


def test_contract_query_absent_phone_is_none_or_1001_when_required():
    assert contract.phone_from_query([], required=False) is None
    error = refused(errors.MISSING_FIELD, contract.phone_from_query, [], required=True)
    assert error.detail == "phone_number"


def test_contract_query_repeated_phone_is_1005():
    error = refused(errors.BAD_VALUE, contract.phone_from_query, ["+15551234567", "+15551234567"], required=False)
    assert "phone_number" in error.message


def test_contract_query_empty_phone_is_1002():
    refused(errors.BAD_PHONE, contract.phone_from_query, [""], required=False)


# --- names -----------------------------------------------------------------------------


def test_contract_names_are_trimmed():
    request = contract.setup_request(setup_body(first_name="  Ada \t", last_name="\n Lovelace  "), RULES)
    assert (request.first_name, request.last_name) == ("Ada", "Lovelace")


def test_contract_name_limit_is_100_code_points_after_trimming():
    longest = "é" * 100  # 200 bytes of UTF-8: the limit counts characters
    assert contract.setup_request(setup_body(first_name=f"  {longest}  "), RULES).first_name == longest
    assert contract.setup_request(setup_body(last_name=longest), RULES).last_name == longest
    error = refused(errors.BAD_VALUE, contract.setup_request, setup_body(first_name="a" * 101), RULES)
    assert "first_name" in error.message
    error = refused(errors.BAD_VALUE, contract.setup_request, setup_body(last_name="a" * 101), RULES)
    assert "last_name" in error.message


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_contract_empty_first_name_is_1005(value):
    error = refused(errors.BAD_VALUE, contract.setup_request, setup_body(first_name=value), RULES)
    assert "first_name" in error.message


@pytest.mark.parametrize("value", [123, True, ["Ada"], {"name": "Ada"}])
def test_contract_non_string_names_are_1005(value):
    refused(errors.BAD_VALUE, contract.setup_request, setup_body(first_name=value), RULES)
    refused(errors.BAD_VALUE, contract.setup_request, setup_body(last_name=value), RULES)


@pytest.mark.parametrize(
    "char",
    [
        "\x00",
        "\x07",
        "\n",  # inside the name (trimming only removes it at the ends)
        "\x1b",
        "\x7f",
        "\x85",  # C1 next line
        "\u2028",  # line separator
        "\u2029",  # paragraph separator
        "\ud800",  # lone surrogate
        "\u202e",  # right-to-left override
        "\u202a",
        "\u2066",  # left-to-right isolate
        "\u2069",
        "\u200e",  # left-to-right mark
        "\u200f",
        "\u061c",  # Arabic letter mark
    ],
)
def test_contract_control_and_bidi_characters_in_names_are_refused(char):
    error = refused(errors.BAD_VALUE, contract.setup_request, setup_body(first_name=f"Ad{char}a"), RULES)
    assert "control or bidirectional" in error.message
    refused(errors.BAD_VALUE, contract.setup_request, setup_body(last_name=f"Love{char}lace"), RULES)
    refused(errors.BAD_VALUE, contract.update_request, {"first_name": f"Ad{char}a"}, RULES)


@pytest.mark.parametrize("value", ["Zoë", "李小龍", "O'Brien-Smith", "Åsa 🙂", "Ñandú"])
def test_contract_ordinary_unicode_names_are_accepted(value):
    assert contract.setup_request(setup_body(first_name=value), RULES).first_name == value


@pytest.mark.parametrize("value", [None, "", "   "])
def test_contract_absent_or_blank_last_name_is_none_in_post(value):
    assert contract.setup_request(setup_body(last_name=value), RULES).last_name is None


def test_contract_post_required_fields_are_1001_naming_the_field():
    body = setup_body()
    del body["phone_number"]
    assert refused(errors.MISSING_FIELD, contract.setup_request, body, RULES).detail == "phone_number"
    body = setup_body()
    del body["first_name"]
    assert refused(errors.MISSING_FIELD, contract.setup_request, body, RULES).detail == "first_name"
    assert refused(errors.MISSING_FIELD, contract.setup_request, setup_body(first_name=None), RULES).detail == (
        "first_name"
    )


# --- JSON bodies -----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/json", "Application/JSON; charset=utf-8", "x/y+json"])
def test_contract_json_object_is_parsed(content_type):
    assert contract.json_object(b'{"a": 1, "b": [1.5, null], "c": {"d": "e"}}', content_type) == {
        "a": 1,
        "b": [1.5, None],
        "c": {"d": "e"},
    }


@pytest.mark.parametrize("raw", [b"", b"  \n\t "])
def test_contract_empty_body_without_a_content_type_is_an_empty_object(raw):
    assert contract.json_object(raw, None) == {}


@pytest.mark.parametrize("raw", [b"", b"  \n\t "])
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_contract_empty_body_declared_json_is_1003(raw, content_type):
    with pytest.raises(ApiError) as caught:
        contract.json_object(raw, content_type)
    assert caught.value.error.code == 1003


@pytest.mark.parametrize(
    "raw",
    [
        b'{"first_name": "a", "first_name": "b"}',  # duplicate keys
        b'{"x": {"y": 1, "y": 2}}',  # duplicate keys in a nested object
        b'{"x": NaN}',
        b'{"x": Infinity}',
        b'{"x": -Infinity}',
        b'{"x": 1e999}',  # overflows to infinity
        b'{"x": ' + b"9" * 21 + b"}",  # an integer too long to be a number anyone means
        b"[]",
        b'["first_name"]',
        b'"text"',
        b"1",
        b"null",
        b"true",
        b'{"first_name": "Ada"',  # truncated
        b"{'first_name': 'Ada'}",  # not JSON
        b'{"first_name": "\xff"}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested too deeply
    ],
)
def test_contract_bodies_that_are_not_one_json_object_are_1003(raw):
    refused(errors.BAD_BODY, contract.json_object, raw, "application/json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
def test_contract_wrong_content_type_is_1003(content_type):
    error = refused(errors.BAD_BODY, contract.json_object, b'{"first_name": "Ada"}', content_type)
    assert "Content-Type" in error.message


def test_contract_json_twenty_digit_integer_is_still_a_number():
    assert contract.json_object(b'{"x": -' + b"9" * 20 + b"}", None) == {"x": -int("9" * 20)}


# --- image URLs ------------------------------------------------------------------------


def test_contract_https_image_url_is_kept_as_sent():
    url = "https://Img.Example.com/a.png?size=big"
    assert contract.setup_request(setup_body(image_url=url), RULES).image_url == url
    assert contract.update_request({"image_url": url}, RULES).image_url == url


def test_contract_http_image_url_is_refused_unless_allowed():
    body = setup_body(image_url="http://img.example.com/a.png")
    error = refused(errors.BAD_VALUE, contract.setup_request, body, RULES)
    assert "image_url" in error.message and "https" in error.message
    refused(errors.BAD_VALUE, contract.update_request, {"image_url": "http://img.example.com/a.png"}, RULES)
    assert contract.setup_request(body, LOCAL_RULES).image_url == "http://img.example.com/a.png"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://img.example.com/a.png",
        "/a.png",
        "img.example.com/a.png",
        "https:/img.example.com/a.png",
        "https://user:pass@img.example.com/a.png",
        "https://img.example.com/a b.png",
        "https://img.example.com/" + "a" * 2048,
        "data:image/png;base64,iVBORw0KGgo=",
        "https://0x7f000001/a.png",
    ],
)
def test_contract_bad_image_urls_are_1005(url):
    error = refused(errors.BAD_VALUE, contract.setup_request, setup_body(image_url=url), LOCAL_RULES)
    assert "image_url" in error.message


@pytest.mark.parametrize("value", [5, ["https://img.example.com/a.png"], {"url": "x"}, True])
def test_contract_non_string_image_url_is_1005(value):
    refused(errors.BAD_VALUE, contract.setup_request, setup_body(image_url=value), RULES)


def test_contract_image_url_absent_or_null_is_none_in_post():
    assert contract.setup_request(setup_body(), RULES).image_url is None
    assert contract.setup_request(setup_body(image_url=None), RULES).image_url is None


def test_contract_own_cdn_url_is_taken_as_is_even_over_http():
    own = ImageRules(allow_http=False, own_cdn_prefix="http://cdn.local/contact-card/")
    url = f"http://cdn.local/contact-card/{BLOB}"
    assert contract.setup_request(setup_body(image_url=url), own).image_url == url
    assert own.own_blob(url) == BLOB
    # Only a content-addressed blob name makes it ours; anything else is an ordinary URL.
    refused(errors.BAD_VALUE, contract.setup_request, setup_body(image_url="http://cdn.local/contact-card/x.jpg"), own)
    assert own.own_blob("http://cdn.local/contact-card/../etc/passwd") is None


# --- PATCH bodies ----------------------------------------------------------------------


def test_contract_patch_absent_fields_are_unset():
    assert contract.update_request({}, RULES) == UpdateRequest(UNSET, UNSET, UNSET)
    request = contract.update_request({"last_name": "Byron"}, RULES)
    assert (request.first_name, request.last_name, request.image_url) == (UNSET, "Byron", UNSET)


def test_contract_patch_null_clears_last_name_and_image_url():
    request = contract.update_request({"last_name": None, "image_url": None}, RULES)
    assert request.last_name is None and request.image_url is None
    assert request.first_name is UNSET


def test_contract_patch_blank_last_name_clears_it():
    assert contract.update_request({"last_name": "   "}, RULES).last_name is None


def test_contract_patch_null_first_name_is_refused():
    error = refused(errors.BAD_VALUE, contract.update_request, {"first_name": None}, RULES)
    assert "first_name" in error.message


@pytest.mark.parametrize("value", ["", "  ", 7])
def test_contract_patch_first_name_can_never_become_empty(value):
    refused(errors.BAD_VALUE, contract.update_request, {"first_name": value}, RULES)


def test_contract_patch_present_fields_are_validated_and_trimmed():
    request = contract.update_request({"first_name": " Augusta ", "last_name": " King "}, RULES)
    assert (request.first_name, request.last_name, request.image_url) == ("Augusta", "King", UNSET)


def test_contract_patch_ignores_phone_number_is_active_and_unknown_fields():
    body = {"phone_number": "not a number", "is_active": False, "id": "x", "nickname": 3}
    assert contract.update_request(body, RULES) == UpdateRequest()
