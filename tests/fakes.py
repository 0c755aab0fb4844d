"""In-memory collaborators for the use cases (`contactcard.service.ContactCards`).

Small classes over dicts and lists, no database, no network, no threads of their own:
the unit tests build a `World` and drive the use cases in milliseconds. Each fake keeps
the semantics of the real collaborator it stands for (the SQL in `store/cards.py`, the
line locks in `store/locks.py`) and records what it was asked, so a test can assert
both the answer and the side effects.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from contactcard import images
from contactcard.card import Card, Outcome
from contactcard.cdn.base import BLOB_NAME, CONTENT_TYPES, Blob, BlobStoreUnavailable
from contactcard.contract import ImageRules
from contactcard.domain import CardValues, JoinedApply, LineState, PendingWrite, RecordedEvent, Stored
from contactcard.service import ContactCards, Policy
from contactcard.store.locks import LineBusy
from contactcard.store.reads import LineAccess
from contactcard.store.writer import StoreUnavailable

CDN_PREFIX = "https://cdn.test/contact-card/"


def png(size: int = 64, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real PNG, made in memory, that `images.normalise` decodes for real."""
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


class FakeClock:
    """`time.time` for the use cases: it only moves when a test moves it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeStore:
    """Partners, keys, lines, cards and write attempts in dicts.

    Implements the write path (`line_state`, `store`, `mark_active`) with the same rules
    as the SQL in `store/cards.py`, and the read path (`partner_cards`,
    `line_access_async`, `memo`) as `store/reads.py` answers it. A write whose device's
    apply joins its commit (`PendingWrite.joined`) is shown on the line's display in
    `displays` and stored active, as the simulated device's display is in the database.
    """

    def __init__(self, cdn_prefix: str = CDN_PREFIX, journal: list[str] | None = None) -> None:
        self.cdn_prefix = cdn_prefix
        self.partners: set[str] = set()
        self.keys: dict[str, str] = {}  # key hash -> partner id (absent: unknown or revoked)
        self.lines: dict[str, str] = {}  # phone -> owning partner id
        self.cards: dict[str, Card] = {}  # phone -> its card
        self.attempts: dict[str, list[float]] = {}  # phone -> times of writes that reached the device
        self.journal = journal if journal is not None else []  # the order of side effects
        self.events: list[RecordedEvent] = []  # webhook events recorded with card changes
        self.displays: dict[str, JoinedApply] = {}  # phone -> what a joined apply showed there
        # True: a joined apply shows nothing (as when an outcome was scripted for the
        # simulated device after the state read): the card is stored inactive.
        self.refuse_joined = False
        self.unavailable = False  # True: every call raises StoreUnavailable
        self._ids = itertools.count(1)

    # --- arranging ---------------------------------------------------------------------

    def add_partner(self, partner_id: str, key_hash: str, lines: list[str]) -> None:
        self.partners.add(partner_id)
        self.keys[key_hash] = partner_id
        for phone in lines:
            self.lines[phone] = partner_id

    def revoke(self, key_hash: str) -> None:
        del self.keys[key_hash]

    def put_card(self, phone: str, *, is_active: bool, ever_active: bool | None = None, **values: Any) -> Card:
        """A card as if an earlier write had left it."""
        card = Card(
            id=f"card-{next(self._ids)}",
            phone_number=phone,
            first_name=values.get("first_name", "Ada"),
            last_name=values.get("last_name"),
            image_blob=values.get("image_blob"),
            image_source_url=values.get("image_source_url"),
            is_active=is_active,
            ever_active=is_active if ever_active is None else ever_active,
        )
        self.cards[phone] = card
        return card

    def spend(self, phone: str, *times: float) -> None:
        """Write attempts as if earlier writes had reached the device at `times`."""
        self.attempts.setdefault(phone, []).extend(times)

    # --- the write path (CardWrites) -----------------------------------------------------

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("the fake store is down")

    def state_read(self, key_hash: str, phone: str, budget_since: float | None) -> None:
        return None  # no statements here: `line_state` answers from the dicts

    async def line_state(self, key_hash: str, phone: str, budget_since: float | None) -> LineState:
        self._check()
        self.journal.append("line_state")
        partner = self.keys.get(key_hash)
        if partner is None:
            return LineState(None, False, None, 0, None)
        owns = self.lines.get(phone) == partner
        card = self.cards.get(phone) if owns else None
        since = budget_since
        counted = [] if since is None else [at for at in self.attempts.get(phone, []) if at > since]
        return LineState(partner, owns, card, len(counted), min(counted) if counted else None)

    async def store(self, write: PendingWrite) -> Stored:
        self._check()
        phone, values = write.phone, write.values
        if write.event is not None:
            self.events.append(write.event)  # recorded with the change, as the store's outbox does
        self.journal.append("store")
        if write.attempt_at is not None:
            kept = [at for at in self.attempts.get(phone, []) if at > write.prune_before]
            self.attempts[phone] = [*kept, write.attempt_at]
        shown = write.joined is not None and not self.refuse_joined
        if shown:
            assert write.joined is not None
            self.displays[phone] = write.joined
        old = self.cards.get(phone)
        card = Card(
            id=old.id if old is not None else write.card_id,
            phone_number=phone,
            first_name=values.first_name,
            last_name=values.last_name,
            image_blob=values.image_blob,
            image_source_url=values.image_source_url,
            is_active=shown,
            ever_active=shown or (old.ever_active if old is not None else False),
        )
        self.cards[phone] = card
        # Not joined, or joined and not shown: the device applies on its own, after the commit.
        return Stored(card, Outcome.APPLIED if shown else None)

    async def mark_active(self, card: Card) -> Card:
        self._check()
        self.journal.append("mark_active")
        stored = self.cards.get(card.phone_number)
        if stored is not None and stored.id == card.id:
            self.cards[card.phone_number] = replace(stored, is_active=True, ever_active=True)
        return replace(card, is_active=True, ever_active=True)

    # --- the read path (CardReads) -------------------------------------------------------

    async def partner_cards(self, key_hash: str) -> tuple[str | None, list[dict[str, Any]]]:
        self._check()
        partner = self.keys.get(key_hash)
        if partner is None:
            return None, []
        owned = sorted(phone for phone, owner in self.lines.items() if owner == partner)
        return partner, [self.cards[phone].public(self.cdn_prefix) for phone in owned if phone in self.cards]

    async def line_access_async(self, key_hash: str, phone: str) -> LineAccess:
        self._check()
        partner = self.keys.get(key_hash)
        if partner is None:
            return LineAccess(None, False, None)
        owns = self.lines.get(phone) == partner
        card = self.cards.get(phone) if owns else None
        return LineAccess(partner, owns, card.public(self.cdn_prefix) if card else None)

    async def memo(self) -> dict[Any, Any] | None:
        self._check()
        return None


class FakeLocks:
    """An asyncio lock per number, as `store.locks.LineLocks` keeps inside one process."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self.waiting: dict[str, int] = {}  # writers waiting for or holding each number's lock
        self.busy = False  # True: every hold raises LineBusy (the wait bound passed)

    @asynccontextmanager
    async def hold(self, phone: str, first: object = None) -> AsyncIterator[None]:
        # In one process the holder reads its line's state itself: nothing rides along.
        if self.busy:
            raise LineBusy(phone)
        lock = self._locks.setdefault(phone, asyncio.Lock())
        self.waiting[phone] = self.waiting.get(phone, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self.waiting[phone] -= 1


class FakeDevice:
    """A line's device whose answers a test sets; it records what it was asked.

    By default it cannot join the card's commit, as a real device behind a network: the
    use case calls `apply` after the store. With `joins` set it joins as the unscripted
    simulated device does (`joined_apply`), and `apply` is then asked only when the store
    did not show the card (`FakeStore.refuse_joined`)."""

    def __init__(self, journal: list[str] | None = None, *, joins: bool = False) -> None:
        self.joins = joins
        self.outcomes: deque[Outcome] = deque()  # answered in order; APPLIED once empty
        self.rcs_available = True
        self.applied: list[tuple[Card, str | None]] = []  # every apply asked: card, image URL
        self.rcs_checks: list[str] = []
        self.journal = journal if journal is not None else []
        self.observe: Callable[[Card], None] | None = None  # called at each apply, before it answers
        self.gate: asyncio.Event | None = None  # set: applies wait until it is set
        self.entered = asyncio.Event()  # set at the first apply

    def answer(self, *outcomes: Outcome) -> None:
        self.outcomes.extend(outcomes)

    async def apply(self, card: Card, image_url: str | None) -> Outcome:
        self.journal.append("apply")
        self.applied.append((card, image_url))
        self.entered.set()
        if self.observe is not None:
            self.observe(card)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)  # a real device answers later: let other tasks run meanwhile
        return self.outcomes.popleft() if self.outcomes else Outcome.APPLIED

    async def rcs_check_available(self, phone_number: str) -> bool:
        self.rcs_checks.append(phone_number)
        return self.rcs_available

    def joined_apply(self, state: LineState, values: CardValues, image_url: str | None) -> JoinedApply | None:
        if not self.joins:
            return None
        return JoinedApply(values.first_name, values.last_name, image_url)


