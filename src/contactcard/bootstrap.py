"""Build the real collaborators from the settings and hand them to the use cases:
database, writer, line locks, reads, device, CDN, image fetcher, readiness."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import make_url

from contactcard import images
from contactcard.admin import Admin, AdminRecords
from contactcard.cdn import BlobStore, LocalFolderCdn
from contactcard.contract import ImageRules
from contactcard.controls import Controls, LiveControls
from contactcard.device import SimulatedDevice
from contactcard.images import HostPolicy, ImageUrl
from contactcard.journal import Journal
from contactcard.kit import Kit
from contactcard.metrics import Metrics
from contactcard.readiness import Readiness
from contactcard.service import ContactCards, Policy
from contactcard.settings import Settings
from contactcard.store.api_keys import ApiKeys
from contactcard.store.cards import CardWrites
from contactcard.store.controls import ControlRecords
from contactcard.store.core import Transactions, Writer
from contactcard.store.core.commits import CommitLog, CountLog
from contactcard.store.core.locks import AdvisoryLocks, LineLocks
from contactcard.store.core.postgres import postgres_writer
from contactcard.store.core.relay import RelayedWriter
from contactcard.store.core.sqlite import LoopReads, sqlite_writer
from contactcard.store.db import Database, connect, migrate
from contactcard.store.deliveries import DeliveryRecords
from contactcard.store.devices import DeviceRecords
from contactcard.store.journal import JournalRecords
from contactcard.store.lines import Lines
from contactcard.store.overview import Overview
from contactcard.store.partners import Partners
from contactcard.store.reads import CardReads
from contactcard.store.subscriptions import SubscriptionRecords
from contactcard.store.webhooks import WebhookStore
from contactcard.webhooks.delivery import AttemptTally, Clock, DeliveryWorker, Resolver, RetryPolicy, WebhookSender
from contactcard.webhooks.subscriptions import Subscriptions


class FetcherOnFirstUse:
    """Builds the image fetcher at the first image: its HTTP and TLS stack would cost start-up
    time and memory in a server that only answers GETs."""

    def __init__(self, build: Callable[[], images.ImageFetcher]) -> None:
        self._build = build
        self._fetcher: images.ImageFetcher | None = None

    async def fetch(self, url: ImageUrl) -> bytes:
        if self._fetcher is None:
            self._fetcher = self._build()
        data: bytes = await self._fetcher.fetch(url)
        return data


class Deliveries(Protocol):
    """Who makes a server's webhook attempts (`CONTACTCARD_WEBHOOK_DELIVERY`): told of each
    recorded event by `wake`, started and stopped with the server."""

    def start(self) -> None: ...

    def wake(self) -> None: ...

    async def aclose(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class InlineDeliveries:
    """The delivery worker on this process's event loop, with its sender and, on
    PostgreSQL, the writer its claims and outcomes go through."""

    worker: DeliveryWorker
    sender: WebhookSender
    lane: Writer | None = None

    def start(self) -> None:
        self.worker.start()

    def wake(self) -> None:
        self.worker.wake()

    async def aclose(self) -> None:
        await self.worker.aclose()
        await self.sender.aclose()

    def close(self) -> None:
        if self.lane is not None:
            self.lane.close()


class NoDeliveries:
    """`off`: this server makes no attempts (a `contactcard deliver` elsewhere does)."""

    def start(self) -> None:
        pass

    def wake(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProcessDeliveries:
    """`process`: a `contactcard deliver` child makes the attempts (webhooks/process.py)."""

    def __init__(self, settings: Settings, tally: AttemptTally | None, relay_to: Writer | None = None) -> None:
        from contactcard.webhooks.process import DeliveryProcess

        self.process = DeliveryProcess(settings, tally, relay_to=relay_to)

    def start(self) -> None:
        self.process.start()

    def wake(self) -> None:
        self.process.wake()

    async def aclose(self) -> None:
        await self.process.aclose()

    def close(self) -> None:
        pass


@dataclass
class Services:
    database: Database
    cards: ContactCards
    admin: Admin
    cdn: BlobStore
    writer: Writer
    reads: CardReads
    locks: LineLocks
    readiness: Readiness
    metrics: Metrics | None  # None: switched off
    controls: LiveControls
    journal: Journal
    kit: Kit
    subscriptions: Subscriptions
    deliveries: Deliveries

    async def aclose(self) -> None:
        """Let queued writes finish and close what is bound to the event loop."""
        await self.deliveries.aclose()
        await self.locks.aclose()
        await self.reads.aclose()

    def close(self) -> None:
        self.journal.close()
        self.writer.close()
        self.deliveries.close()
        self.database.dispose()


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def writer_for(
    database: Database,
    timeout: float,
    commits: CommitLog | CountLog | None = None,
    *,
    reads: bool = True,
    durable: bool = True,
) -> Writer:
    """`reads`: on PostgreSQL, the writer's reads go through a connection of their own (a
    server's write path); without, through the writer's one connection. `durable`: on
    SQLite and PostgreSQL alike, whether each commit waits for the disk (see `store/core/sqlite.py`)."""
    url = make_url(database.url)
    if database.dialect == "sqlite":
        counts = commits if isinstance(commits, CountLog) else None
        return sqlite_writer(url.database or ":memory:", timeout=timeout, counts=counts, durable=durable)
    return postgres_writer(
        _conninfo(database.url),
        timeout=timeout,
        reads=reads,
        commits=commits if isinstance(commits, CommitLog) else None,
        durable=durable,
    )


def admin_records(database: Database) -> AdminRecords:
    """The operator's records, one per aggregate, each a transaction on the database's engines."""
    return AdminRecords(
        partners=Partners(database),
        keys=ApiKeys(database),
        lines=Lines(database),
        subscriptions=SubscriptionRecords(database),
        deliveries=DeliveryRecords(database),
        overview=Overview(database),
    )


def admin_for(database: Database, *, timeout: float = 2.0, card_url_prefix: str = "") -> Admin:
    """The operator use cases on a database, and nothing else: no line locks, no reads, no
    webhook worker. Scripts and views of the simulated device go through the database's
    engines; the writer the device's records hold starts its thread only at an apply, which
    no operator use case makes."""
    devices = DeviceRecords(writer_for(database, timeout), database.writer)
    return Admin(admin_records(database), devices, card_url_prefix=card_url_prefix)


@dataclass
class AdminSession:
    """What one admin command runs on: the database (migrated) and the operator use cases."""

    database: Database
    admin: Admin

    def close(self) -> None:
        self.database.dispose()


def admin_session(settings: Settings) -> AdminSession:
    """For the CLI's admin commands: the database and `Admin` only (`build` would make the
    whole server: writer, line locks, GET pool, webhook worker)."""
    database = connect(settings.resolved_database_url, timeout=settings.database_timeout)
    migrate(database)
    prefix = f"{settings.resolved_cdn_base_url}/contact-card/"
    return AdminSession(database, admin_for(database, timeout=settings.database_timeout, card_url_prefix=prefix))


def cdn_for(settings: Settings) -> BlobStore:
    if not settings.s3_bucket:
        return LocalFolderCdn(settings.media_dir)
    from contactcard.cdn.s3 import S3Cdn

    return S3Cdn(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        addressing_style=settings.s3_addressing_style,
        timeout=settings.s3_timeout,
    )


def controls_for(settings: Settings, database: Database) -> LiveControls:
    """The runtime controls: this process's settings, as the database's row overrides them."""
    defaults = Controls(
        version=0,
        profile=settings.profile,
        write_budget=settings.write_budget,
        write_budget_window=settings.write_budget_window,
        journal_size=settings.journal_size,
    )
    controls = LiveControls(defaults, ControlRecords(database).load)
    controls.reload()
    return controls


def kit_for(settings: Settings, database: Database) -> Kit:
    """The test kit's use cases on a database (the CLI needs nothing else)."""
    controls = controls_for(settings, database)
    return Kit(ControlRecords(database), controls, Journal(JournalRecords(database), controls))


