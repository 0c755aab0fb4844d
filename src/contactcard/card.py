"""The contact card: the name and photo a line shares, and whether its device shows them.

`wire` is the one place a card becomes what the API shows, and `WIRE_PROPERTIES` describes
that form: the OpenAPI document's `ContactCard` schema is built from it (`http/openapi.py`),
so the answer and its description cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from contactcard.contract import E164

WireCard = dict[str, Any]

# The wire form's fields, in the order `wire` writes them, each with its JSON schema.
WIRE_PROPERTIES: dict[str, dict[str, Any]] = {
    "phone_number": {"type": "string", "pattern": f"^{E164.pattern}$", "examples": ["+15551234567"]},
    "first_name": {"type": "string"},
    "last_name": {"type": ["string", "null"]},
    "image_url": {"type": ["string", "null"], "description": "The rehosted copy on our CDN."},
    "is_active": {"type": "boolean", "description": "The line's device confirmed these values."},
}


def wire(phone_number: str, first_name: str, last_name: str | None, image_url: str | None, active: object) -> WireCard:
    """A card as the API shows it (its id and the caller's source URL stay inside). Takes
    the columns, not a `Card`: the GET path builds its answers from rows with no `Card` in
    between, one call per card."""
    return {
        "phone_number": phone_number,
        "first_name": first_name,
        "last_name": last_name,
        "image_url": image_url,
        "is_active": bool(active),
    }


@dataclass(frozen=True)
class Card:
    id: str
    phone_number: str
    first_name: str
    last_name: str | None
    image_blob: str | None  # the name of our CDN copy
    image_source_url: str | None  # the caller's URL it was fetched from
    is_active: bool
    ever_active: bool  # set up successfully at least once (the `seed` profile's PATCH rule)

    def image_url(self, cdn_prefix: str) -> str | None:
        return f"{cdn_prefix}{self.image_blob}" if self.image_blob else None

    def public(self, cdn_prefix: str) -> WireCard:
        """The card as the API shows it."""
        return wire(self.phone_number, self.first_name, self.last_name, self.image_url(cdn_prefix), self.is_active)


class Outcome(Enum):
    """What a line's device answered when asked to apply a card."""

    APPLIED = "applied"
    FAILED = "failed"
    RATE_LIMITED = "rate_limited"  # upstream write limit: retrying extends it
