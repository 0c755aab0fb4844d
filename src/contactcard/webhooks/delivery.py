"""Delivering recorded events: claim due attempts, sign, POST, record, retry.

A `DeliveryWorker` runs as one task on the event loop of every server process. It claims
due attempts from the outbox with a lease (so each is made by one process), sends them
with bounded concurrency and records each result; a write's answer never waits for it.

`WebhookSender` makes one attempt: the target URL goes through the image fetcher's parser
and address policy again (a name may resolve elsewhere since the subscription was made),
the request goes to exactly the address that was checked, redirects are not followed, and
the attempt is bounded in time and in the bytes of the answer it reads.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import ipaddress
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import anyio
import anyio.to_thread

from contactcard.images.addresses import HostPolicy, IPAddress
from contactcard.images.urls import ImageUrl, ImageUrlError, parse_image_url
from contactcard.store.webhooks import Claimed, Outcome, Subscription
from contactcard.webhooks.client import AnswerError, Endpoint, HookClient

log = logging.getLogger("contactcard")

Resolver = Callable[[str, int], list[str]]
# Before each retry, in seconds: 10 attempts over about 30 minutes (the hosted API retries
# "for up to 30 minutes").
DEFAULT_RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0)
RECORD_BATCH = 256  # attempts recorded in one transaction, at most
RECORD_ON_CLOSE_S = 2.0  # the bound on recording what is left when the worker stops
# Attempts made but not yet recorded, beyond which no more are claimed: a database slower
# than the receivers holds the worker back rather than growing this list.
UNRECORDED_MAX = 1024


class AttemptTally(Protocol):
    """Where the worker counts its attempts (`metrics.Metrics`)."""

    def webhook_attempt(self, outcome: str, latency_ms: float | None) -> None: ...


class Clock(Protocol):
    """Where the worker reads the time that due attempts are measured against."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class Answer:
    """What one attempt got: the receiver's status, or why there was none."""

    status: int | None
    error: str | None
    latency_ms: float


@dataclass(frozen=True)
class RetryPolicy:
    delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    jitter: float = 0.2  # each delay varies by up to ±20 %: receivers that failed together do not retry together

    def delay(self, attempts: int) -> float | None:
        """Seconds until the next attempt after `attempts` failed ones; None: no more."""
        if attempts > len(self.delays):
            return None
        base = self.delays[attempts - 1]
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


def retryable(answer: Answer) -> bool:
    """Timeouts, connection failures, 5xx, 429 and 3xx (redirects are not followed) are
    tried again; a 2xx is done; any other 4xx is final."""
    status = answer.status
    return status is None or status >= 500 or status == 429 or 300 <= status < 400


