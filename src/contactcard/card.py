"""The contact card: the name and photo a line shares, and whether its device shows them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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

    def public(self, cdn_prefix: str) -> dict[str, object]:
        """The card as the API shows it (the id and the source URL stay inside)."""
        return {
            "phone_number": self.phone_number,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "image_url": self.image_url(cdn_prefix),
            "is_active": self.is_active,
        }


class Outcome(Enum):
    """What a line's device answered when asked to apply a card."""

    APPLIED = "applied"
    FAILED = "failed"
    RATE_LIMITED = "rate_limited"  # upstream write limit: retrying extends it
