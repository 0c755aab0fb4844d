"""The wire contract's input rules: what a valid request is, before any side effect.

Everything here is pure: bytes and strings in, validated values or an `ApiError` out.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from contactcard import errors
from contactcard.cdn.base import BLOB_NAME
from contactcard.errors import ApiError
from contactcard.images.urls import ImageUrl, ImageUrlError, parse_image_url

# `[0-9]`, not `\d` (which matches Arabic and full-width digits); used with fullmatch so a
# trailing newline is not accepted either.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
NAME_MAX = 100
MAX_BODY_BYTES = 64 * 1024

# Bidirectional controls (Unicode's Bidi_Control set) make a name display as something else.
_BIDI_CONTROLS = frozenset(chr(c) for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)))
# Control characters, lone surrogates, and line or paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_JSON_TYPES = ("application/json",)


def phone_number(value: object) -> str:
    if not isinstance(value, str) or not E164.fullmatch(value):
        raise ApiError(errors.BAD_PHONE)
    return value


def phone_from_query(values: list[str], *, required: bool) -> str | None:
    """The `phone_number` query parameter, or None when it is absent and optional."""
    if not values:
        if required:
            raise ApiError(errors.MISSING_FIELD, "phone_number")
        return None
    if len(values) > 1:
        raise ApiError(errors.BAD_VALUE, "phone_number is repeated")
    value = values[0]
    # An unencoded `+` typed by hand (`?phone_number=+1555…`) arrives as a space.
    if value.startswith(" ") and value[1:].isascii() and value[1:].isdigit():
        value = "+" + value[1:]
    return phone_number(value)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999 overflows to infinity
        raise ValueError("number too large")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise ValueError("number too large")
    return int(text)


def json_object(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """Parse a request body; every failure is `400 1003`. An empty body without a
    Content-Type is `{}`; with a JSON one it is not JSON (the SDKs send `{}`)."""
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES and not media.endswith("+json"):
            raise ApiError(errors.BAD_BODY, "Content-Type must be application/json")
    if not raw.strip():
        if content_type is not None:
            raise ApiError(errors.BAD_BODY, "the body is empty, which is not JSON; send {} for no fields")
        return {}
    try:
        text = raw.decode("utf-8")
        body = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except UnicodeDecodeError:
        raise ApiError(errors.BAD_BODY, "body is not valid UTF-8") from None
    except RecursionError:
        raise ApiError(errors.BAD_BODY, "JSON is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(errors.BAD_BODY, _json_reason(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(errors.BAD_BODY, "body must be a JSON object")
    return body


def _json_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON at line {exc.lineno} column {exc.colno}"
    return str(exc)


def name(field: str, value: object) -> str:
    """A trimmed name of 1-100 code points without control or bidirectional characters."""
    if not isinstance(value, str):
        raise ApiError(errors.BAD_VALUE, f"{field} must be a string")
    value = value.strip()
    if not value:
        raise ApiError(errors.BAD_VALUE, f"{field} must not be empty")
    if len(value) > NAME_MAX:
        raise ApiError(errors.BAD_VALUE, f"{field} must be at most {NAME_MAX} characters")
    if any(map(hidden_character, value)):
        raise ApiError(errors.BAD_VALUE, f"{field} must not contain control or bidirectional characters")
    return value


def hidden_character(char: str) -> bool:
    """A control, separator or bidirectional character: refused in every name (cards',
    partners'), since it makes the name display as something else, or not at all."""
    return unicodedata.category(char) in _REFUSED_CATEGORIES or char in _BIDI_CONTROLS


def optional_name(field: str, value: object) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return name(field, value)


@dataclass(frozen=True)
class ImageRules:
    """How `image_url` is read: `http` only while private hosts are allowed for local work;
    a URL on our own CDN is taken as it is (it names a blob we already have)."""

    allow_http: bool
    own_cdn_prefix: str

    def own_blob(self, raw: str) -> str | None:
        """The blob name when `raw` is a URL on our own CDN, else None."""
        if raw.startswith(self.own_cdn_prefix):
            name = raw[len(self.own_cdn_prefix) :]
            if BLOB_NAME.fullmatch(name):
                return name
        return None

    def parse(self, raw: str) -> ImageUrl:
        try:
            return parse_image_url(raw, allow_http=self.allow_http)
        except ImageUrlError as exc:
            raise ApiError(errors.BAD_VALUE, f"image_url: {exc}") from None


def image_url(value: object, rules: ImageRules) -> str | None:
    """A valid `image_url` as sent, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(errors.BAD_VALUE, "image_url must be a string")
    if rules.own_blob(value) is None:
        rules.parse(value)
    return value


@dataclass(frozen=True)
class SetupRequest:
    phone_number: str
    first_name: str
    last_name: str | None
    image_url: str | None


class Unset(Enum):
    """A field absent from a PATCH body (a typed sentinel: `None` already means "clear")."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


@dataclass(frozen=True)
class UpdateRequest:
    """Fields absent from the body are `UNSET`; `None` clears an optional field."""

    first_name: str | Unset = UNSET
    last_name: str | Unset | None = UNSET
    image_url: str | Unset | None = UNSET


def setup_request(body: dict[str, Any], rules: ImageRules) -> SetupRequest:
    for required in ("phone_number", "first_name"):
        if body.get(required) is None:
            raise ApiError(errors.MISSING_FIELD, required)
    return SetupRequest(
        phone_number=phone_number(body["phone_number"]),
        first_name=name("first_name", body["first_name"]),
        last_name=optional_name("last_name", body.get("last_name")),
        image_url=image_url(body.get("image_url"), rules),
    )


def update_request(body: dict[str, Any], rules: ImageRules) -> UpdateRequest:
    # phone_number, is_active, ids and unknown fields in a PATCH body are ignored.
    fields: dict[str, Any] = {}
    if "first_name" in body:
        if body["first_name"] is None:
            raise ApiError(errors.BAD_VALUE, "first_name cannot be cleared")
        fields["first_name"] = name("first_name", body["first_name"])
    if "last_name" in body:
        fields["last_name"] = optional_name("last_name", body["last_name"])
    if "image_url" in body:
        fields["image_url"] = image_url(body["image_url"], rules)
    return UpdateRequest(**fields)