def webhook_policy(settings: Settings, images_policy: HostPolicy) -> HostPolicy:
    """The image rules, plus, in the open sandbox, `http` to the developer's receivers on
    loopback (the sandbox listens on loopback only)."""
    if not (settings.open_sandbox and settings.open_sandbox_loopback_receivers):
        return images_policy
    from contactcard.sandbox import LOOPBACK_RECEIVERS

    return HostPolicy(
        allow_private=images_policy.allow_private,
        allowed_hosts=images_policy.allowed_hosts | LOOPBACK_RECEIVERS,
    )


def inline_deliveries(
    settings: Settings,
    database: Database,
    writer: Transactions,
    controls: LiveControls,
    hooks_policy: HostPolicy,
    *,
    tally: AttemptTally | None,
    clock: Clock | None = None,
    resolver: Resolver | None = None,
    own_lane: bool,
) -> InlineDeliveries:
    """The delivery worker on `writer`'s database. `own_lane`: on PostgreSQL, the worker's
    claims and outcomes go through a writer of their own, so that they never queue behind
    a batch of card writes, nor card writes behind them (a server's; a delivery process has
    no card writes to share with). SQLite has one writer at a time: they share the card
    writer's commits, two statements for a whole batch of outcomes (store/webhooks.py)."""
    lane = None
    if own_lane and database.dialect == "postgresql":
        lane = postgres_writer(_conninfo(database.url), timeout=settings.database_timeout, reads=False)
    store = WebhookStore(writer, dialect=database.dialect, lane=lane)
    sender = WebhookSender(
        hooks_policy,
        timeout=settings.webhook_attempt_timeout,
        max_answer_bytes=settings.webhook_max_answer_bytes,
        resolver=resolver,
    )
    worker = DeliveryWorker(
        store,
        sender,
        clock=clock or controls,  # a moved test clock makes due retries run
        retry=RetryPolicy(settings.retry_delays),
        concurrency=settings.webhook_concurrency,
        per_target=settings.webhook_concurrency_per_target,
        poll_interval=settings.webhook_poll_interval,
        # A process that died mid-attempt holds it no longer than this.
        lease=settings.webhook_attempt_timeout + 5,
        tally=tally,
        database_timeout=settings.database_timeout,
    )
    return InlineDeliveries(worker, sender, lane)


