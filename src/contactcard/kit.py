"""Operator use cases of the test kit: runtime settings, the clock, reset, the journal.

The `contactcard admin settings|clock|reset|requests` commands and the `/admin/v1` HTTP API
both call these. Every change is written to the database (`store/controls.py`), so it
holds in every process sharing it; this process reloads at once, the others within a
moment (see `controls.py`).

`Kit` names what it needs of the rest as protocols (`ControlChanges`, `ControlsInForce`,
`RequestJournal`): the store's `ControlRecords`, `LiveControls` and `Journal` in a server,
in-memory fakes in the unit tests (`tests/fakes.py`, `make_kit_world`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contactcard import errors
from contactcard.controls import PROFILES, Controls, Overrides
from contactcard.errors import ApiError
from contactcard.journal_entry import Entry, Query
from contactcard.store.controls import FORGOTTEN_TABLES, FORGOTTEN_WITH_EVERYTHING

# Far enough for any budget window or retry schedule, near enough for datetime to hold.
MAX_ADVANCE = 100 * 365 * 86400


@dataclass(frozen=True)
class ClockView:
    now: datetime
    offset: float  # seconds ahead of real time (negative: behind)

    @property
    def real(self) -> bool:
        return self.offset == 0


class ControlChanges(Protocol):
    """The one row of runtime controls every process shares (`store/controls.py`
    `ControlRecords`), and the tables a reset empties."""

    def change(self, values: dict[str, Any]) -> Overrides: ...
    def forget_settings(self) -> Overrides: ...
    def set_clock_offset(self, offset: float) -> Overrides: ...
    def advance_clock(self, seconds: float) -> Overrides: ...
    def forget_write_attempts(self, phone_numbers: list[str]) -> None: ...
    def reset(self, *, everything: bool) -> None: ...


class ControlsInForce(Protocol):
    """This process's copy of the controls (`controls.LiveControls`): `reload` reads the
    row again, so a change is in force here the moment `Kit` answers."""

    def reload(self) -> Controls: ...


class RequestJournal(Protocol):
    """The request journal (`journal.Journal`): its buffer stored, forgotten, searched."""

    def flush(self) -> None: ...
    def forget(self) -> None: ...
    def find(self, query: Query) -> list[Entry]: ...


class Kit:
    def __init__(
        self, records: ControlChanges, controls: ControlsInForce, journal: RequestJournal | None = None
    ) -> None:
        self._records = records
        self._controls = controls
        self.journal = journal

    # --- settings ------------------------------------------------------------------

    def settings(self) -> Controls:
        return self._controls.reload()

    def change_settings(self, changes: dict[str, Any]) -> Controls:
        """Change some settings; a None value puts the process's own setting back."""
        for name, value in changes.items():
            if name not in _CHECKS:
                raise ApiError(errors.BAD_VALUE, f"{name} is not a setting that can change at run time")
            ok, message = _CHECKS[name]
            if value is not None and not ok(value):
                raise ApiError(errors.BAD_VALUE, message)
        if changes:
            self._records.change(changes)
        controls = self._controls.reload()
        if self.journal is not None:
            self.journal.flush()  # a new journal_size sizes its buffer now, not at the next flush
        return controls

    def restore_settings(self) -> Controls:
        """Every setting back to the server processes' own (their environment)."""
        self._records.forget_settings()
        return self._controls.reload()

    # --- the clock -----------------------------------------------------------------

    def clock(self) -> ClockView:
        return self._view(self._controls.reload())

    def advance_clock(self, seconds: float) -> ClockView:
        if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_ADVANCE:
            raise ApiError(errors.BAD_VALUE, "seconds must be 0 or more (to move the clock back, set it to an instant)")
        self._store_journal()
        self._records.advance_clock(seconds)
        return self._view(self._controls.reload())

    def set_clock(self, instant: datetime) -> ClockView:
        """Now becomes `instant`; time goes on from there."""
        if instant.tzinfo is None:
            raise ApiError(errors.BAD_VALUE, "the instant needs a time zone, e.g. 2030-01-01T00:00:00Z")
        offset = instant.timestamp() - time.time()
        if abs(offset) > MAX_ADVANCE:
            raise ApiError(errors.BAD_VALUE, "the instant is more than a hundred years away")
        self._store_journal()
        self._records.set_clock_offset(offset)
        return self._view(self._controls.reload())

    def real_clock(self) -> ClockView:
        self._store_journal()
        self._records.set_clock_offset(0.0)
        return self._view(self._controls.reload())

    def _store_journal(self) -> None:
        # The journal times its buffered requests when it stores them: store them before
        # the clock moves, so they keep the time they arrived at.
        if self.journal is not None:
            self.journal.flush()

    @staticmethod
    def _view(controls: Controls) -> ClockView:
        return ClockView(controls.now(), controls.clock_offset)

    # --- reset and the journal -----------------------------------------------------

    def reset(self, *, everything: bool = False) -> None:
        """Forget what `RESET_FORGETS` says (cards, budgets, scripts, the journal, webhook
        deliveries); keep partners, keys, lines and subscriptions, unless `everything`, which
        forgets those too and puts settings and the clock back."""
        self._records.reset(everything=everything)
        if self.journal is not None:
            self.journal.forget()  # its own transaction: on SQLite it has a file of its own
        self._controls.reload()

    def forget_budgets(self, phone_numbers: list[str]) -> None:
        """The write budget those lines spent (a seed's cards are not the test's writes)."""
        self._records.forget_write_attempts(phone_numbers)

    def requests(self, query: Query) -> list[Entry]:
        if not 1 <= query.limit <= 1000:
            raise ApiError(errors.BAD_VALUE, "limit must be 1 to 1000")
        if self.journal is None:
            raise ApiError(errors.BAD_VALUE, "no request journal in this process")
        return self.journal.find(query)


# Every table a reset empties, in an operator's words: a table added to a reset without
# words here fails at import, so the page, the CLI and the docs never say less than is done.
_FORGOTTEN_WORDS = {
    "cards": "every card",
    "device_displays": "what each device shows",
    "write_attempts": "the write budgets spent",
    "device_scripts": "every device script",
    "request_journal": "the request journal",
    "webhook_deliveries": "every webhook delivery, pending retries included",
    "webhook_attempts": "every delivery's attempts",
    "webhook_subscriptions": "every webhook subscription",
    "lines": "every line",
    "api_keys": "every key",
    "partners": "every partner",
}
RESET_FORGETS = tuple(_FORGOTTEN_WORDS[table] for table in FORGOTTEN_TABLES)
EVERYTHING_ALSO_FORGETS = tuple(_FORGOTTEN_WORDS[table] for table in FORGOTTEN_WITH_EVERYTHING)


def _int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "profile": (lambda v: v in PROFILES, f"profile must be one of {', '.join(PROFILES)}"),
    "write_budget": (lambda v: _int(v, 0, 1_000_000), "write_budget must be an integer from 0 (off) to 1000000"),
    "write_budget_window": (lambda v: _int(v, 1, MAX_ADVANCE), "write_budget_window must be 1 second or more"),
    "journal_size": (lambda v: _int(v, 0, 1_000_000), "journal_size must be an integer from 0 (off) to 1000000"),
}
