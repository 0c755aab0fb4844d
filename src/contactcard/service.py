"""The contact-card use cases: list, get, set up (POST) and update (PATCH).

Every write follows the same sequence, holding only its line's lock (`_line`): read the
line's state (`LineState`), check it, rehost the image, then `_store_and_apply`: store
the `PendingWrite` (the new values, the write attempt that spends the budget, the
webhook event) in one commit, ask the device to apply it unless its apply joined that
commit (`Device.joined_apply`), and mark the card active. A crash anywhere leaves either
the old card, the new values inactive, or (joined) the new card applied; never a
half-written card.

The use cases receive their collaborators (`bootstrap.py` builds the real ones; the unit
tests hand in-memory fakes) and never see SQL.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio.to_thread

from contactcard import errors, images
from contactcard.card import Card, Outcome
from contactcard.cdn import BlobStore, BlobStoreUnavailable
from contactcard.contract import UNSET, ImageRules, SetupRequest, UpdateRequest
from contactcard.controls import Controls
from contactcard.device import Device
from contactcard.domain import CardValues, LineState, PendingWrite, Stored
from contactcard.errors import ApiError
from contactcard.logs import note
from contactcard.store.core import StoreUnavailable, WriteExpired, WriteInDoubt
from contactcard.store.core.locks import FirstRead, LineBusy
from contactcard.webhooks import events

log = logging.getLogger("contactcard")

# Decoding a large image takes hundreds of MB for a moment; a few at a time keep a burst
# of uploads from exhausting memory (the default thread limit is 40).
DECODERS = 2
# A 503 that the SDKs may retry after a second (they honour Retry-After).
_RETRY_SOON = {"retry-after": "1", "x-should-retry": "true"}


@dataclass(frozen=True)
class WriteResult:
    card: dict[str, object]  # as the API answers it
    # In the `hosted` profile a failed apply is an error *after* the card was stored.
    error: ApiError | None = None


@dataclass(frozen=True)
class Policy:
    profile: str  # "seed" | "hosted"
    write_budget: int  # 0: off
    write_budget_window: int
    write_queue_limit: int = 10_000  # writes waiting at once in this process


class Tally(Protocol):
    """Where the use cases count what they did (`metrics.Metrics`; `NoTally` in tests)."""

    def write(self, outcome: str) -> None: ...
    def image_fetch(self, outcome: str, size: int = 0) -> None: ...
    def queued(self, delta: int) -> None: ...


class NoTally:
    def write(self, outcome: str) -> None:
        pass

    def image_fetch(self, outcome: str, size: int = 0) -> None:
        pass

    def queued(self, delta: int) -> None:
        pass


class RuntimeControls(Protocol):
    """The controls in force (`controls.LiveControls`): settings a test may change, the clock."""

    @property
    def current(self) -> Controls: ...
    def reload(self) -> Controls: ...  # blocking
    def time(self) -> float: ...  # unix seconds on the server's clock


class FixedControls:
    """The policy as it was given, on a clock function (unit tests; no database)."""

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.time) -> None:
        self.current = Controls(0, policy.profile, policy.write_budget, policy.write_budget_window, 0)
        self._clock = clock

    def reload(self) -> Controls:
        return self.current

    def time(self) -> float:
        now: float = self._clock()
        return now


class Fetcher(Protocol):
    async def fetch(self, url: images.ImageUrl) -> bytes: ...


class LineLocks(Protocol):
    def hold(
        self, phone: str, first: Callable[[], FirstRead[LineState] | None] | None = None
    ) -> AbstractAsyncContextManager[LineState | None]:
        """Hold the line's lock; yields the line's state when the lock's request carried
        `first()`'s read (`store/core/locks.py`), None when the holder must read it."""
        ...


class CardWrites(Protocol):
    def state_read(self, key_hash: str, phone: str, budget_since: float | None) -> FirstRead[LineState] | None:
        """The line's state read, for the lock's request to carry; None: read it with `line_state`."""
        ...

    async def line_state(self, key_hash: str, phone: str, budget_since: float | None) -> LineState: ...
    async def store(self, write: PendingWrite) -> Stored:
        """One commit: the card (active when the device's apply joined and showed it), the
        write attempt, the webhook event."""
        ...

    async def mark_active(self, card: Card) -> Card: ...