class FakeBlobStore:
    """The CDN as a dict of blob name -> bytes."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.unavailable = False  # True: every call fails as an unreachable store would

    def put(self, name: str, data: bytes) -> None:
        if self.unavailable:
            raise BlobStoreUnavailable("store switched off by the test")
        if not BLOB_NAME.fullmatch(name):
            raise ValueError(f"not a content-addressed blob name: {name!r}")
        self.puts.append(name)
        self.blobs.setdefault(name, data)

    def get(self, name: str) -> Blob | None:
        if self.unavailable:
            raise BlobStoreUnavailable("store switched off by the test")
        data = self.blobs.get(name)
        if data is None:
            return None
        return Blob(data=data, content_type=CONTENT_TYPES[name.rsplit(".", 1)[1]], etag=f'"{name.split(".")[0]}"')

    def ping(self) -> None:
        if self.unavailable:
            raise BlobStoreUnavailable("store switched off by the test")


class FakeFetcher:
    """Answers every fetch with the bytes set for its URL (or `data`), and counts calls."""

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data if data is not None else png()
        self.by_url: dict[str, bytes] = {}
        self.error: images.FetchError | None = None
        self.calls: list[images.ImageUrl] = []

    async def fetch(self, url: images.ImageUrl) -> bytes:
        self.calls.append(url)
        if self.error is not None:
            raise self.error
        return self.by_url.get(url.raw, self.data)


@dataclass
class World:
    """The use cases over fakes, with the fakes at hand."""

    cards: ContactCards
    store: FakeStore
    locks: FakeLocks
    device: FakeDevice
    cdn: FakeBlobStore
    fetcher: FakeFetcher
    clock: FakeClock
    rules: ImageRules
    journal: list[str] = field(default_factory=list)


def make_world(
    *,
    profile: str = "seed",
    write_budget: int = 3,
    write_budget_window: int = 600,
    write_queue_limit: int = 10_000,
    allow_http: bool = False,
    device_joins: bool = False,
) -> World:
    """`device_joins`: the line's device joins the card's commit (as the unscripted
    simulated device does); by default it applies after it (as a real device)."""
    journal: list[str] = []
    store = FakeStore(CDN_PREFIX, journal)
    locks = FakeLocks()
    device = FakeDevice(journal, joins=device_joins)
    cdn = FakeBlobStore()
    fetcher = FakeFetcher()
    clock = FakeClock()
    rules = ImageRules(allow_http=allow_http, own_cdn_prefix=CDN_PREFIX)
    cards = ContactCards(
        reads=store,
        writes=store,
        locks=locks,
        device=device,
        cdn=cdn,
        fetcher=fetcher,
        rules=rules,
        policy=Policy(
            profile=profile,
            write_budget=write_budget,
            write_budget_window=write_budget_window,
            write_queue_limit=write_queue_limit,
        ),
        clock=clock,
    )
    return World(cards, store, locks, device, cdn, fetcher, clock, rules, journal)
