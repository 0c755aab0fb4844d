"""In-memory collaborators for the use cases (`contactcard.service.ContactCards`, and
`contactcard.admin.Admin`, `contactcard.kit.Kit` and the webhook subscriptions in the
sections at the end).

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
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from contactcard import images
from contactcard.admin import Admin, AdminRecords
from contactcard.card import Card, Outcome
from contactcard.cdn.base import BLOB_NAME, CONTENT_TYPES, Blob, BlobStoreUnavailable
from contactcard.contract import ImageRules
from contactcard.controls import Controls, LiveControls, Overrides
from contactcard.device import DeviceScript, DeviceView
from contactcard.domain import CardValues, JoinedApply, LineState, PendingWrite, RecordedEvent, Stored
from contactcard.journal_entry import Entry, Query
from contactcard.kit import Kit
from contactcard.service import ContactCards, Policy
from contactcard.store.api_keys import KeyInUse, KeyRow, NewKey
from contactcard.store.core import StoreUnavailable
from contactcard.store.core.locks import LineBusy
from contactcard.store.deliveries import EVERY_DELIVERY, AttemptRow, DeliveryFilter, DeliveryRow
from contactcard.store.lines import EVERY_LINE, DeletedEvent, LineCardRow, LineFilter, LineRow, LineTaken
from contactcard.store.overview import Counts
from contactcard.store.partners import Holdings, NoSuchPartner, PartnerRow
from contactcard.store.reads import LineAccess
from contactcard.store.subscriptions import SubscriptionRow
from contactcard.store.webhooks import Claimed, Subscription, TargetTaken
from contactcard.store.webhooks import Outcome as DeliveryOutcome

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


# --- the operator's use cases (`contactcard.admin.Admin`) ---------------------------------
#
# One in-memory book of partners, keys, lines, cards, subscriptions and deliveries, seen
# through one fake per protocol of `admin.py`, each with the rules of its store module
# (`store/partners.py`, `api_keys.py`, `lines.py`, `subscriptions.py`, `deliveries.py`).


@dataclass
class AccountBook:
    partners: dict[str, PartnerRow] = field(default_factory=dict)
    keys: dict[str, NewKey] = field(default_factory=dict)
    revoked: dict[str, datetime] = field(default_factory=dict)  # key id -> when
    lines: dict[str, str] = field(default_factory=dict)  # phone -> partner id
    cards: dict[str, Card] = field(default_factory=dict)  # phone -> its card
    subscriptions: dict[str, SubscriptionRow] = field(default_factory=dict)
    deliveries: list[DeliveryRow] = field(default_factory=list)  # oldest first
    bodies: dict[tuple[str, str], str] = field(default_factory=dict)  # (event, subscription) -> body
    events: list[RecordedEvent] = field(default_factory=list)  # recorded with a line's removal

    def require_partner(self, partner_id: str) -> None:
        if partner_id not in self.partners:
            raise NoSuchPartner()


class FakePartners:
    def __init__(self, book: AccountBook) -> None:
        self.book = book

    def add(self, partner: PartnerRow) -> None:
        self.book.partners[partner.id] = partner

    def all(self) -> list[PartnerRow]:
        return sorted(self.book.partners.values(), key=lambda p: (p.created_at, p.id))

    def count(self) -> int:
        return len(self.book.partners)

    def rename(self, partner_id: str, name: str) -> bool:
        found = self.book.partners.get(partner_id)
        if found is None:
            return False
        self.book.partners[partner_id] = replace(found, name=name)
        return True

    def holdings(self, partner_id: str) -> Holdings:
        b = self.book
        return Holdings(
            sum(k.partner_id == partner_id for k in b.keys.values()),
            sum(owner == partner_id for owner in b.lines.values()),
            sum(s.partner_id == partner_id for s in b.subscriptions.values()),
        )

    def delete(self, partner_id: str) -> bool:
        b = self.book
        if b.partners.pop(partner_id, None) is None:
            return False
        for phone in [p for p, owner in b.lines.items() if owner == partner_id]:
            del b.lines[phone]
            b.cards.pop(phone, None)
        gone = {s for s, row in b.subscriptions.items() if row.partner_id == partner_id}
        b.subscriptions = {s: row for s, row in b.subscriptions.items() if s not in gone}
        b.deliveries = [d for d in b.deliveries if d.subscription_id not in gone]
        b.keys = {k: row for k, row in b.keys.items() if row.partner_id != partner_id}
        return True


class FakeKeys:
    def __init__(self, book: AccountBook) -> None:
        self.book = book

    def add(self, key: NewKey) -> None:
        self.book.require_partner(key.partner_id)
        if any(k.key_hash == key.key_hash for k in self.book.keys.values()):
            raise KeyInUse()  # the column is unique
        self.book.keys[key.id] = key

    def owner(self, key_hash: str) -> str | None:
        return next((k.partner_id for k in self.book.keys.values() if k.key_hash == key_hash), None)

    def all(self, partner_id: str | None = None) -> list[KeyRow]:
        return [
            KeyRow(k.id, k.partner_id, k.prefix, k.created_at, self.book.revoked.get(k.id), k.label)
            for k in sorted(self.book.keys.values(), key=lambda k: (k.created_at, k.id))
            if not partner_id or k.partner_id == partner_id
        ]

    def revoke(self, key_id: str, at: datetime) -> bool:
        if key_id not in self.book.keys:
            return False
        self.book.revoked.setdefault(key_id, at)  # the first revocation's time stays
        return True


class FakeLines:
    def __init__(self, book: AccountBook) -> None:
        self.book = book

    def _row(self, phone: str) -> LineRow:
        card = self.book.cards.get(phone)
        return LineRow(phone, self.book.lines[phone], card is not None, bool(card and card.is_active))

    def add(self, partner_id: str, phone_number: str, created_at: datetime) -> LineRow:
        self.book.require_partner(partner_id)
        owner = self.book.lines.setdefault(phone_number, partner_id)
        if owner != partner_id:
            raise LineTaken()
        return self._row(phone_number)

    def remove(self, phone_number: str, deleted: DeletedEvent | None = None) -> bool:
        owner = self.book.lines.pop(phone_number, None)
        card = self.book.cards.pop(phone_number, None)
        if owner is not None and card is not None and deleted is not None:
            self.book.events.append(deleted(owner, card))  # recorded with the removal
        return owner is not None

    def all(self, partner_id: str | None = None) -> list[LineRow]:
        return [self._row(p) for p in sorted(self.book.lines) if not partner_id or self.book.lines[p] == partner_id]

    def has(self, phone_number: str) -> bool:
        return phone_number in self.book.lines

    def _matching(self, where: LineFilter) -> list[str]:
        found = []
        for phone in sorted(self.book.lines):
            card = self.book.cards.get(phone)
            state = "none" if card is None else "active" if card.is_active else "inactive"
            names = "" if card is None else f"{card.first_name}\n{card.last_name or ''}".lower()
            if (
                phone.startswith(where.number_prefix)
                and (not where.partner_id or self.book.lines[phone] == where.partner_id)
                and (where.state is None or where.state == state)
                and (not where.name or (card is not None and where.name.lower() in names))
            ):
                found.append(phone)
        return found

    def page(
        self, where: LineFilter = EVERY_LINE, *, after: str = "", before: str | None = None, limit: int = 50
    ) -> list[LineCardRow]:
        numbers = self._matching(where)
        if before is not None:
            numbers = [p for p in reversed(numbers) if p < before]
        else:
            numbers = [p for p in numbers if p > after]
        rows = []
        for phone in numbers[:limit]:
            card = self.book.cards.get(phone)
            partner = self.book.partners[self.book.lines[phone]]
            rows.append(
                LineCardRow(
                    phone,
                    partner.id,
                    partner.name,
                    card.first_name if card else None,
                    card.last_name if card else None,
                    card.image_blob if card else None,
                    bool(card and card.is_active),
                    None,
                    None,
                    None,
                    None,
                    None,
                )
            )
        return rows

    def count(self, where: LineFilter = EVERY_LINE, *, at_most: int | None = None) -> int:
        found = len(self._matching(where))
        return found if at_most is None else min(found, at_most + 1)


class FakeSubscriptions:
    def __init__(self, book: AccountBook) -> None:
        self.book = book

    def all(self, partner_id: str | None = None) -> list[SubscriptionRow]:
        return [s for s in self.book.subscriptions.values() if not partner_id or s.partner_id == partner_id]

    def set_active(self, subscription_id: str, active: bool, at: datetime) -> bool:
        found = self.book.subscriptions.get(subscription_id)
        if found is None:
            return False
        self.book.subscriptions[subscription_id] = replace(found, is_active=active)
        return True


class FakeDeliveries:
    def __init__(self, book: AccountBook) -> None:
        self.book = book

    def body(self, event_id: str, subscription_id: str) -> str | None:
        return self.book.bodies.get((event_id, subscription_id))

    def newest(self, where: DeliveryFilter = EVERY_DELIVERY, *, limit: int = 200, offset: int = 0) -> list[DeliveryRow]:
        w = where
        found = [
            d
            for d in reversed(self.book.deliveries)
            if (not w.subscription_id or d.subscription_id == w.subscription_id)
            and (not w.event_id or d.event_id == w.event_id)
            and (not w.phone_number or d.phone_number == w.phone_number)
            and (
                not w.state
                or (w.state == "retrying" and d.status == "pending" and d.attempts > 0)
                or d.status == w.state
            )
        ]
        return found[offset : offset + limit]

    def attempts(self, event_id: str, subscription_id: str) -> list[AttemptRow]:
        return []  # no attempt is made in memory

    def redeliver(self, event_id: str, subscription_id: str, due: float) -> bool:
        for i, d in enumerate(self.book.deliveries):
            if (d.event_id, d.subscription_id) == (event_id, subscription_id):
                self.book.deliveries[i] = replace(
                    d, status="pending", attempts=0, next_attempt_at=due, finished_at=None
                )
                return True
        return False


class FakeOverview:
    def __init__(self, book: AccountBook) -> None:
        self.book = book

    def counts(self) -> Counts:
        b = self.book
        active = sum(c.is_active for c in b.cards.values())
        return Counts(
            len(b.partners),
            sum(k not in b.revoked for k in b.keys),
            len(b.lines),
            active,
            len(b.cards) - active,
            len(b.subscriptions),
            sum(not s.is_active for s in b.subscriptions.values()),
            sum(d.status == "pending" and d.attempts > 0 for d in b.deliveries),
            sum(d.status == "failed" for d in b.deliveries),
        )


class FakeLineDevices:
    """The simulated devices' scripts and what each line's device shows."""

    def __init__(self) -> None:
        self.scripts: dict[str, DeviceScript] = {}

    def set_script(self, phone_number: str, script: DeviceScript) -> None:
        self.scripts[phone_number] = script

    def view(self, phone_number: str) -> DeviceView:
        script = self.scripts.get(phone_number, DeviceScript())
        return DeviceView(phone_number, None, None, None, 0, None, script)


@dataclass
class AdminWorld:
    """The operator's use cases over the fakes, with the book and the devices at hand."""

    admin: Admin
    book: AccountBook
    devices: FakeLineDevices
    clock: FakeClock


