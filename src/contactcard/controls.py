"""Runtime controls: the settings a test may change while the server runs, and its clock.

They live in one database row (`store/controls.py`), so every process on the database
agrees. Each process keeps the row in memory (`LiveControls`) and learns of a change in two
ways, so that no request pays a query for it:

- the write path's own state statement also reads the row's version (one more column of
  a statement it runs anyway); a write that sees a newer version reloads the row before
  deciding anything, so a write always obeys the controls as of after it arrived;
- a background poll reloads the row every `POLL_SECONDS` for what has no statement of its
  own to piggyback on (the journal switch on the GET path, the clock of webhook retries).

The process that makes a change (its admin API) reloads at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

PROFILES = ("seed", "hosted")
# Changes made by another process are seen this soon by what does not read the version.
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Controls:
    """The controls in force. `clock_offset` is added to real time."""

    version: int
    profile: str  # one of PROFILES
    write_budget: int  # 0: off
    write_budget_window: int  # seconds
    journal_size: int  # 0: off
    clock_offset: float = 0.0

    def time(self) -> float:
        """Now in unix seconds, on the server's clock."""
        return time.time() + self.clock_offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


@dataclass(frozen=True)
class Overrides:
    """What the row holds: None keeps the process's own setting."""

    version: int = 0
    profile: str | None = None
    write_budget: int | None = None
    write_budget_window: int | None = None
    journal_size: int | None = None
    clock_offset: float = 0.0


def apply(defaults: Controls, overrides: Overrides) -> Controls:
    return replace(
        defaults,
        version=overrides.version,
        profile=overrides.profile or defaults.profile,
        write_budget=defaults.write_budget if overrides.write_budget is None else overrides.write_budget,
        write_budget_window=overrides.write_budget_window or defaults.write_budget_window,
        journal_size=defaults.journal_size if overrides.journal_size is None else overrides.journal_size,
        clock_offset=overrides.clock_offset,
    )


class LiveControls:
    """This process's copy of the controls; `current` is an attribute read, never a query."""

    def __init__(self, defaults: Controls, load: Callable[[], Overrides]) -> None:
        self.defaults = defaults
        self._load = load
        self.current = defaults
        self._lock = threading.Lock()

    def reload(self) -> Controls:
        """Read the row again (blocking: call it off the event loop on PostgreSQL)."""
        loaded = apply(self.defaults, self._load())
        with self._lock:
            # Versions only grow: a slow reload must not put back an older copy.
            if loaded.version >= self.current.version:
                self.current = loaded
            return self.current

    def time(self) -> float:
        return self.current.time()

    def now(self) -> datetime:
        """The server's clock: `LiveControls` is a `clock.Clock`."""
        return self.current.now()
