"""The delivery worker's scheduling on the in-memory outbox (`tests/fakes.py`
`FakeDeliveryQueue`), in milliseconds: a line's events in order at each subscription, a
retry due by the worker's clock, a slow receiver keeping to its share, a subscription
switched off, and a database that fails a call and then answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from contactcard.store.webhooks import Subscription
from contactcard.webhooks.delivery import Answer, DeliveryWorker, RetryPolicy
from tests.fakes import FakeDeliveryQueue

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


class Sender:
    """Answers by target: a status per target URL (200 when none), or held until released."""

    def __init__(self) -> None:
        self.status: dict[str, list[int]] = {}
        self.held: set[str] = set()
        self.release = asyncio.Event()
        self.sent: list[tuple[str, str]] = []  # (target, event id)
        self.under_way: dict[str, int] = {}
        self.most_under_way: dict[str, int] = {}

    async def post(self, target_url: str, body: bytes, headers: dict[str, str]) -> Answer:
        self.sent.append((target_url, headers["webhook-id"]))
        self.under_way[target_url] = self.under_way.get(target_url, 0) + 1
        self.most_under_way[target_url] = max(self.most_under_way.get(target_url, 0), self.under_way[target_url])
        try:
            if target_url in self.held:
                await self.release.wait()
            statuses = self.status.get(target_url)
            return Answer(statuses.pop(0) if statuses else 200, None, 1.0)
        finally:
            self.under_way[target_url] -= 1


def subscription(sid: str, *, active: bool = True) -> Subscription:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Subscription(sid, "p", f"https://{sid}.example/in", [], None, active, "whsec_" + "A" * 32, "v", now, now)


async def until(condition, within: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "not in time"
        await asyncio.sleep(0.002)


def worker_on(queue: FakeDeliveryQueue, sender: Sender, clock: Clock, **options) -> DeliveryWorker:
    options.setdefault("poll_interval", 0.01)
    options.setdefault("settle", 0)
    return DeliveryWorker(queue, sender, clock=clock, **options)


async def test_a_lines_later_event_waits_for_the_retry_of_its_earlier_one():
    queue, sender, clock = FakeDeliveryQueue(), Sender(), Clock()
    queue.subscriptions["s"] = subscription("s")
    sender.status["https://s.example/in"] = [500]
    queue.add("s", "created", phone="+15550001")
    queue.add("s", "updated", phone="+15550001")
    queue.add("s", "other-line", phone="+15550002")
    worker = worker_on(queue, sender, clock, retry=RetryPolicy((30.0,), jitter=0))
    worker.start()
    try:
        await until(lambda: queue.status("other-line", "s") == "delivered")
        await asyncio.sleep(0.05)  # many polls
        assert [event for _, event in sender.sent] == ["created", "other-line"]  # not the line's next one
        clock.at += timedelta(seconds=31)  # the retry is due
        await until(lambda: queue.status("updated", "s") == "delivered")
        assert [event for _, event in sender.sent] == ["created", "other-line", "created", "updated"]
    finally:
        await worker.aclose()


async def test_a_slow_receiver_keeps_to_its_share_and_the_other_subscription_goes_on():
    queue, sender, clock = FakeDeliveryQueue(), Sender(), Clock()
    for sid in ("slow", "fast"):
        queue.subscriptions[sid] = subscription(sid)
    sender.held.add("https://slow.example/in")
    for i in range(40):
        queue.add("slow", f"slow-{i}", phone=f"+1555{i:07d}")
    worker = worker_on(queue, sender, clock, concurrency=16, per_target=4)
    worker.start()
    try:
        await until(lambda: sender.under_way.get("https://slow.example/in") == 4)
        for i in range(20):
            queue.add("fast", f"fast-{i}", phone=f"+1555{i:07d}")
        worker.wake()
        await until(lambda: all(queue.status(f"fast-{i}", "fast") == "delivered" for i in range(20)))
        assert sender.most_under_way["https://slow.example/in"] == 4  # never more than its share
        sender.release.set()
        await until(lambda: all(queue.status(f"slow-{i}", "slow") == "delivered" for i in range(40)))
    finally:
        await worker.aclose()


async def test_an_event_for_a_switched_off_subscription_is_given_up_unsent():
    queue, sender, clock = FakeDeliveryQueue(), Sender(), Clock()
    queue.subscriptions["s"] = subscription("s", active=False)
    queue.add("s", "e", phone="+15550001")
    worker = worker_on(queue, sender, clock)
    worker.start()
    try:
        await until(lambda: queue.status("e", "s") == "failed")
        assert sender.sent == []
        (row,) = queue.rows
        assert row.outcomes[-1].error == "subscription disabled"
    finally:
        await worker.aclose()


async def test_a_database_that_fails_a_call_holds_the_worker_back_only_until_it_answers():
    queue, sender, clock = FakeDeliveryQueue(), Sender(), Clock()
    queue.subscriptions["s"] = subscription("s")
    queue.add("s", "e", phone="+15550001")
    queue.fail_next = 3
    worker = worker_on(queue, sender, clock)
    worker.start()
    try:
        await until(lambda: queue.status("e", "s") == "delivered")
        assert [event for _, event in sender.sent] == ["e"]  # once: no claim was lost or doubled
    finally:
        await worker.aclose()
