"""Which webhook event a card write records (over the in-memory fakes), and the body,
retry and signing rules of the webhook modules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from contactcard.contract import SetupRequest, UpdateRequest
from contactcard.store.webhooks import Claimed, Subscription, like_member
from contactcard.webhooks import events
from contactcard.webhooks.delivery import Answer, RetryPolicy, retryable, signature_headers
from contactcard.webhooks.subscriptions import new_secret
from tests.fakes import make_world

pytestmark = pytest.mark.anyio

KEY = "key-hash-a"
LINE = "+15550000001"


def world():
    w = make_world()
    w.store.add_partner("partner-a", KEY, [LINE])
    return w


def body(event: events.Outbox, version: str = "2026-01-01") -> dict:
    return json.loads(event.head + version + event.tail)


async def test_a_first_card_records_created_with_its_id_and_trace():
    w = world()
    await w.cards.setup(KEY, SetupRequest(LINE, "Ada", None, None), trace_id="trace-1")
    (event,) = w.store.events
    sent = body(event)
    assert (sent["event_type"], sent["trace_id"], sent["partner_id"]) == (
        "contact_card.created",
        "trace-1",
        "partner-a",
    )
    assert sent["data"]["contact_card"] == {
        "id": w.store.cards[LINE].id,
        "first_name": "Ada",
        "last_name": None,
        "image_url": None,
    }
    assert "change" not in sent["data"] and sent["webhook_version"] == "2026-01-01"


async def test_an_update_records_exactly_the_changed_fields():
    w = world()
    await w.cards.setup(KEY, SetupRequest(LINE, "Ada", "Lovelace", None))
    await w.cards.update(KEY, LINE, UpdateRequest(last_name=None))
    await w.cards.update(KEY, LINE, UpdateRequest(first_name="Ada"))  # changes nothing
    created, updated = w.store.events
    sent = body(updated)
    assert sent["event_type"] == "contact_card.updated"
    assert sent["data"]["change"] == {"last_name": {"from": "Lovelace", "to": None}}
    assert sent["data"]["contact_card"]["id"] == body(created)["data"]["contact_card"]["id"]


def test_a_name_cannot_break_out_of_the_body():
    # A first name holding the version slot's text stays a string: the slot is found by
    # its JSON form, which no caller value can produce (orjson escapes NUL).
    card = events.CardView("id", '\x00webhook_version\x00"', None, None)
    event = events.card_event(
        events.CARD_CREATED, partner_id="p", phone_number=LINE, card=card, at=datetime.now(UTC), trace_id="t"
    )
    assert body(event)["data"]["contact_card"]["first_name"] == card.first_name


def test_version_from_the_target_url_or_the_creation_date():
    created = datetime(2026, 5, 4, 23, 30, tzinfo=UTC)
    assert events.webhook_version("https://h.example/x?version=2026-02-03", created) == "2026-02-03"
    assert events.webhook_version("https://h.example/x?version=latest", created) == "2026-05-04"
    assert events.webhook_version("https://h.example/x", created) == "2026-05-04"


def test_like_member_escapes_wildcards():
    assert like_member("contact_card.created") == "%,contact!_card.created,%"


@pytest.mark.parametrize(
    ("status", "again"),
    [(None, True), (500, True), (503, True), (429, True), (302, True), (400, False), (404, False), (200, False)],
)
def test_what_is_retried(status, again):
    assert retryable(Answer(status, None, 1.0)) is again


def test_retry_schedule_ends_and_jitters():
    policy = RetryPolicy((10.0, 20.0), jitter=0.2)
    assert 8.0 <= policy.delay(1) <= 12.0
    assert 16.0 <= policy.delay(2) <= 24.0
    assert policy.delay(3) is None


def test_signatures_verify_with_the_standard_library_and_the_legacy_hmac():
    import base64
    import hashlib
    import hmac

    secret = new_secret()
    now = datetime.now(UTC)
    sub = Subscription("sub", "p", "https://h.example/", ["contact_card.created"], None, True, secret, "v", now, now)
    claimed = Claimed("evt", "sub", "contact_card.created", '{"a":1}', 1)
    stamp = int(now.timestamp())
    headers = signature_headers(sub, claimed, stamp)
    Webhook(secret).verify(claimed.body, headers)  # raises when wrong
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert (
        headers["x-webhook-signature"] == hmac.new(key, f"{stamp}.{claimed.body}".encode(), hashlib.sha256).hexdigest()
    )


def test_event_ids_are_version_4_uuids_in_hex():
    from contactcard.webhooks.events import _uuid4_hex

    seen = {_uuid4_hex() for _ in range(500)}
    assert len(seen) == 500
    for text in seen:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, text)