@dataclass
class DeliveryServices:
    """What a delivery process (`contactcard deliver`) runs on: the database, one writer,
    the runtime controls and the worker; no card path, no HTTP."""

    database: Database
    writer: Transactions
    controls: LiveControls
    deliveries: InlineDeliveries

    def start(self) -> None:
        self.deliveries.start()

    def wake(self) -> None:
        self.deliveries.wake()

    def reload_controls(self) -> None:
        self.controls.reload()

    async def aclose(self) -> None:
        await self.deliveries.aclose()

    def close(self) -> None:
        self.deliveries.close()
        self.writer.close()
        self.database.dispose()


def delivery_services(
    settings: Settings, tally: AttemptTally | None, *, run_migrations: bool = False, relay_fd: int | None = None
) -> DeliveryServices:
    """A delivery process's services. One writer for everything (on PostgreSQL one connection,
    used at every poll, so a restarted database is noticed at once rather than left
    half-closed). `run_migrations`: for a `deliver` run on its own; a server's child finds the
    database migrated by its server. `relay_fd`: a SQLite server's child, whose transactions
    its server's writer runs (store/core/relay.py)."""
    database = connect(settings.resolved_database_url, timeout=settings.database_timeout)
    try:
        if run_migrations:
            migrate(database)
        controls = controls_for(settings, database)
        # Claims and outcomes only: one lost to a power cut is an attempt made again.
        writer: Transactions
        if relay_fd is not None and database.dialect == "sqlite":
            path = make_url(database.url).database or ":memory:"
            writer = RelayedWriter(
                socket.socket(fileno=relay_fd),
                timeout=settings.database_timeout,
                reads=LoopReads(path, timeout=settings.database_timeout),
            )
        else:
            writer = writer_for(database, settings.database_timeout, reads=False, durable=False)
    except BaseException:
        database.dispose()
        raise
    policy = HostPolicy(allow_private=settings.image_allow_private, allowed_hosts=settings.allowed_image_hosts)
    deliveries = inline_deliveries(
        settings, database, writer, controls, webhook_policy(settings, policy), tally=tally, own_lane=False
    )
    return DeliveryServices(database, writer, controls, deliveries)


