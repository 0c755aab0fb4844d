"""What the store needs of a webhook event it records with the change that made it.

The events are built above the store (`webhooks/events.py` makes `Outbox` values); the
store only writes them, fanned out to the matching subscriptions, in the change's own
transaction. So it names the fields it writes here and imports nothing from the layer
above: any value with these fields will do (`Outbox` has them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class RecordedEvent(Protocol):
    """One event, ready to be fanned out: `head + webhook_version + tail` is the body a
    subscription receives."""

    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def partner_id(self) -> str: ...
    @property
    def phone_number(self) -> str | None: ...  # None: about no line
    @property
    def at(self) -> datetime: ...  # on the server's clock: when its first attempt is due
    @property
    def head(self) -> str: ...
    @property
    def tail(self) -> str: ...
