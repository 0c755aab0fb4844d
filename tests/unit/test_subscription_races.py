"""A subscription changed and deleted at once, on the real store (SQLite and PostgreSQL): an
update that lost the race answers 404 and announces nothing, and of two deletes only one
announces the deletion (store/webhooks.py `replace`, `remove`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from contactcard import errors
from contactcard.bootstrap import admin_for, writer_for
from contactcard.errors import ApiError
from contactcard.images.addresses import HostPolicy
from contactcard.store.db import connect, migrate
from contactcard.store.schema import webhook_deliveries
from contactcard.store.webhooks import WebhookStore
from contactcard.webhooks.subscriptions import Subscriptions
from tests.support.databases import own_database

WATCHED = ["webhook_subscription.events.updated", "webhook_subscription.deleted"]


def resolve(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]  # every target a public address


class GoneAfterRead:
    """The real store, but the subscription is deleted (by "another request", announcing its
    deletion) right after the use case has read it: the race, made certain."""

    def __init__(self, store: WebhookStore, subs: Subscriptions) -> None:
        self._store, self._subs = store, subs

    async def subscription(self, partner_id: str, subscription_id: str) -> Any:
        found = await self._store.subscription(partner_id, subscription_id)
        await self._subs.delete(partner_id, subscription_id)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, postgres_url, tmp_path: Path) -> Iterator[tuple[Any, Subscriptions, WebhookStore, str]]:
    with own_database(request.param, postgres_url) as url:
        database = connect(url or f"sqlite:///{tmp_path / 'races.db'}")
        migrate(database)
        partner = admin_for(database).create_partner("Acme").id
        writer = writer_for(database, 5.0)
        store = WebhookStore(writer, dialect=database.dialect)
        try:
            yield database, Subscriptions(store, HostPolicy(), resolver=resolve), store, partner
        finally:
            writer.close()
            database.dispose()


def _announced(database: Any, event_type: str) -> int:
    with database.reader.connect() as conn:
        query = select(func.count()).select_from(webhook_deliveries)
        return int(conn.execute(query.where(webhook_deliveries.c.event_type == event_type)).scalar_one())


async def _watched_and_doomed(
    subs: Subscriptions, store: WebhookStore, partner: str
) -> tuple[dict[str, Any], Subscriptions]:
    """A subscription that watches the partner's subscription events, one that is to be
    deleted, and the use cases on a store that deletes it right after reading it."""
    await subs.create(partner, {"target_url": "https://hooks.example.com/watch", "subscribed_events": WATCHED})
    doomed = await subs.create(
        partner, {"target_url": "https://hooks.example.com/doomed", "subscribed_events": ["contact_card.created"]}
    )
    racing = Subscriptions(GoneAfterRead(store, subs), HostPolicy(), resolver=resolve)  # type: ignore[arg-type]
    return doomed, racing


def test_an_update_that_lost_the_race_with_a_delete_answers_404_and_announces_nothing(world):
    database, subs, store, partner = world

    async def scenario() -> None:
        doomed, racing = await _watched_and_doomed(subs, store, partner)
        with pytest.raises(ApiError) as caught:
            await racing.update(partner, doomed["id"], {"subscribed_events": ["contact_card.updated"]})
        assert caught.value.error is errors.NOT_FOUND
        with pytest.raises(ApiError):
            await subs.get(partner, doomed["id"])  # not brought back by the update

    asyncio.run(scenario())
    assert _announced(database, "webhook_subscription.events.updated") == 0
    assert _announced(database, "webhook_subscription.deleted") == 1  # the delete's own


def test_of_two_deletes_at_once_only_one_announces_the_deletion(world):
    database, subs, store, partner = world

    async def scenario() -> None:
        doomed, racing = await _watched_and_doomed(subs, store, partner)
        with pytest.raises(ApiError) as caught:
            await racing.delete(partner, doomed["id"])
        assert caught.value.error is errors.NOT_FOUND
        # And side by side in one batch of the writer: one of them deletes, the other finds nothing.
        other = await subs.create(
            partner, {"target_url": "https://hooks.example.com/other", "subscribed_events": ["contact_card.created"]}
        )
        answers = await asyncio.gather(
            subs.delete(partner, other["id"]), subs.delete(partner, other["id"]), return_exceptions=True
        )
        assert sorted(type(a).__name__ for a in answers) == ["ApiError", "NoneType"], answers

    asyncio.run(scenario())
    assert _announced(database, "webhook_subscription.deleted") == 2  # one per subscription deleted