def build(
    settings: Settings,
    *,
    run_migrations: bool = True,
    clock: Clock | None = None,
    resolver: Resolver | None = None,
) -> Services:
    """`clock`: the time webhook retries are due by (the runtime controls' clock when None).
    `resolver`: host name to addresses for image fetches and webhook targets (the system's
    when None; tests stand in their own DNS)."""
    database = connect(settings.resolved_database_url, timeout=settings.database_timeout)
    if run_migrations:
        migrate(database)
    # This process's commits and the lines each changed: the GET memo keeps the rest.
    commits = CommitLog() if database.dialect == "postgresql" else CountLog()
    writer = writer_for(database, settings.database_timeout, commits)
    shared = None
    if database.dialect == "postgresql":
        shared = AdvisoryLocks(_conninfo(database.url), connect_timeout=settings.database_timeout)
    locks = LineLocks(timeout=settings.write_wait_timeout, shared=shared)
    device = SimulatedDevice(DeviceRecords(writer, database.writer))
    cdn = cdn_for(settings)
    policy = HostPolicy(allow_private=settings.image_allow_private, allowed_hosts=settings.allowed_image_hosts)

    def fetcher_for(settings: Settings = settings) -> images.ImageFetcher:
        network = images.NetworkFetcher(
            policy, max_bytes=settings.image_max_bytes, deadline=settings.image_fetch_timeout, resolver=resolver
        )
        return images.SimulatedFetcher(policy, network) if settings.image_fetch == "simulated" else network

    rules = ImageRules(
        allow_http=policy.allow_http,
        own_cdn_prefix=f"{settings.resolved_cdn_base_url}/contact-card/",
    )
    reads = CardReads(
        database.url,
        rules.own_cdn_prefix,
        memo=settings.read_cache_size > 0,
        timeout=settings.database_timeout,
        commits=commits,
    )
    metrics = Metrics() if settings.metrics != "off" else None
    controls = controls_for(settings, database)
    webhook_store = WebhookStore(writer, dialect=database.dialect)
    hooks_policy = webhook_policy(settings, policy)
    deliveries: Deliveries
    if settings.webhook_delivery == "process":
        # On SQLite the child's claims and outcomes join this writer's batches (store/core/relay.py).
        deliveries = ProcessDeliveries(settings, metrics, writer if database.dialect == "sqlite" else None)
    elif settings.webhook_delivery == "inline":
        deliveries = inline_deliveries(
            settings, database, writer, controls, hooks_policy, tally=metrics, clock=clock, resolver=resolver,
            own_lane=True,
        )  # fmt: skip
    else:
        deliveries = NoDeliveries()
    cards = ContactCards(
        reads=reads,
        # The device is the simulated one: its steps join the card's statements.
        writes=CardWrites(writer, simulated_device=True),
        locks=locks,
        device=device,
        cdn=cdn,
        fetcher=FetcherOnFirstUse(fetcher_for),
        rules=rules,
        policy=Policy(
            profile=settings.profile,
            write_budget=settings.write_budget,
            write_budget_window=settings.write_budget_window,
            write_queue_limit=settings.write_queue_limit,
        ),
        read_cache_size=settings.read_cache_size,
        tally=metrics,
        controls=controls,
        on_event=deliveries.wake,  # the write's event is due now: look at once
    )
    admin = Admin(admin_records(database), device, card_url_prefix=rules.own_cdn_prefix)
    readiness = Readiness(database, cdn, timeout=settings.database_timeout)
    journal = Journal(JournalRecords(database), controls, unread=settings.journal_unread)
    kit = Kit(ControlRecords(database), controls, journal)
    return Services(
        database,
        cards,
        admin,
        cdn,
        writer,
        reads,
        locks,
        readiness,
        metrics,
        controls,
        journal,
        kit,
        Subscriptions(
            webhook_store,
            hooks_policy,
            resolver=resolver,
            on_event=deliveries.wake,
            replace_same_target=settings.open_sandbox,
        ),
        deliveries,
    )
