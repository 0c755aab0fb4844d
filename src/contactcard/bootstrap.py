"""Build the real dependencies from the settings: database, device, CDN, image fetcher."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contactcard import images
from contactcard.admin import Admin
from contactcard.cdn import BlobStore, LocalFolderCdn
from contactcard.contract import ImageRules
from contactcard.device import SimulatedDevice
from contactcard.images import HostPolicy, ImageUrl
from contactcard.service import ContactCards, Policy
from contactcard.settings import Settings
from contactcard.store.db import Database, connect, migrate


class FetcherOnFirstUse:
    """Builds the image fetcher at the first image: its HTTP and TLS stack would cost start-up
    time and memory in a server that only answers GETs."""

    def __init__(self, build: Callable[[], images.ImageFetcher]) -> None:
        self._build = build
        self._fetcher: images.ImageFetcher | None = None

    async def fetch(self, url: ImageUrl) -> bytes:
        if self._fetcher is None:
            self._fetcher = self._build()
        return await self._fetcher.fetch(url)


@dataclass
class Services:
    database: Database
    cards: ContactCards
    admin: Admin
    cdn: BlobStore


def build(settings: Settings, *, run_migrations: bool = True) -> Services:
    database = connect(settings.resolved_database_url)
    if run_migrations:
        migrate(database)
    device = SimulatedDevice(database.writer)
    cdn = LocalFolderCdn(settings.media_dir)
    policy = HostPolicy(allow_private=settings.image_allow_private, allowed_hosts=settings.allowed_image_hosts)

    def fetcher_for(settings: Settings = settings) -> images.ImageFetcher:
        network = images.NetworkFetcher(
            policy, max_bytes=settings.image_max_bytes, deadline=settings.image_fetch_timeout
        )
        return images.SimulatedFetcher(policy, network) if settings.image_fetch == "simulated" else network

    fetcher = FetcherOnFirstUse(fetcher_for)
    rules = ImageRules(
        allow_http=policy.allow_http,
        own_cdn_prefix=f"{settings.resolved_cdn_base_url}/contact-card/",
    )
    cards = ContactCards(
        database,
        device,
        cdn,
        fetcher,
        rules,
        Policy(
            profile=settings.profile,
            write_budget=settings.write_budget,
            write_budget_window=settings.write_budget_window,
            read_cache_size=settings.read_cache_size,
        ),
    )
    return Services(database, cards, Admin(database, device), cdn)