@functools.lru_cache(maxsize=4096)
def _signing_key(secret: str) -> bytes:
    """The key a `whsec_` secret stands for, decoded once per subscription, not per attempt."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def signature_headers(subscription: Subscription, claimed: Claimed, timestamp: int) -> dict[str, str]:
    """Standard Webhooks headers (what the SDKs' `unwrap` verifies) and the legacy ones.

    The Standard Webhooks signature is `v1,` and the base64 of the HMAC-SHA256 of
    `{id}.{timestamp}.{body}` (what `standardwebhooks.Webhook.sign` computes, without
    decoding the secret and formatting a datetime again at every attempt)."""
    body = claimed.body.encode()
    key = _signing_key(subscription.signing_secret)
    stamp = str(timestamp).encode()
    signed = hmac.new(key, claimed.event_id.encode() + b"." + stamp + b"." + body, hashlib.sha256).digest()
    legacy = hmac.new(key, stamp + b"." + body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "user-agent": "contactcard-webhooks",
        "accept-encoding": "identity",  # the answer is read only a few KiB deep, never inflated
        "webhook-id": claimed.event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(signed).decode(),
        "x-webhook-event": claimed.event_type,
        "x-webhook-subscription-id": subscription.id,
        "x-webhook-timestamp": str(timestamp),
        "x-webhook-signature": legacy,
    }


def system_resolver(host: str, port: int) -> list[str]:
    import socket

    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class TargetRefused(Exception):
    """The target URL or the address it resolves to is not allowed; the message says why."""


async def checked_addresses(url: ImageUrl, policy: HostPolicy, resolver: Resolver) -> list[IPAddress]:
    """The addresses `url` may be reached at; one refused address refuses them all (a
    rebinding host mixes public and private answers)."""

    async def resolve(host: str, port: int) -> list[str]:
        return await anyio.to_thread.run_sync(resolver, host, port, abandon_on_cancel=True)

    return await permitted_addresses(url, policy, resolve)


async def permitted_addresses(
    url: ImageUrl, policy: HostPolicy, resolve: Callable[[str, int], Awaitable[list[str]]]
) -> list[IPAddress]:
    """`checked_addresses` with a resolver of the event loop's own."""
    if url.is_ip:
        found: list[IPAddress] = [_address(url.host)]
    else:
        try:
            found = [_address(answer) for answer in await resolve(url.host, url.port)]
        except Exception:
            raise TargetRefused("target host could not be resolved") from None
        if not found:
            raise TargetRefused("target host could not be resolved")
    if not all(policy.permits(url, ip) for ip in found):
        raise TargetRefused("target URL points to a non-public address")
    return found


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> IPAddress:
    """`ipaddress.ip_address`, remembered: the text of an address always reads the same
    (whether it is allowed is asked of the policy every time)."""
    return ipaddress.ip_address(text)


def parse_target(raw: str, policy: HostPolicy) -> ImageUrl:
    return _parsed_target(raw, policy.allow_http)


@functools.lru_cache(maxsize=1024)
def _parsed_target(raw: str, allow_http: bool) -> ImageUrl:
    """A target URL parsed once, not at every attempt: the text alone decides the parse
    (the address rules, which depend on what the name resolves to, run every time)."""
    try:
        return parse_image_url(raw, allow_http=allow_http)
    except ImageUrlError as exc:
        # The parser speaks of image URLs; the rules are the same.
        raise TargetRefused(str(exc).replace("image_url", "target_url")) from None


class WebhookSender:
    """One bounded POST to a receiver, on connections kept alive per checked address."""

    def __init__(
        self,
        policy: HostPolicy,
        *,
        timeout: float = 10.0,
        max_answer_bytes: int = 4096,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        self._policy = policy
        self._timeout = timeout
        self._resolver = resolver or system_resolver
        # `verify`: the trusted roots (tests); else the system's. Never switched off.
        self._client = HookClient(tls=verify, max_answer=max_answer_bytes)
        self._lookups = SharedLookups(self._resolver)

    async def post(self, target_url: str, body: bytes, headers: dict[str, str]) -> Answer:
        started = time.perf_counter()

        def answer(status: int | None, error: str | None) -> Answer:
            return Answer(status, error, round((time.perf_counter() - started) * 1000, 2))

        try:
            # One deadline for the whole attempt: resolving, connecting, TLS, sending and
            # reading; a receiver that trickles its answer is cut off by it.
            async with asyncio.timeout(self._timeout):
                url = parse_target(target_url, self._policy)
                addresses = await permitted_addresses(url, self._policy, self._lookups.resolve)
                ip = addresses[0]
                endpoint = Endpoint(url.scheme, url.host, ip.compressed, url.port)
                status = await self._client.post(endpoint, url.path_and_query, url.host_header, headers, body)
                return answer(status, None)
        except TargetRefused as exc:
            return answer(None, str(exc))
        except TimeoutError:
            return answer(None, f"timed out after {self._timeout:g} s")
        except ssl.SSLCertVerificationError:
            return answer(None, "could not connect (TLS certificate refused)")
        except AnswerError as exc:
            return answer(None, str(exc))
        except ConnectionError as exc:
            if isinstance(exc, ConnectionRefusedError):
                return answer(None, "could not connect")
            return answer(None, f"connection failed ({type(exc).__name__})")
        except (OSError, ssl.SSLError):
            return answer(None, "could not connect")

    async def aclose(self) -> None:
        self._client.close()


class SharedLookups:
    """Attempts to one host that start while its name is being resolved share that one
    lookup; each later attempt resolves again (a name may point elsewhere by then)."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver
        self._pending: dict[tuple[str, int], asyncio.Future[list[str]]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(
                anyio.to_thread.run_sync(self._resolver, host, port, abandon_on_cancel=True)
            )
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: one attempt's deadline must not cancel the lookup the others wait for.
        return await asyncio.shield(pending)


class Sender(Protocol):
    async def post(self, target_url: str, body: bytes, headers: dict[str, str]) -> Answer: ...


class DeliveryQueue(Protocol):
    """The outbox as the worker schedules from it (`store.webhooks.WebhookStore` in a
    server, `tests/fakes.py` `FakeDeliveryQueue` in the unit tests).

    `claim` takes due attempts (`next_at <= now` on the worker's clock) whose lease has run
    out (`real_now`, real time), at most `per_subscription` of one subscription and none of
    `skip`'s, and leases them until `lease_until`; a line's event is due at a subscription
    only when no earlier event of that line is pending there. `finish_many` records
    outcomes and ends their leases; `release` gives claims back unmade."""

    async def has_due(self, now: float, real_now: float) -> bool: ...

    async def claim(
        self,
        now: float,
        real_now: float,
        lease_until: float,
        limit: int,
        *,
        skip: list[str] | None = None,
        per_subscription: int | None = None,
    ) -> list[Claimed]: ...

    async def finish_and_claim(
        self,
        outcomes: list[Outcome],
        now: float,
        real_now: float,
        lease_until: float,
        limit: int,
        *,
        skip: list[str] | None = None,
        per_subscription: int | None = None,
    ) -> list[Claimed]: ...

    async def finish_many(self, outcomes: list[Outcome]) -> None: ...

    async def release(self, claimed: list[Claimed]) -> None: ...

    async def targets(self, ids: list[str]) -> dict[str, Subscription]: ...


class DeliveryWorker:
    """Claims due attempts and makes them, `concurrency` at a time, until stopped."""

    def __init__(
        self,
        store: DeliveryQueue,
        sender: Sender,
        *,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 128,
        poll_interval: float = 0.5,
        lease: float = 30.0,
        settle: float = 0.01,
        per_target: int = 64,
        tally: AttemptTally | None = None,
        database_timeout: float = 30.0,
    ) -> None:
        self._tally = tally  # the metrics, when on
        # Each of the worker's database calls gives up after this: a database that hangs
        # holds the worker back one bound at a time, never for good.
        self._db_timeout = database_timeout
        self._store = store
        self._sender = sender
        self._clock = clock or SystemClock()
        self._retry = retry or RetryPolicy()
        self._concurrency = concurrency
        self._poll = poll_interval
        self._lease = lease
        self._settle = settle
        # Attempts at once to one subscription: a slow receiver must not take every slot.
        self._per_target = per_target
        self._wake: asyncio.Event | None = None
        self._told = False  # woken by a write (not by a slot freed or a batch recorded)
        self._task: asyncio.Task[None] | None = None
        self._running: dict[asyncio.Task[None], str] = {}  # attempts under way: their subscription
        self._in_flight: dict[str, int] = {}  # attempts under way per subscription
        # Results waiting to be recorded: recorded together, one transaction for all that
        # finished while the last was written.
        self._outcomes: list[Outcome] = []
        self._recorder: asyncio.Task[None] | None = None
        # Held while a claim is made and its attempts started, by the loop or by the
        # recorder (whose record may carry the next claim): one claim at a time, so that
        # two never count the same free slots.
        self._claiming = asyncio.Lock()
        self._busy = False  # the last claim found work
        self._only_busy_due = False  # the last claim left some out and found nothing
        self._batch = max(1, per_target // 2)  # the least worth claiming for one subscription

    def wake(self) -> None:
        """An event was recorded in this process: look now rather than at the next poll."""
        if self._wake is not None:
            self._told = True
            self._only_busy_due = False
            self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="contactcard-webhooks")

    async def aclose(self) -> None:
        """Stop claiming; attempts under way are cancelled and, their lease run out, made
        again by whichever process claims them next."""
        tasks = [t for t in (self._task, *self._running, self._recorder) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:
                pass
        self._task = None
        if self._outcomes:
            # Attempts made but not yet recorded: recorded now if the database answers in
            # a moment, so that a restart does not send them again.
            try:
                with anyio.fail_after(RECORD_ON_CLOSE_S):
                    await self._store.finish_many(self._outcomes)
                self._outcomes = []
            except Exception as exc:
                log.warning("webhook worker stopped with %d attempts unrecorded: %s", len(self._outcomes), exc)

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            claimed = 0
            try:
                claimed = await self._claim_some()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again at the next poll
                log.warning("webhook worker could not claim deliveries: %s", exc)
            if claimed:
                continue  # there may be more due right now
            try:
                # `asyncio.timeout`, not `wait_for`: on Python 3.11, `wait_for` may swallow a
                # cancellation that arrives as the wake does, and this loop would outlive
                # `aclose` (which then waits for it for good).
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()
            except TimeoutError:
                self._only_busy_due = False  # retries come due, other processes record events
                continue
            if self._told:
                # Woken by a write: let it finish first (its activation commits through
                # the same writer), and take the events of the writes around it in one
                # claim. (A slot freed or a batch recorded wakes the loop without a pause.)
                self._told = False
                await asyncio.sleep(self._settle)

    def _claim_plan(self) -> tuple[int, list[str], int] | None:
        """How much a claim may take now: (slots, subscriptions to leave out, the share
        of each other one); None when too few slots are free to be worth a commit."""
        if len(self._outcomes) >= UNRECORDED_MAX:
            return None  # the recorder wakes the loop when it is done
        free = self._concurrency - len(self._running)
        # Claim in batches: a claim per finished attempt would cost a commit each. A
        # quarter free is enough: the next batch is claimed while the rest are under way.
        if free <= 0 or (self._running and free < max(1, self._concurrency // 4)):
            return None
        if self._only_busy_due:
            return None  # the last claim found nothing but busy subscriptions' rows
        # A subscription is claimed for only with room for a batch (half of its
        # limit); the others get at most the room the fullest of them has left, so no
        # claim takes rows it would have to give back.
        busy = sorted(sid for sid, count in self._in_flight.items() if count > self._per_target - self._batch)
        fullest = max((c for sid, c in self._in_flight.items() if c <= self._per_target - self._batch), default=0)
        return free, busy, self._per_target - fullest

    def _still_busy(self, busy: list[str]) -> bool:
        """Whether one of the subscriptions a claim left out still has no room for a batch
        (while the claim was made, they may all have finished)."""
        return any(self._in_flight.get(sid, 0) > self._per_target - self._batch for sid in busy)

    async def _claim_some(self) -> int:
        if self._claiming.locked():
            return 0  # the recorder is claiming with its batch
        async with self._claiming:
            plan = self._claim_plan()
            if plan is None:
                return 0
            free, busy, share = plan
            now, real_now = self._clock.now().timestamp(), time.time()
            if not self._busy:
                # Idle: a read first, so that a poll with nothing due writes nothing. While
                # claims find work, that read would only add a round trip to each.
                async with asyncio.timeout(self._db_timeout):
                    if not await self._store.has_due(now, real_now):
                        return 0
            async with asyncio.timeout(self._db_timeout):
                # (A claim that times out leaves its rows leased: made when the lease runs out.)
                found = await self._store.claim(
                    now, real_now, real_now + self._lease, free, skip=busy, per_subscription=share
                )
            self._busy = bool(found)
            # Nothing found while some were left out: only their rows may be due. No more
            # claims until one of them has room again, or something else changes.
            self._only_busy_due = not found and self._still_busy(busy)
            return await self._start(found)

    async def _start(self, found: list[Claimed]) -> int:
        """Make the claimed attempts, each a task of its own; the number started."""
        if not found:
            return 0
        async with asyncio.timeout(self._db_timeout):
            targets = await self._store.targets(sorted({c.subscription_id for c in found}))
        surplus = []
        for claimed in found:
            sid = claimed.subscription_id
            if self._in_flight.get(sid, 0) >= self._per_target:
                surplus.append(claimed)  # (not expected) given back at once, due as it was
                continue
            self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
            task = asyncio.get_running_loop().create_task(self._attempt(claimed, targets.get(sid)))
            self._running[task] = sid
            task.add_done_callback(self._done)
        if surplus:
            async with asyncio.timeout(self._db_timeout):
                await self._store.release(surplus)
        return len(found) - len(surplus)

    def _done(self, task: asyncio.Task[None]) -> None:
        sid = self._running.pop(task, None)
        if sid is not None:
            left = self._in_flight.get(sid, 1) - 1
            if left > 0:
                self._in_flight[sid] = left
            else:
                del self._in_flight[sid]
            if left == self._per_target - self._batch:
                self._only_busy_due = False  # room for a batch again
        if self._wake is not None:
            self._wake.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook attempt failed unexpectedly", exc_info=task.exception())

    async def _attempt(self, claimed: Claimed, subscription: Subscription | None) -> None:
        if subscription is None or not subscription.is_active:
            # Deleted meanwhile (its rows went with it) or switched off: nothing to send.
            at = self._clock.now()
            self._record(Outcome(claimed, "failed", None, None, "subscription disabled", None, at))
            return
        headers = signature_headers(subscription, claimed, int(time.time()))
        answer = await self._sender.post(subscription.target_url, claimed.body.encode(), headers)
        if answer.status is not None and 200 <= answer.status < 300:
            status, next_at = "delivered", None
        elif retryable(answer) and (delay := self._retry.delay(claimed.attempts)) is not None:
            status, next_at = "pending", self._clock.now().timestamp() + delay
        else:
            status, next_at = "failed", None
        at = self._clock.now()
        self._record(Outcome(claimed, status, next_at, answer.status, answer.error, answer.latency_ms, at))
        if self._tally is not None:
            self._tally.webhook_attempt("retrying" if status == "pending" else status, answer.latency_ms)

    def _record(self, outcome: Outcome) -> None:
        """Queue `outcome` for recording. The attempt's slot is free at once: waiting for
        the commit would make each slot wait a commit per POST. Until it is recorded the
        row's lease holds, so no claim takes it again; if the process dies first, the lease
        runs out and the attempt is made again (at least once, as always)."""
        self._outcomes.append(outcome)
        if self._recorder is None:
            self._recorder = asyncio.get_running_loop().create_task(self._record_all())

    async def _record_all(self) -> None:
        try:
            while self._outcomes:
                batch, self._outcomes = self._outcomes[:RECORD_BATCH], self._outcomes[RECORD_BATCH:]
                try:
                    if not self._claiming.locked() and (plan := self._claim_plan()) is not None:
                        # The next claim rides with the record, in the same commit: the
                        # lines just recorded have their next events claimed at once.
                        async with self._claiming:
                            free, busy, share = plan
                            now, real_now = self._clock.now().timestamp(), time.time()
                            async with asyncio.timeout(self._db_timeout):
                                found = await self._store.finish_and_claim(
                                    batch, now, real_now, real_now + self._lease, free, skip=busy,
                                    per_subscription=share,
                                )  # fmt: skip
                            batch = []
                            self._busy = bool(found)
                            self._only_busy_due = not found and self._still_busy(busy)
                            await self._start(found)
                    elif self._only_busy_due and any(
                        self._in_flight.get(o.claimed.subscription_id, 0) <= self._per_target - self._batch
                        for o in batch
                    ):
                        # A line of a subscription with room may have its next event due.
                        self._only_busy_due = False
                        async with asyncio.timeout(self._db_timeout):
                            await self._store.finish_many(batch)
                    else:
                        async with asyncio.timeout(self._db_timeout):
                            await self._store.finish_many(batch)
                except asyncio.CancelledError:
                    self._outcomes[:0] = batch  # still to record: aclose tries once more
                    raise
                except Exception as exc:  # their leases run out, and the attempts are made again
                    log.warning("webhook worker could not record %d attempts: %s", len(batch) or 0, exc)
                if self._wake is not None:
                    # The lines whose events were recorded may have their next one due now,
                    # and claims held back by unrecorded attempts may go on.
                    self._wake.set()
        finally:
            self._recorder = None
