"""The delivery worker on a real SQLite outbox, with a clock of the test's own and an
in-memory sender: retries are due by the injected clock, and delivered rows stay done."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from contactcard.store.core import Stmt
from contactcard.store.core.sqlite import sqlite_writer
from contactcard.store.db import connect, migrate
from contactcard.store.deliveries import DeliveryRecords
from contactcard.store.webhooks import Outcome, Subscription, WebhookStore, fan_out
from contactcard.webhooks import events
from contactcard.webhooks.delivery import Answer, DeliveryWorker, RetryPolicy
from contactcard.webhooks.subscriptions import new_secret

pytestmark = pytest.mark.anyio


class ManualClock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


class ScriptedSender:
    """Answers each POST with the next status of `statuses` (then 200); records them."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, target_url: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.posts.append((target_url, body, headers))
        return Answer(self.statuses.pop(0) if self.statuses else 200, None, 1.0)


async def until(condition, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def outbox(tmp_path):
    database = connect(f"sqlite:///{tmp_path / 'w.db'}")
    migrate(database)
    writer = sqlite_writer(str(tmp_path / "w.db"), timeout=2)
    store = WebhookStore(writer, dialect="sqlite")
    now = datetime.now(UTC)
    await writer.run([Stmt("INSERT INTO partners (id, name, created_at) VALUES ('p', 'p', :now)", {"now": now})])
    await store.add(
        Subscription("s", "p", "https://h.example/in", [events.CARD_CREATED], None, True, new_secret(), "v", now, now)
    )
    yield writer, store
    writer.close()
    database.dispose()


_LINES = itertools.count(1)


async def record(
    writer, clock: ManualClock, phone: str | None = None, event_type: str = events.CARD_CREATED
) -> events.Outbox:
    """An event recorded as a write records it; about a line of its own unless `phone`
    (a line's events are attempted one after the other)."""
    card = events.CardView("c", "Ada", None, None)
    phone = phone or f"+1555{next(_LINES):07d}"
    event = events.card_event(event_type, partner_id="p", phone_number=phone, card=card, at=clock.now(), trace_id="t")
    await writer.run([fan_out(event)])
    return event


async def test_a_retry_is_due_by_the_injected_clock(outbox):
    writer, store = outbox
    clock = ManualClock()
    sender = ScriptedSender(500)
    worker = DeliveryWorker(store, sender, clock=clock, retry=RetryPolicy((100.0,), jitter=0), poll_interval=0.02)
    worker.start()
    try:
        event = await record(writer, clock)
        worker.wake()
        await until(lambda: len(sender.posts) == 1)
        await asyncio.sleep(0.3)  # many polls: the retry is 100 s away on the clock
        assert len(sender.posts) == 1
        clock.at += timedelta(seconds=101)  # as if 101 s had passed
        await until(lambda: len(sender.posts) == 2)
        assert sender.posts[0][1] == sender.posts[1][1]  # the same body on every attempt
        assert sender.posts[1][2]["webhook-id"] == event.event_id
        await asyncio.sleep(0.2)
        assert len(sender.posts) == 2  # delivered: never attempted again
    finally:
        await worker.aclose()


async def test_without_the_clock_moving_no_retry_is_made(outbox):
    writer, store = outbox
    clock = ManualClock()
    sender = ScriptedSender(503, 503)
    worker = DeliveryWorker(store, sender, clock=clock, retry=RetryPolicy((5.0, 5.0), jitter=0), poll_interval=0.02)
    worker.start()
    try:
        await record(writer, clock)
        worker.wake()
        await until(lambda: len(sender.posts) == 1)
        await asyncio.sleep(0.3)
        assert len(sender.posts) == 1
        clock.at += timedelta(seconds=6)
        await until(lambda: len(sender.posts) == 2)
        clock.at += timedelta(seconds=6)
        await until(lambda: len(sender.posts) == 3)
        clock.at += timedelta(hours=1)
        await asyncio.sleep(0.3)
        assert len(sender.posts) == 3  # the third answer was the 200
    finally:
        await worker.aclose()


class HeldSender:
    """Holds every POST until released; counts those under way per target."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.under_way: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.started: list[str] = []

    async def post(self, target_url: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.started.append(target_url)
        self.under_way[target_url] = self.under_way.get(target_url, 0) + 1
        self.most[target_url] = max(self.most.get(target_url, 0), self.under_way[target_url])
        await self.release.wait()
        self.under_way[target_url] -= 1
        return Answer(200, None, 1.0)


async def test_a_slow_receiver_cannot_take_every_slot(outbox):
    writer, store = outbox
    now = datetime.now(UTC)
    quick = Subscription(
        "q", "p", "https://quick.example/in", [events.CARD_CREATED], None, True, new_secret(), "v", now, now
    )
    await store.add(quick)
    clock = ManualClock()
    sender = HeldSender()
    worker = DeliveryWorker(store, sender, clock=clock, concurrency=8, per_target=2, poll_interval=0.02)
    for _ in range(6):  # each event goes to both subscriptions
        await record(writer, clock)
    worker.start()
    try:
        await until(lambda: len(sender.started) == 4)
        await asyncio.sleep(0.2)
        # Two of each at once, although eight slots were free: neither receiver holds the rest.
        assert sender.under_way == {"https://h.example/in": 2, "https://quick.example/in": 2}
        sender.release.set()
        await until(lambda: len(sender.started) == 12)
        assert sender.most == {"https://h.example/in": 2, "https://quick.example/in": 2}
    finally:
        await worker.aclose()


async def test_every_attempt_is_kept_and_one_whose_delivery_went_leaves_nothing(outbox, tmp_path):
    writer, store = outbox
    clock = ManualClock()
    event = await record(writer, clock)
    database = connect(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        await _attempts_kept(writer, store, clock, event, DeliveryRecords(database))
    finally:
        database.dispose()


async def _attempts_kept(writer, store, clock, event, deliveries) -> None:
    outcomes = [("pending", 500, None), ("delivered", 200, None)]
    for status, answer, error in outcomes:
        (claimed,) = await store.claim(clock.now().timestamp() + 1, 1e12, 1e12 + 60, 10)
        await store.finish(
            claimed, status=status, next_at=0.0, answer=answer, error=error, latency_ms=12.5, at=clock.now()
        )
    kept = deliveries.attempts(event.event_id, "s")
    assert [(a.attempt, a.outcome, a.answer, a.latency_ms) for a in kept] == [
        (1, "pending", 500, 12.5),
        (2, "delivered", 200, 12.5),
    ]
    # A claim whose subscription (and so its delivery) is deleted before the attempt ends:
    # the attempt is recorded nowhere, and recording it is no error.
    later = await record(writer, clock)
    (claimed,) = await store.claim(clock.now().timestamp() + 1, 1e12, 1e12 + 60, 10)
    assert await store.remove("p", "s")
    await store.finish(
        claimed, status="failed", next_at=None, answer=None, error="gone", latency_ms=None, at=clock.now()
    )
    assert deliveries.attempts(later.event_id, "s") == []


class CountingStore(WebhookStore):
    """Counts the transactions that record outcomes (alone or with the next claim), and
    the outcomes in each."""

    batches: list[int]

    async def finish_many(self, outcomes) -> None:
        self.batches.append(len(outcomes))
        await super().finish_many(outcomes)

    async def finish_and_claim(self, outcomes, *args, **kwargs):
        self.batches.append(len(outcomes))
        return await super().finish_and_claim(outcomes, *args, **kwargs)


async def test_attempts_that_finish_together_are_recorded_in_one_transaction(outbox):
    writer, _ = outbox
    store = CountingStore(writer, dialect="sqlite")
    store.batches = []
    clock = ManualClock()
    sender = HeldSender()
    worker = DeliveryWorker(store, sender, clock=clock, concurrency=8, per_target=8, poll_interval=0.02)
    for _ in range(6):
        await record(writer, clock)
    worker.start()
    try:
        await until(lambda: len(sender.started) == 6)
        sender.release.set()  # all six answer at once
        await until(lambda: sum(store.batches) == 6)
        assert len(store.batches) < 6
        rows = await writer.read(Stmt("SELECT status, lease_until FROM webhook_deliveries", {}))
        assert [tuple(r) for r in rows] == [("delivered", None)] * 6
    finally:
        await worker.aclose()


class SlowRecordStore(WebhookStore):
    """Records only once `release` is set: a database slower than the receivers."""

    release: asyncio.Event

    async def finish_many(self, outcomes) -> None:
        await self.release.wait()
        await super().finish_many(outcomes)

    async def finish_and_claim(self, outcomes, *args, **kwargs):
        await self.release.wait()
        return await super().finish_and_claim(outcomes, *args, **kwargs)


async def test_a_slow_record_holds_no_slot_and_no_attempt_is_made_twice(outbox):
    writer, _ = outbox
    store = SlowRecordStore(writer, dialect="sqlite")
    store.release = asyncio.Event()
    clock = ManualClock()
    sender = ScriptedSender()
    # One slot: were it held until the outcome is committed, only one attempt could start.
    worker = DeliveryWorker(store, sender, clock=clock, concurrency=1, per_target=1, poll_interval=0.02)
    for _ in range(3):
        await record(writer, clock)
    worker.start()
    try:
        await until(lambda: len(sender.posts) == 3)
        await asyncio.sleep(0.2)  # many polls while nothing is recorded: the leases hold
        assert len(sender.posts) == 3
        store.release.set()
        await until(lambda: worker._recorder is None and not worker._outcomes)
        rows = await writer.read(Stmt("SELECT status, lease_until FROM webhook_deliveries", {}))
        assert [tuple(r) for r in rows] == [("delivered", None)] * 3
    finally:
        await worker.aclose()


async def test_attempts_not_yet_recorded_are_recorded_when_the_worker_stops(outbox):
    writer, _ = outbox
    store = SlowRecordStore(writer, dialect="sqlite")
    store.release = asyncio.Event()
    clock = ManualClock()
    sender = ScriptedSender()
    worker = DeliveryWorker(store, sender, clock=clock, poll_interval=0.02)
    for _ in range(2):
        await record(writer, clock)
    worker.start()
    await until(lambda: len(sender.posts) == 2)
    asyncio.get_running_loop().call_later(0.1, store.release.set)  # the database answers in a moment
    await worker.aclose()
    rows = await writer.read(Stmt("SELECT status, lease_until FROM webhook_deliveries", {}))
    assert [tuple(r) for r in rows] == [("delivered", None)] * 2


class FailingFirst:
    """Answers 500 to the first attempt of each event in `fail`, 200 otherwise; records
    every attempt's event id in order."""

    def __init__(self, *fail: str) -> None:
        self.fail = set(fail)
        self.attempts: list[str] = []

    async def post(self, target_url: str, body: bytes, headers: dict[str, str]) -> Answer:
        event_id = headers["webhook-id"]
        self.attempts.append(event_id)
        if event_id in self.fail:
            self.fail.discard(event_id)
            return Answer(500, None, 1.0)
        return Answer(200, None, 1.0)


async def test_a_lines_events_are_attempted_in_order_each_after_the_last_is_done(outbox):
    writer, store = outbox
    await store.replace(
        Subscription(
            "s", "p", "https://h.example/in", [events.CARD_CREATED, events.CARD_UPDATED], None, True,
            new_secret(), "v", datetime.now(UTC), datetime.now(UTC),
        )
    )  # fmt: skip
    clock = ManualClock()
    line, other = "+15550009001", "+15550009002"
    created = await record(writer, clock, line)
    clock.at += timedelta(milliseconds=1)
    updates = []
    for _ in range(3):
        updates.append(await record(writer, clock, line, events.CARD_UPDATED))
        clock.at += timedelta(milliseconds=1)
    elsewhere = await record(writer, clock, other)
    sender = FailingFirst(created.event_id)  # the created fails once, and waits 100 s to retry
    worker = DeliveryWorker(store, sender, clock=clock, retry=RetryPolicy((100.0,), jitter=0), poll_interval=0.02)
    worker.start()
    try:
        await until(lambda: elsewhere.event_id in sender.attempts and len(sender.attempts) >= 2)
        await asyncio.sleep(0.3)  # many polls: the updates are due, but their created is not done
        assert sorted(sender.attempts) == sorted([created.event_id, elsewhere.event_id])
        clock.at += timedelta(seconds=101)
        await until(lambda: len(sender.attempts) == 6)
        line_attempts = [e for e in sender.attempts if e != elsewhere.event_id]
        assert line_attempts == [created.event_id, created.event_id, *(u.event_id for u in updates)]
    finally:
        await worker.aclose()


async def test_a_given_up_event_lets_the_next_of_its_line_go(outbox):
    writer, store = outbox
    clock = ManualClock()
    line = "+15550009003"
    first = await record(writer, clock, line)
    clock.at += timedelta(milliseconds=1)
    second = await record(writer, clock, line)
    sender = FailingFirst(first.event_id)
    worker = DeliveryWorker(store, sender, clock=clock, retry=RetryPolicy(()), poll_interval=0.02)  # no retries
    worker.start()
    try:
        await until(lambda: len(sender.attempts) == 2)
        assert sender.attempts == [first.event_id, second.event_id]
        wanted = [(first.event_id, "failed"), (second.event_id, "delivered")]
        for _ in range(500):  # the outcomes are recorded a moment after the answers
            rows = await writer.read(Stmt("SELECT event_id, status FROM webhook_deliveries ORDER BY created_at", {}))
            if [tuple(r) for r in rows] == wanted:
                break
            await asyncio.sleep(0.01)
        assert [tuple(r) for r in rows] == wanted
    finally:
        await worker.aclose()


class SlowTarget:
    """Holds every POST to `slow` until released; answers the others at once."""

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.release = asyncio.Event()
        self.held = 0
        self.delivered: list[str] = []  # the other targets' event ids

    async def post(self, target_url: str, body: bytes, headers: dict[str, str]) -> Answer:
        if target_url == self.slow:
            self.held += 1
            await self.release.wait()
        else:
            self.delivered.append(headers["webhook-id"])
        return Answer(200, None, 1.0)


async def test_a_slow_receivers_backlog_does_not_hold_back_another_subscription(outbox):
    writer, store = outbox
    now = datetime.now(UTC)
    slow_only = Subscription(
        "s", "p", "https://slow.example/in", [events.CARD_UPDATED], None, True, new_secret(), "v", now, now
    )
    quick = Subscription(
        "q", "p", "https://quick.example/in", [events.CARD_CREATED], None, True, new_secret(), "v", now, now
    )
    await store.replace(slow_only)
    await store.add(quick)
    clock = ManualClock()
    for _ in range(200):  # a backlog of the slow one's, on lines of their own
        await record(writer, clock, event_type=events.CARD_UPDATED)
    sender = SlowTarget("https://slow.example/in")
    worker = DeliveryWorker(store, sender, clock=clock, concurrency=16, per_target=4, poll_interval=0.02)
    worker.start()
    try:
        await until(lambda: sender.held == 4)
        # While the slow one holds its four slots and 196 more wait, the quick one's new
        # events are all delivered: the slow backlog takes no slot nor claim of theirs.
        quick_events = []
        for _ in range(20):
            quick_events.append(await record(writer, clock))
            worker.wake()
        await until(lambda: len(sender.delivered) == 20)
        assert sorted(sender.delivered) == sorted(e.event_id for e in quick_events)
        assert sender.held == 4  # the per-target limit held all along
    finally:
        sender.release.set()
        await worker.aclose()


class HangingStore(WebhookStore):
    """A database that does not answer the first claim (a lock held elsewhere, a network
    gone quiet): that call never returns by itself."""

    hung: int

    async def claim(self, *args, **kwargs):
        if not self.hung:
            self.hung += 1
            await asyncio.Event().wait()
        return await super().claim(*args, **kwargs)


async def test_a_database_call_that_hangs_is_given_up_after_the_database_timeout(outbox, caplog):
    writer, _ = outbox
    store = HangingStore(writer, dialect="sqlite")
    store.hung = 0
    clock = ManualClock()
    sender = ScriptedSender()
    worker = DeliveryWorker(store, sender, clock=clock, poll_interval=0.02, database_timeout=0.2)
    await record(writer, clock)
    worker.start()
    try:
        await until(lambda: len(sender.posts) == 1)  # the next claim, once the hung one was given up
        assert store.hung == 1
        assert "could not claim deliveries" in caplog.text
    finally:
        await worker.aclose()


async def test_recording_an_event_claims_the_next_of_its_line_in_the_same_commit(outbox):
    writer, store = outbox
    clock = ManualClock()
    line = "+15550009009"
    first = await record(writer, clock, line)
    clock.at += timedelta(milliseconds=1)
    second = await record(writer, clock, line)
    due = clock.now().timestamp() + 1
    (claimed,) = await store.claim(due, 1e12, 1e12 + 60, 10)  # the second waits for the first
    assert claimed.event_id == first.event_id
    done = Outcome(claimed, "delivered", None, 200, None, 1.0, clock.now())
    found = await store.finish_and_claim([done], due, 1e12, 1e12 + 60, 10)
    assert [c.event_id for c in found] == [second.event_id]
    rows = await writer.read(Stmt("SELECT event_id, status FROM webhook_deliveries ORDER BY created_at", {}))
    assert [tuple(r) for r in rows] == [(first.event_id, "delivered"), (second.event_id, "pending")]


async def test_a_worker_woken_as_it_is_stopped_stops(outbox):
    """A stop that arrives in the same turn as a wake stops the worker (Python 3.11's
    `wait_for` could swallow such a cancellation, and `aclose` then waited for good)."""
    _writer, store = outbox
    for turns in range(4):
        for _ in range(10):
            worker = DeliveryWorker(store, ScriptedSender(), clock=ManualClock(), poll_interval=0.02)
            worker.start()
            await asyncio.sleep(0.03)  # in its wait
            worker.wake()
            for _ in range(turns):
                await asyncio.sleep(0)
            closing = asyncio.ensure_future(worker.aclose())
            done, _ = await asyncio.wait({closing}, timeout=2)
            while worker._task is not None and not closing.done():  # failed: stop it anyway
                worker._task.cancel()
                await asyncio.sleep(0.01)
            assert closing in done, f"the worker outlived aclose (woken {turns} turns before the stop)"