def make_admin_world() -> AdminWorld:

    book = AccountBook()
    devices = FakeLineDevices()
    clock = FakeClock()
    records = AdminRecords(
        partners=FakePartners(book),
        keys=FakeKeys(book),
        lines=FakeLines(book),
        subscriptions=FakeSubscriptions(book),
        deliveries=FakeDeliveries(book),
        overview=FakeOverview(book),
    )
    admin = Admin(records, devices, card_url_prefix=CDN_PREFIX, now=lambda: datetime.fromtimestamp(clock(), UTC))
    return AdminWorld(admin, book, devices, clock)


# --- the test kit's use cases (`contactcard.kit.Kit`) -------------------------------------

KIT_DEFAULTS = Controls(version=0, profile="seed", write_budget=10, write_budget_window=600, journal_size=100)


class FakeControlRow:
    """The one row of runtime controls (`store/controls.py` `ControlRecords`): a value that
    grows a version with every change, as the row's `_bump` does. `log` is shared with the
    journal's fake, so a test can see what happened in which order."""

    def __init__(self, log: list[str]) -> None:
        self.row = Overrides()
        self.log = log
        self.budgets_forgotten: list[str] = []
        self.resets: list[bool] = []  # `everything` of each reset

    def load(self) -> Overrides:
        return self.row

    def change(self, values: dict[str, Any]) -> Overrides:
        return self._bump(**values)

    def forget_settings(self) -> Overrides:
        return self._bump(profile=None, write_budget=None, write_budget_window=None, journal_size=None)

    def set_clock_offset(self, offset: float) -> Overrides:
        return self._bump(clock_offset=offset)

    def advance_clock(self, seconds: float) -> Overrides:
        return self._bump(clock_offset=self.row.clock_offset + seconds)

    def forget_write_attempts(self, phone_numbers: list[str]) -> None:
        self.budgets_forgotten += phone_numbers

    def reset(self, *, everything: bool) -> None:
        self.resets.append(everything)
        self.log.append("reset everything" if everything else "reset")
        if everything:
            self.forget_settings()
            self.set_clock_offset(0.0)

    def _bump(self, **values: Any) -> Overrides:
        if "clock_offset" in values:
            self.log.append("clock")
        self.row = replace(self.row, version=self.row.version + 1, **values)
        return self.row


