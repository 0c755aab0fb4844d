"""What the store needs of a webhook event it records with the change that made it.

The events are built above the store (`webhooks/events.py` makes `Outbox` values); the
store only writes them, fanned out to the matching subscriptions, in the change's own
transaction. The fields it writes are named by `RecordedEvent`, a protocol of the domain
(`domain.py`, where a card write carries its event), so the store imports nothing from
the layer above: any value with these fields will do (`Outbox` has them).
"""

from __future__ import annotations

from contactcard.domain import RecordedEvent

__all__ = ["RecordedEvent"]
