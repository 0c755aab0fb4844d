"""The test kit's use cases (`contactcard.kit.Kit`) on in-memory fakes: settings, the clock,
reset, budgets and the journal, each in milliseconds (tests/fakes.py, `make_kit_world`)."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from contactcard import errors
from contactcard.errors import ApiError
from contactcard.journal_entry import Entry, Query
from contactcard.kit import EVERYTHING_ALSO_FORGETS, MAX_ADVANCE, RESET_FORGETS
from tests.fakes import KIT_DEFAULTS, make_kit_world


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert caught.value.error is errors.BAD_VALUE
    return caught.value.reason


# --- settings --------------------------------------------------------------------------


def test_a_changed_setting_is_in_force_at_once_and_others_keep_the_processes_own():
    world = make_kit_world()
    changed = world.kit.change_settings({"write_budget": 3, "profile": "hosted"})
    assert (changed.write_budget, changed.profile) == (3, "hosted")
    assert changed.write_budget_window == KIT_DEFAULTS.write_budget_window
    assert world.controls.current == changed  # this process reloaded: no wait for the poll
    assert world.kit.settings() == changed


def test_none_puts_one_setting_back_and_restore_puts_every_one_back():
    world = make_kit_world()
    world.kit.change_settings({"write_budget": 0, "journal_size": 5})
    assert world.kit.change_settings({"write_budget": None}).write_budget == KIT_DEFAULTS.write_budget
    assert world.kit.settings().journal_size == 5
    restored = world.kit.restore_settings()
    assert (restored.write_budget, restored.journal_size) == (KIT_DEFAULTS.write_budget, KIT_DEFAULTS.journal_size)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"database_url": "x"}, "database_url is not a setting"),
        ({"profile": "staging"}, "profile must be one of seed, hosted"),
        ({"write_budget": -1}, "write_budget must be an integer"),
        ({"write_budget": True}, "write_budget must be an integer"),  # a bool is not a count
        ({"write_budget": 2.5}, "write_budget must be an integer"),
        ({"write_budget_window": 0}, "write_budget_window must be 1 second or more"),
        ({"journal_size": 1_000_001}, "journal_size must be an integer"),
    ],
)
def test_a_bad_setting_is_refused_and_nothing_changes(changes, needle):
    world = make_kit_world()
    assert needle in refused(world.kit.change_settings, changes)
    assert world.row.row.version == 0  # not one value of the batch was written
    assert world.kit.settings() == KIT_DEFAULTS


def test_a_batch_with_one_bad_value_writes_none_of_it():
    world = make_kit_world()
    refused(world.kit.change_settings, {"write_budget": 1, "journal_size": -5})
    assert world.kit.settings().write_budget == KIT_DEFAULTS.write_budget


def test_a_new_journal_size_stores_the_buffer_at_once():
    world = make_kit_world()
    world.kit.change_settings({"journal_size": 0})
    assert world.log == ["flush"]


# --- the clock ---------------------------------------------------------------------------


def test_the_clock_advances_adds_up_and_goes_back_to_real():
    world = make_kit_world()
    assert world.kit.clock().real
    world.kit.advance_clock(60)
    moved = world.kit.advance_clock(30)
    assert moved.offset == 90 and not moved.real
    assert abs((moved.now - datetime.now(UTC)).total_seconds() - 90) < 5
    assert world.kit.real_clock().real
    assert world.kit.clock().offset == 0


def test_the_journal_is_stored_before_the_clock_moves():
    # Its buffered requests are timed when stored: they must keep the time they came at.
    world = make_kit_world()
    world.kit.advance_clock(10)
    world.kit.set_clock(datetime.now(UTC) + timedelta(days=1))
    world.kit.real_clock()
    assert world.log == ["flush", "clock"] * 3


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), MAX_ADVANCE + 1])
def test_the_clock_never_advances_backwards_or_past_a_century(seconds):
    world = make_kit_world()
    assert "seconds must be 0 or more" in refused(world.kit.advance_clock, seconds)
    assert world.kit.clock().real and world.log == []


def test_zero_seconds_is_an_advance_too():
    assert make_kit_world().kit.advance_clock(0).real


def test_the_clock_is_set_to_an_instant_and_goes_on_from_there():
    world = make_kit_world()
    instant = datetime(2030, 1, 1, tzinfo=UTC)
    view = world.kit.set_clock(instant)
    assert abs((view.now - instant).total_seconds()) < 5
    assert view.offset == pytest.approx(instant.timestamp() - time.time(), abs=5)
    earlier = world.kit.set_clock(datetime(2020, 1, 1, tzinfo=UTC))
    assert earlier.offset < 0  # an instant in the past moves the clock back


def test_an_instant_needs_a_zone_and_a_century_at_most():
    world = make_kit_world()
    assert "needs a time zone" in refused(world.kit.set_clock, datetime(2030, 1, 1))
    assert "more than a hundred years" in refused(world.kit.set_clock, datetime(2200, 1, 1, tzinfo=UTC))
    assert world.kit.clock().real


# --- reset, budgets, the journal ---------------------------------------------------------


def test_a_reset_forgets_the_journal_and_keeps_settings_and_clock():
    world = make_kit_world()
    world.kit.change_settings({"write_budget": 2})
    world.kit.advance_clock(5)
    world.log.clear()
    world.kit.reset()
    assert world.row.resets == [False] and world.log == ["reset", "forget"]
    assert world.kit.settings().write_budget == 2 and world.kit.clock().offset == 5


def test_reset_everything_puts_settings_and_the_clock_back():
    world = make_kit_world()
    world.kit.change_settings({"write_budget": 2, "profile": "hosted"})
    world.kit.advance_clock(5)
    world.kit.reset(everything=True)
    assert world.row.resets == [True]
    assert world.kit.settings() == replace(KIT_DEFAULTS, version=world.row.row.version)
    assert world.kit.clock().real


def test_what_a_reset_forgets_is_worded_for_every_table():
    assert "every card" in RESET_FORGETS and "the request journal" in RESET_FORGETS
    assert "every partner" in EVERYTHING_ALSO_FORGETS and "every partner" not in RESET_FORGETS


def test_forgetting_budgets_names_the_lines():
    world = make_kit_world()
    world.kit.forget_budgets(["+15550000001", "+15550000002"])
    assert world.row.budgets_forgotten == ["+15550000001", "+15550000002"]


def _entry(n: int, status: int = 200, phone: str | None = None) -> Entry:
    return Entry(f"trace-{n}", float(n), "POST", "/v3/contact_card", phone, status, None, 1.0, None, None, id=n)


def test_the_journal_is_searched_newest_first_within_the_limit():
    world = make_kit_world()
    world.journal.entries = [_entry(1), _entry(2, 409, "+15550000001"), _entry(3)]
    assert [e.id for e in world.kit.requests(Query(limit=2))] == [3, 2]
    assert [e.id for e in world.kit.requests(Query(status=409))] == [2]
    assert [e.trace_id for e in world.kit.requests(Query(trace_id="trace-1"))] == ["trace-1"]


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_journal_limit_is_1_to_1000(limit):
    assert "limit must be 1 to 1000" in refused(make_kit_world().kit.requests, Query(limit=limit))


def test_without_a_journal_searching_is_refused_and_the_rest_works():
    world = make_kit_world(journal=False)
    assert "no request journal" in refused(world.kit.requests, Query())
    world.kit.advance_clock(1)
    world.kit.reset()
    assert world.log == ["clock", "reset"]  # nothing to flush or forget