class FakeJournal:
    """The request journal (`journal.Journal`): entries in a list, newest last; `flush`
    only notes that the buffer was stored."""

    def __init__(self, log: list[str]) -> None:
        self.entries: list[Entry] = []
        self.log = log

    def flush(self) -> None:
        self.log.append("flush")

    def forget(self) -> None:
        self.log.append("forget")
        self.entries.clear()

    def find(self, query: Query) -> list[Entry]:
        found = [
            entry
            for entry in reversed(self.entries)
            if query.trace_id in (None, entry.trace_id)
            and query.phone_number in (None, entry.phone_number)
            and query.status in (None, entry.status)
        ]
        return found[: query.limit]


@dataclass
class KitWorld:
    kit: Kit
    row: FakeControlRow
    journal: FakeJournal
    controls: LiveControls
    log: list[str]


def make_kit_world(*, journal: bool = True) -> KitWorld:
    """`Kit` on the fakes above and a real `LiveControls` (plain code over the row)."""
    log: list[str] = []
    row = FakeControlRow(log)
    found = FakeJournal(log)
    controls = LiveControls(KIT_DEFAULTS, row.load)
    return KitWorld(Kit(row, controls, found if journal else None), row, found, controls, log)


# --- webhook subscriptions (`contactcard.webhooks.subscriptions.Subscriptions`) ---------------


