"""What the server needs from a line's device.

A write stores the card, asks the device to apply it, then marks it active: three steps,
two commits. A device whose records live in the card's own database (the simulated one)
may instead apply inside the card's transaction: it says so with `joined_apply`, the
store makes that apply a part of the card's statement, and the write is one commit. A
real device, behind a network, cannot: it answers None and is asked after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contactcard.card import Card, Outcome
from contactcard.domain import CardValues, JoinedApply, LineState


class Device(Protocol):
    """Called on the event loop; a slow device must await, never block it."""

    async def apply(self, card: Card, image_url: str | None) -> Outcome:
        """Ask the line's device to show this card with the image at `image_url` (our CDN)."""
        ...

    async def rcs_check_available(self, phone_number: str) -> bool:
        """Whether the line's RCS capability check can run now."""
        ...

    def joined_apply(self, state: LineState, values: CardValues, image_url: str | None) -> JoinedApply | None:
        """This device's apply as a part of the card's own transaction, for the line as
        `state` read it; None when it cannot join (then `apply` runs after the commit)."""
        ...


@dataclass(frozen=True)
class DeviceScript:
    """Scripted outcomes for one line's simulated device."""

    fail_next: int = 0
    rate_limit_next: int = 0
    rcs_unavailable: bool = False
    apply_delay: float = 0.0  # seconds the next apply takes


@dataclass(frozen=True)
class DeviceView:
    """What a line's simulated device shows now, and what is scripted for it."""

    phone_number: str
    first_name: str | None
    last_name: str | None
    image_url: str | None
    applies: int
    applied_at: datetime | None
    script: DeviceScript
