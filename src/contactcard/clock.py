"""The server's clock: real time unless a test moved it (see `controls.py`).

Every time rule reads a `Clock` rather than the system time, so that a test can make a
budget window or a retry's due time pass without waiting. What must stay real time
(signature timestamps a receiver checks against its own clock) reads the system time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Now, as the server sees it. Safe to call from any thread."""

    def now(self) -> datetime: ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told (unit tests)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now = datetime.fromtimestamp(self._now.timestamp() + seconds, UTC)