class CardReads(Protocol):
    async def partner_cards(self, key_hash: str) -> tuple[str | None, list[dict[str, Any]]]: ...
    async def line_access_async(self, key_hash: str, phone: str) -> Any: ...
    async def memo(self) -> dict[Any, Any] | None: ...


class ContactCards:
    def __init__(
        self,
        *,
        reads: CardReads,
        writes: CardWrites,
        locks: LineLocks,
        device: Device,
        cdn: BlobStore,
        fetcher: Fetcher,
        rules: ImageRules,
        policy: Policy,
        read_cache_size: int = 0,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[], None] | None = None,
        tally: Tally | None = None,
        controls: RuntimeControls | None = None,
    ) -> None:
        self._reads = reads
        self._writes = writes
        self._locks = locks
        self._device = device
        self._cdn = cdn
        self._fetcher = fetcher
        self.rules = rules
        self._policy = policy
        self.read_cache_size = read_cache_size  # GET-by-number answers the HTTP layer may keep
        self._tally = tally or NoTally()
        self._on_event = on_event  # wakes this process's webhook worker
        # The profile, the budget and the clock come from the runtime controls; `policy`
        # gives the rest (and everything, with `clock`, when no controls are given).
        self._controls: RuntimeControls = controls or FixedControls(policy, clock)
        self._writing = 0  # writes in this process, waiting or under way
        self._decoders: anyio.CapacityLimiter | None = None  # made on the event loop

    # --- reads: one statement each, answered as API dicts --------------------------

    async def list_cards(self, key_hash: str) -> list[dict[str, Any]]:
        """Every card of the key's partner."""
        try:
            partner, found = await self._reads.partner_cards(key_hash)
        except StoreUnavailable:
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None
        if partner is None:
            raise ApiError(errors.UNAUTHORIZED)
        return found

    async def get_card(self, key_hash: str, phone: str) -> list[dict[str, Any]]:
        """The card of one line of the key's partner, as a list of zero or one."""
        try:
            access = await self._reads.line_access_async(key_hash, phone)
        except StoreUnavailable:
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None
        _check_access(access.partner_id, access.owns_line)
        return [access.card] if access.card else []

    async def read_memo(self) -> dict[Any, Any] | None:
        """Where the HTTP layer may keep GET answers: emptied whenever the database changes."""
        try:
            return await self._reads.memo()
        except StoreUnavailable:
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None

    async def require_key(self, key_hash: str) -> None:
        """401 unless the key is known and not revoked (for requests refused before the lookup)."""
        try:
            access = await self._reads.line_access_async(key_hash, "")
        except StoreUnavailable:
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None
        if access.partner_id is None:
            raise ApiError(errors.UNAUTHORIZED)

    # --- writes ---------------------------------------------------------------------

    async def setup(self, key_hash: str, request: SetupRequest, trace_id: str = "") -> WriteResult:
        phone = request.phone_number
        async with self._line(phone, key_hash) as state:
            if state.card is not None and state.card.is_active:
                raise ApiError(errors.CARD_EXISTS, headers={"x-should-retry": "false"})
            self._check_budget(state)
            blob = await self._rehost(request.image_url) if request.image_url is not None else None
            values = CardValues(request.first_name, request.last_name, blob, request.image_url)
            return await self._store_and_apply(phone, values, state, trace_id)

    async def update(self, key_hash: str, phone: str, request: UpdateRequest, trace_id: str = "") -> WriteResult:
        async with self._line(phone, key_hash) as state:
            current = state.card
            needs_setup_once = self._controls.current.profile == "seed"
            if current is None or (needs_setup_once and not current.ever_active):
                raise ApiError(errors.NOT_FOUND)
            if not await self._rcs_available(state, phone):
                raise ApiError(errors.RCS_UNAVAILABLE)
            self._check_budget(state)
            return await self._store_and_apply(phone, await self._merged(current, request), state, trace_id)

    async def _merged(self, current: Card, request: UpdateRequest) -> CardValues:
        """A PATCH: present fields replace, absent ones keep, `null` clears."""
        first_name = current.first_name if request.first_name is UNSET else request.first_name
        last_name = current.last_name if request.last_name is UNSET else request.last_name
        blob, source = current.image_blob, current.image_source_url
        wanted = request.image_url
        if wanted is None:
            blob, source = None, None
        elif wanted is not UNSET and wanted not in (self.image_url(current), source):
            # Only a new URL is fetched: echoing back what GET returned costs nothing.
            blob, source = await self._rehost(wanted), wanted
        return CardValues(first_name, last_name, blob, source)

    @asynccontextmanager
    async def _line(self, phone: str, key_hash: str) -> AsyncIterator[LineState]:
        """Hold the line's lock, refusing at once when too many writes already wait, and
        yield the line's state once the key may write to it. The store's failures become
        the catalogue's: nothing was half-written either way."""
        if self._writing >= self._policy.write_queue_limit:
            raise ApiError(errors.WRITES_BUSY, headers=_RETRY_SOON)
        self._writing += 1
        self._tally.queued(1)
        note(line=phone)
        known = self._controls.current

        # Called once the in-process lock is held: the budget's window from then.
        def first() -> FirstRead[LineState] | None:
            return self._writes.state_read(key_hash, phone, self._budget_since(known))

        try:
            async with self._locks.hold(phone, first) as read:
                yield await self._state(key_hash, phone, known, read)
        except LineBusy:
            raise ApiError(errors.WRITES_BUSY, headers=_RETRY_SOON) from None
        except WriteInDoubt:
            # Sent, unanswered by its deadline: the database settles it whole, later.
            self._tally.write("in_doubt")
            note(outcome="in_doubt")
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON, text=errors.IN_DOUBT_MESSAGE) from None
        except WriteExpired:
            self._tally.write("expired")  # never sent: nothing changed
            note(outcome="expired")
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None
        except StoreUnavailable:
            raise ApiError(errors.DATABASE_UNAVAILABLE, headers=_RETRY_SOON) from None
        finally:
            self._writing -= 1
            self._tally.queued(-1)

    async def _state(self, key_hash: str, phone: str, known: Controls, read: LineState | None) -> LineState:
        """The line's state: `read` with the lock's request under the `known` controls, or
        read now. 401/403 unless the key's partner owns the line."""
        state = read
        if state is None:
            known = self._controls.current
            state = await self._writes.line_state(key_hash, phone, self._budget_since(known))
        if state.controls_version > known.version:
            # A setting changed or the clock moved (maybe in another process): decide with
            # the new ones. Rare, so the reload's query is paid only then.
            known = await anyio.to_thread.run_sync(self._controls.reload)
            state = await self._writes.line_state(key_hash, phone, self._budget_since(known))
        note(partner=state.partner_id)
        _check_access(state.partner_id, state.owns_line)
        return state

    def _budget_since(self, controls: Controls) -> float | None:
        """Where the budget's window begins on the server's clock; None when it is off."""
        if controls.write_budget <= 0:
            return None
        return self._controls.time() - controls.write_budget_window

    async def _rcs_available(self, state: LineState, phone: str) -> bool:
        if state.rcs_unavailable is not None:  # read with the state (the simulated device)
            return not state.rcs_unavailable
        return await self._device.rcs_check_available(phone)

    def _check_budget(self, state: LineState) -> None:
        controls = self._controls.current
        budget, window = controls.write_budget, controls.write_budget_window
        if budget <= 0 or state.attempts < budget:
            return
        now = self._controls.time()
        wait = max(1, math.ceil((state.oldest_attempt or now) + window - now))
        self._tally.write("budget_refused")
        note(outcome="budget_refused")
        raise ApiError(
            errors.RATE_LIMITED,
            headers={"retry-after": str(wait), "x-should-retry": "false"},
            retry_after=wait,
        )

    async def _store_and_apply(self, phone: str, values: CardValues, state: LineState, trace_id: str) -> WriteResult:
        """Store, apply unless the device's apply joined the store's commit, mark active."""
        now = self._controls.time()
        controls = self._controls.current
        card_id = state.card.id if state.card is not None else uuid.uuid4().hex
        image_url = f"{self.rules.own_cdn_prefix}{values.image_blob}" if values.image_blob else None
        write = PendingWrite(
            phone,
            values,
            attempt_at=now if controls.write_budget > 0 else None,
            prune_before=now - controls.write_budget_window,
            image_url=image_url,
            card_id=card_id,
            event=self._event(phone, values, state, card_id, trace_id, now),
            joined=self._device.joined_apply(state, values, image_url),
        )
        stored = await self._writes.store(write)
        if write.event is not None and self._on_event is not None:
            # On the loop's next turn, after this request's answer is queued: the webhook
            # worker's wake-up then runs after the answer is written, not before it.
            asyncio.get_running_loop().call_soon(self._on_event)
        card, outcome = stored.card, stored.outcome
        if outcome is None:  # not joined, or joined and refused (a script set since the state read)
            outcome = await self._device.apply(card, image_url)
        if outcome is Outcome.APPLIED:
            # Already active when the device's apply joined the store's commit.
            active = card if card.is_active else await self._writes.mark_active(card)
            self._tally.write("applied")
            note(outcome="applied")
            return WriteResult(self.public(active))
        if outcome is Outcome.RATE_LIMITED:
            self._tally.write("upstream_rate_limited")
            note(outcome="upstream_rate_limited")
            raise ApiError(
                errors.UPSTREAM_RATE_LIMITED,
                headers={"x-should-retry": "false"},
                text=errors.UPSTREAM_RATE_LIMITED_MESSAGE,
            )
        self._tally.write("failed")
        note(outcome="failed")
        if self._controls.current.profile == "hosted":
            return WriteResult(self.public(card), ApiError(errors.APPLY_INCOMPLETE))
        return WriteResult(self.public(card))

    def _event(
        self, phone: str, values: CardValues, state: LineState, card_id: str, trace_id: str, now: float
    ) -> events.Outbox | None:
        """The webhook event this write makes: `created` for a line's first card, `updated`
        with exactly the fields that change, none when nothing changes."""
        assert state.partner_id is not None  # checked by `_state`
        prefix = self.rules.own_cdn_prefix
        after = events.CardView(
            card_id,
            values.first_name,
            values.last_name,
            f"{prefix}{values.image_blob}" if values.image_blob else None,
        )
        at = datetime.fromtimestamp(now, UTC)
        changed = None
        if state.card is not None:
            before = state.card
            view = events.CardView(card_id, before.first_name, before.last_name, self.image_url(before))
            changed = events.change(view, after)
            if not changed:
                return None
        return events.card_event(
            events.CARD_CREATED if changed is None else events.CARD_UPDATED,
            partner_id=state.partner_id,
            phone_number=phone,
            card=after,
            at=at,
            trace_id=trace_id,
            changed=changed,
        )

    def image_url(self, card: Card) -> str | None:
        return card.image_url(self.rules.own_cdn_prefix)

    def public(self, card: Card) -> dict[str, object]:
        return card.public(self.rules.own_cdn_prefix)

    async def _rehost(self, raw: str) -> str:
        """Put the image behind `raw` on our CDN and return its blob name."""
        own = self.rules.own_blob(raw)
        if own is not None:
            try:
                found = await anyio.to_thread.run_sync(self._cdn.get, own)
            except BlobStoreUnavailable:
                raise ApiError(errors.IMAGE_STORE_UNAVAILABLE, headers=_RETRY_SOON) from None
            if found is None:
                raise ApiError(errors.IMAGE_FETCH_FAILED, "no such image on this CDN")
            return own
        url = self.rules.parse(raw)
        try:
            data = await self._fetcher.fetch(url)
        except images.FetchError as exc:
            self._tally.image_fetch("fetch_failed")
            note(outcome="image_fetch_failed", reason=exc.reason)
            raise ApiError(errors.IMAGE_FETCH_FAILED, exc.reason) from None
        if self._decoders is None:
            self._decoders = anyio.CapacityLimiter(DECODERS)
        try:
            image = await anyio.to_thread.run_sync(images.normalise, data, limiter=self._decoders)
        except images.ImageError as exc:
            self._tally.image_fetch("unusable", len(data))
            note(outcome="image_unusable", reason=exc.reason)
            raise ApiError(errors.IMAGE_UNUSABLE, exc.reason) from None
        name = f"{image.digest}.{image.extension}"
        try:
            await anyio.to_thread.run_sync(self._cdn.put, name, image.data)
        except BlobStoreUnavailable as exc:
            # Before anything is stored: the card keeps its old values, or stays absent.
            self._tally.image_fetch("store_unavailable", len(data))
            note(outcome="image_store_unavailable")
            log.warning("image store unavailable: %s", exc, extra={"event": "image_store_unavailable"})
            raise ApiError(errors.IMAGE_STORE_UNAVAILABLE, headers=_RETRY_SOON) from None
        self._tally.image_fetch("stored", len(data))
        return name


def _check_access(partner_id: str | None, owns_line: bool) -> None:
    if partner_id is None:
        raise ApiError(errors.UNAUTHORIZED)
    if not owns_line:
        raise ApiError(errors.FORBIDDEN)
