"""What a process holds for the request journal before and after someone reads it."""

from __future__ import annotations

import time
from collections.abc import Sequence

from contactcard.controls import Controls, LiveControls, Overrides
from contactcard.journal import Entry, Journal, Query, Row


class Rows:
    """An in-memory journal store: what `add` received, newest last."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def demand(self) -> tuple[float, float]:
        return 0.0, 0.0

    def want(self, until: float) -> None:
        pass

    def add(self, rows: Sequence[Row], keep: int) -> None:
        self.rows = [*self.rows, *rows][-keep:]

    def find(self, query: Query) -> list[Entry]:
        return []

    def clear(self) -> None:
        self.rows = []

    def close(self) -> None:
        pass


def _journal(unread: int) -> tuple[Journal, Rows]:
    defaults = Controls(version=0, profile="default", write_budget=0, write_budget_window=600, journal_size=1000)
    rows = Rows()
    return Journal(rows, LiveControls(defaults, Overrides), unread=unread), rows


def _send(journal: Journal, first: int, count: int) -> None:
    for n in range(first, first + count):
        raw = (f"trace-{n}", "GET", "/v3/contact_card", b"", None, 200, None, 0.001, time.time(), None, b"ua")
        journal.record(raw)


def test_unread_the_process_holds_only_the_newest_then_everything_once_read():
    journal, rows = _journal(unread=64)
    _send(journal, 0, 100)
    journal.find(Query())  # the first read stores what is held: the newest 64
    assert [row[0] for row in rows.rows] == [f"trace-{n}" for n in range(36, 100)]
    _send(journal, 100, 300)  # read a moment ago: every request is held for the next flush
    journal.find(Query())
    assert len(rows.rows) == 64 + 300 and rows.rows[-1][0] == "trace-399" and rows.rows[64][0] == "trace-100"


def test_a_test_server_holds_everything_the_journal_keeps():
    journal, rows = _journal(unread=1_000_000)
    _send(journal, 0, 1500)
    journal.find(Query())
    assert len(rows.rows) == 1000 and rows.rows[0][0] == "trace-500"
