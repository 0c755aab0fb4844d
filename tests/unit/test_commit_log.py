"""The commit logs (store/commits.py) and the memos that read them: a move of the
version made only by this process's own writes drops only their lines' answers; anything
it cannot account for empties the memo."""

from __future__ import annotations

import asyncio

from contactcard.store.core.commits import MAX_RANGES, MAX_SPAN, CommitLog, CountLog, parse_snapshot
from contactcard.store.core.memo import BatchMemo, TurnMemo


def test_snapshots_are_parsed_as_postgresql_prints_them():
    assert parse_snapshot("10:14:10,12") == (10, 14, frozenset({10, 12}))
    assert parse_snapshot("7:7:") == (7, 7, frozenset())


def test_only_known_transactions_give_their_lines():
    log = CommitLog()
    log.record(100, frozenset({"+15550000001"}))
    log.record(101, frozenset())  # a webhook's bookkeeping: no answer depends on it
    assert log.lines_changed("100:100:", "102:102:") == {"+15550000001"}


def test_an_unknown_transaction_means_any_answer_may_have_changed():
    log = CommitLog()
    log.record(100, frozenset({"+15550000001"}))
    assert log.lines_changed("100:100:", "102:102:") is None  # 101 is someone else's


def test_a_transaction_still_running_is_not_counted_until_it_completes():
    log = CommitLog()
    log.record(101, frozenset({"+15550000002"}))
    # 100 (unknown) was running before and still is; 101 completed.
    assert log.lines_changed("100:100:", "100:102:100") == {"+15550000002"}
    # Then 100 completes: not ours, so every answer may have changed.
    assert log.lines_changed("100:102:100", "102:102:") is None


def test_one_that_was_running_in_the_old_snapshot_counts_when_it_completes():
    log = CommitLog()
    log.record(100, frozenset({"+15550000003"}))
    assert log.lines_changed("100:101:100", "101:101:") == {"+15550000003"}


def test_each_transaction_is_accounted_for_once():
    log = CommitLog()
    log.record(100, frozenset({"+15550000001"}))
    assert log.lines_changed("100:100:", "101:101:") == {"+15550000001"}
    # The same transaction again (a question between two equal snapshots is not made, but
    # a log that kept ids would answer from stale entries): now unknown.
    assert log.lines_changed("100:100:", "101:101:") is None


def test_a_long_span_or_an_unreadable_version_empties_the_memo():
    log = CommitLog()
    assert log.lines_changed("1:1:", f"{2 + MAX_SPAN}:{2 + MAX_SPAN}:") is None
    assert log.lines_changed(None, "1:1:") is None
    assert log.lines_changed("garbage", "1:1:") is None


def test_ids_recorded_too_late_are_forgotten():
    log = CommitLog()
    assert log.lines_changed("100:100:", "101:101:") is None  # 100 unknown at the time
    log.record(100, frozenset({"+15550000001"}))  # told a moment later
    log.record(101, frozenset({"+15550000002"}))
    assert log.lines_changed("101:101:", "102:102:") == {"+15550000002"}
    assert log._known == {}


def test_the_memo_keeps_the_answers_of_lines_no_write_touched():
    async def scenario() -> None:
        log = CommitLog()
        versions = iter(["100:100:", "101:101:", "102:102:", "104:104:"])

        async def ask() -> object:
            return next(versions)

        memo = BatchMemo(ask, log.lines_changed)
        first = await memo.current()
        assert first is not None
        first["a"] = (b"A", "+15550000001")
        first["b"] = (b"B", "+15550000002")
        log.record(100, frozenset({"+15550000001"}))
        second = await memo.current()
        # A new dict without the written line (a lookup still holding the old one files
        # its answer there), the other line's answer kept.
        assert second is not first and second == {"b": (b"B", "+15550000002")}
        log.record(101, frozenset())
        third = await memo.current()
        assert third is second  # nothing an answer depends on changed
        log.record(102, frozenset({"+15550000002"}))  # 103 is not ours
        assert await memo.current() == {}

    asyncio.run(scenario())


def test_sqlite_counts_chain_through_this_process_ranges_only():
    log = CountLog()
    log.record(10, 12, frozenset({"+15550000001"}))
    log.record(12, 13, frozenset({"+15550000002"}))
    assert log.lines_changed(10, 13) == {"+15550000001", "+15550000002"}
    log.record(13, 14, frozenset({"+15550000003"}))
    # 14 to 15 is someone else's change (their triggers counted too): a gap.
    log.record(15, 16, frozenset({"+15550000004"}))
    assert log.lines_changed(13, 16) is None
    assert log.lines_changed(16, 16) == frozenset()


def test_sqlite_ranges_are_used_once_and_late_ones_forgotten():
    log = CountLog()
    log.record(1, 2, frozenset({"+15550000001"}))
    assert log.lines_changed(1, 2) == {"+15550000001"}
    assert log.lines_changed(1, 2) is None  # used already
    assert log.lines_changed(2, 3) is None  # told after the question
    log.record(2, 3, frozenset({"+15550000002"}))
    log.record(3, 4, frozenset())
    assert log.lines_changed(3, 4) == frozenset()
    assert log._ranges == {}
    assert log.lines_changed(None, 4) is None and log.lines_changed(5, 4) is None


def test_sqlite_ranges_kept_while_nobody_asks_are_bounded():
    log = CountLog()
    for start in range(MAX_RANGES + 10):
        log.record(start, start + 1, frozenset())
    assert len(log._ranges) <= MAX_RANGES
    assert log.lines_changed(MAX_RANGES, MAX_RANGES + 10) == frozenset()


def test_the_turn_memo_keeps_the_answers_of_lines_no_write_touched():
    log = CountLog()
    counts = iter([5, 6, 6, 8])
    memo = TurnMemo(lambda: next(counts), log.lines_changed)
    first = memo.current()  # no event loop: every call asks again
    first["a"] = (b"A", "+15550000001")
    first["b"] = (b"B", "+15550000002")
    log.record(5, 6, frozenset({"+15550000001"}))
    second = memo.current()
    assert second is not first and second == {"b": (b"B", "+15550000002")}
    assert memo.current() is second  # the count did not move
    log.record(6, 7, frozenset())  # 7 to 8: not ours
    assert memo.current() == {}