class FakeSubscriptionRecords:
    """A partner's subscriptions (`store/webhooks.py` `WebhookStore`): keys and lines by
    partner, subscriptions by id, and the events each change announced. One target URL per
    partner, as the table's unique constraint says (`TargetTaken`); `down` makes every call
    fail as a database that did not answer in time."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}  # key hash -> partner
        self.lines: dict[str, str] = {}  # number -> partner
        self.subs: dict[str, Subscription] = {}
        self.announced: list[str] = []  # event types, in order
        self.down = False

    def _up(self) -> None:
        if self.down:
            raise StoreUnavailable("the fake database is down")

    async def partner_of(self, key_hash: str) -> str | None:
        self._up()
        return self.keys.get(key_hash)

    async def owned_lines(self, partner_id: str, phones: list[str]) -> set[str]:
        self._up()
        return {phone for phone in phones if self.lines.get(phone) == partner_id}

    async def subscriptions(self, partner_id: str) -> list[Subscription]:
        self._up()
        return sorted((s for s in self.subs.values() if s.partner_id == partner_id), key=lambda s: s.created_at)

    async def subscription(self, partner_id: str, subscription_id: str) -> Subscription | None:
        self._up()
        found = self.subs.get(subscription_id)
        return found if found is not None and found.partner_id == partner_id else None

    async def add(self, sub: Subscription, announce: Any = None) -> None:
        self._store(sub, announce)

    async def replace(self, sub: Subscription, announce: Any = None) -> bool:
        if await self.subscription(sub.partner_id, sub.id) is None:
            return False
        self._store(sub, announce)
        return True

    async def remove(self, partner_id: str, subscription_id: str, announce: Any = None) -> bool:
        if await self.subscription(partner_id, subscription_id) is None:
            return False
        del self.subs[subscription_id]
        self.announced += [event.event_type for event in announce or ()]
        return True

    def _store(self, sub: Subscription, announce: Any) -> None:
        self._up()
        for other in self.subs.values():
            if other.id != sub.id and other.partner_id == sub.partner_id and other.target_url == sub.target_url:
                raise TargetTaken()
        self.subs[sub.id] = sub
        self.announced += [event.event_type for event in announce or ()]


@dataclass
class QueuedDelivery:
    """One outbox row of `FakeDeliveryQueue`."""

    claimed: Claimed
    phone_number: str | None
    order: int  # when it was recorded: a line's events go in this order
    status: str = "pending"
    next_at: float = 0.0
    lease_until: float | None = None
    outcomes: list[DeliveryOutcome] = field(default_factory=list)


class FakeDeliveryQueue:
    """The outbox in memory, as `webhooks.delivery.DeliveryQueue` describes it: the claim's
    rules (due, leased, a line in order, a share per subscription) over a list of rows."""

    def __init__(self) -> None:
        self.rows: list[QueuedDelivery] = []
        self.subscriptions: dict[str, Subscription] = {}
        self.claims = 0  # claims made (a commit each in a server)
        self.fail_next = 0  # the next N calls raise StoreUnavailable
        self._order = itertools.count()

    def add(self, subscription_id: str, event_id: str, *, phone: str | None, at: float = 0.0) -> QueuedDelivery:
        row = QueuedDelivery(
            Claimed(event_id, subscription_id, "contact_card.updated", f'{{"event_id": "{event_id}"}}', 0),
            phone,
            next(self._order),
            next_at=at,
        )
        self.rows.append(row)
        return row

    def status(self, event_id: str, subscription_id: str) -> str:
        (row,) = [
            r for r in self.rows if r.claimed.event_id == event_id and r.claimed.subscription_id == subscription_id
        ]
        return row.status

    def _maybe_fail(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise StoreUnavailable("the database is away")

    def _due(self, now: float, real_now: float, skip: list[str]) -> list[QueuedDelivery]:
        pending = [r for r in self.rows if r.status == "pending"]
        found = []
        for row in pending:
            sid = row.claimed.subscription_id
            if row.next_at > now or sid in skip or (row.lease_until is not None and row.lease_until >= real_now):
                continue
            earlier = row.phone_number is not None and any(
                other.claimed.subscription_id == sid
                and other.phone_number == row.phone_number
                and other.order < row.order
                for other in pending
            )
            if not earlier:
                found.append(row)
        return sorted(found, key=lambda r: (r.next_at, r.order))

    async def has_due(self, now: float, real_now: float) -> bool:
        self._maybe_fail()
        return bool(self._due(now, real_now, []))

    async def claim(
        self,
        now: float,
        real_now: float,
        lease_until: float,
        limit: int,
        *,
        skip: list[str] | None = None,
        per_subscription: int | None = None,
    ) -> list[Claimed]:
        self._maybe_fail()
        self.claims += 1
        taken: list[Claimed] = []
        per: dict[str, int] = {}
        for row in self._due(now, real_now, skip or []):
            sid = row.claimed.subscription_id
            if len(taken) == limit:
                break
            if per.get(sid, 0) >= (per_subscription or limit):
                continue
            per[sid] = per.get(sid, 0) + 1
            row.lease_until = lease_until
            row.claimed = replace(row.claimed, attempts=row.claimed.attempts + 1)
            taken.append(row.claimed)
        return taken

    async def finish_and_claim(
        self,
        outcomes: list[DeliveryOutcome],
        now: float,
        real_now: float,
        lease_until: float,
        limit: int,
        *,
        skip: list[str] | None = None,
        per_subscription: int | None = None,
    ) -> list[Claimed]:
        await self.finish_many(outcomes)
        return await self.claim(now, real_now, lease_until, limit, skip=skip, per_subscription=per_subscription)

    async def finish_many(self, outcomes: list[DeliveryOutcome]) -> None:
        self._maybe_fail()
        for outcome in outcomes:
            for row in self.rows:
                if (row.claimed.event_id, row.claimed.subscription_id) == (
                    outcome.claimed.event_id,
                    outcome.claimed.subscription_id,
                ):
                    row.status, row.lease_until = outcome.status, None
                    row.next_at = outcome.next_at if outcome.next_at is not None else row.next_at
                    row.outcomes.append(outcome)

    async def release(self, claimed: list[Claimed]) -> None:
        for given in claimed:
            for row in self.rows:
                if row.claimed.event_id == given.event_id and row.claimed.subscription_id == given.subscription_id:
                    row.lease_until = None
                    row.claimed = replace(row.claimed, attempts=row.claimed.attempts - 1)

    async def targets(self, ids: list[str]) -> dict[str, Subscription]:
        self._maybe_fail()
        return {sid: self.subscriptions[sid] for sid in ids if sid in self.subscriptions}
