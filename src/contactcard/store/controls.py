"""The runtime controls row and the reset: the test kit's side of the store.

Every change bumps the row's version in the same statement, so a process that sees the
version move knows its copy is old (see `contactcard/controls.py`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.exc import OperationalError

from contactcard.controls import Overrides
from contactcard.store.core import StoreUnavailable
from contactcard.store.db import Database
from contactcard.store.schema import (
    api_keys,
    cards,
    device_displays,
    device_scripts,
    lines,
    partners,
    request_journal,
    runtime_controls,
    webhook_attempts,
    webhook_deliveries,
    webhook_subscriptions,
    write_attempts,
)

_ENSURE_ROW = "INSERT INTO runtime_controls (id, version, clock_offset) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING"
# What a reset forgets, children before parents; `everything` adds what it keeps otherwise.
# Attempts before their deliveries, those before the subscriptions they point at, those
# before their partners.
_FORGOTTEN = (
    cards,
    write_attempts,
    device_scripts,
    device_displays,
    request_journal,
    webhook_attempts,
    webhook_deliveries,
)
_KEPT_UNLESS_EVERYTHING = (webhook_subscriptions, lines, api_keys, partners)
# What a reset forgets, by table: the kit words them for the dashboard, the CLI and the docs.
FORGOTTEN_TABLES = tuple(table.name for table in _FORGOTTEN)
FORGOTTEN_WITH_EVERYTHING = tuple(table.name for table in _KEPT_UNLESS_EVERYTHING)
_SETTINGS = ("profile", "write_budget", "write_budget_window", "journal_size")


class ControlRecords:
    def __init__(self, database: Database) -> None:
        self._db = database

    def load(self) -> Overrides:
        try:
            with self._db.reader.connect() as conn:
                row = conn.execute(select(runtime_controls).where(runtime_controls.c.id == 1)).first()
        except OperationalError as exc:  # a write that needs the row answers 503, as for its own reads
            raise StoreUnavailable(str(exc)) from exc
        if row is None:
            return Overrides()
        return Overrides(
            version=row.version,
            profile=row.profile,
            write_budget=row.write_budget,
            write_budget_window=row.write_budget_window,
            journal_size=row.journal_size,
            clock_offset=row.clock_offset,
        )

    def change(self, values: dict[str, Any]) -> Overrides:
        """Set some of the settings (a None value: back to the process's own setting)."""
        unknown = set(values) - set(_SETTINGS)
        assert not unknown, unknown
        return self._update(values)

    def forget_settings(self) -> Overrides:
        return self._update(dict.fromkeys(_SETTINGS))

    def set_clock_offset(self, offset: float) -> Overrides:
        return self._update({"clock_offset": offset})

    def advance_clock(self, seconds: float) -> Overrides:
        return self._update({"clock_offset": runtime_controls.c.clock_offset + seconds})

    def _update(self, values: dict[str, Any]) -> Overrides:
        with self._db.writer.begin() as conn:
            _bump(conn, values)
        return self.load()

    def forget_write_attempts(self, phone_numbers: list[str]) -> None:
        if phone_numbers:
            with self._db.writer.begin() as conn:
                conn.execute(delete(write_attempts).where(write_attempts.c.phone_number.in_(phone_numbers)))

    def reset(self, *, everything: bool) -> None:
        """Forget cards, budgets, device scripts and displays and the journal, in one
        transaction; with `everything`, partners, keys and lines too, and the settings and
        clock go back to the processes' own."""
        with self._db.writer.begin() as conn:
            for table in (*_FORGOTTEN, *(_KEPT_UNLESS_EVERYTHING if everything else ())):
                conn.execute(delete(table))
            if everything:
                _bump(conn, {**dict.fromkeys(_SETTINGS), "clock_offset": 0.0})


def _bump(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(text(_ENSURE_ROW))
    conn.execute(
        update(runtime_controls)
        .where(runtime_controls.c.id == 1)
        .values(version=runtime_controls.c.version + 1, **values)
    )
