"""The operator's use cases (`contactcard.admin.Admin`) over in-memory fakes.

Each test names what an operator does (partners, keys, lines, device scripts, webhook
deliveries) and asserts both the answer, or the catalogue's refusal, and what the records
were left with. The SQL behind each protocol is tested on real databases by the API and
dashboard tests; these run in milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from contactcard import errors, keys
from contactcard.admin import LineFilter
from contactcard.card import Card
from contactcard.device import DeviceScript
from contactcard.errors import ApiError, ErrorCode
from contactcard.store.deliveries import DeliveryRow
from contactcard.store.subscriptions import SubscriptionRow
from contactcard.webhooks import events
from tests.fakes import CDN_PREFIX, AdminWorld, make_admin_world

LINE = "+15550000001"
LINE_2 = "+15550000002"
LINE_3 = "+15551000003"


def refused(expected: ErrorCode, call, *args, **kwargs) -> ApiError:
    """Call and return its ApiError, asserting it is the catalogue's `expected`."""
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert caught.value.error is expected, f"{caught.value} instead of {expected.status} {expected.code}"
    return caught.value


@pytest.fixture
def w() -> AdminWorld:
    return make_admin_world()


def card(phone: str, *, first: str = "Ada", last: str | None = None, active: bool = True) -> Card:
    return Card("card-1", phone, first, last, "abc.jpg", None, active, active)


# --- partners -----------------------------------------------------------------------------


def test_a_partner_is_created_with_its_name_trimmed_and_listed(w):
    made = w.admin.create_partner("  Acme  ")
    assert made.name == "Acme" and len(made.id) == 32
    assert w.admin.list_partners() == [made] and w.admin.partner_count() == 1
    assert made.created_at == datetime.fromtimestamp(w.clock(), UTC)  # the injected clock


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("   ", "a partner needs a name"),
        ("x" * 201, "a partner's name is at most 200 characters"),
        ("Ev\u202eil", "a partner's name must not contain control or bidirectional characters"),
    ],
)
def test_a_partner_name_that_cannot_be_shown_is_refused(w, name, reason):
    error = refused(errors.BAD_VALUE, w.admin.create_partner, name)
    assert error.reason == reason
    assert error.message == f"Invalid parameter value: {reason}"  # what the admin API answers
    assert w.book.partners == {}


def test_a_rename_changes_the_name_and_an_unknown_partner_is_not_found(w):
    made = w.admin.create_partner("Acme")
    w.admin.rename_partner(made.id, " Acme Inc ")
    assert w.book.partners[made.id].name == "Acme Inc"
    assert refused(errors.NOT_FOUND, w.admin.rename_partner, "nobody", "X").reason == "no partner nobody"
    refused(errors.BAD_VALUE, w.admin.rename_partner, made.id, "")  # the same rules as at creation
    assert w.book.partners[made.id].name == "Acme Inc"


def test_deleting_a_partner_takes_its_holdings_and_leaves_the_others(w):
    acme, other = w.admin.create_partner("Acme"), w.admin.create_partner("Other")
    w.admin.issue_key(acme.id)
    w.admin.issue_key(acme.id)
    w.admin.add_line(acme.id, LINE)
    w.admin.add_line(other.id, LINE_2)
    w.book.cards[LINE] = card(LINE)
    w.book.subscriptions["s1"] = subscription("s1", acme.id)
    assert w.admin.partner_holdings(acme.id) == (2, 1, 1)
    assert w.admin.partner_holdings(acme.id).keys == 2
    w.admin.delete_partner(acme.id)
    assert [p.id for p in w.admin.list_partners()] == [other.id]
    assert w.book.lines == {LINE_2: other.id} and w.book.cards == {} and w.book.subscriptions == {}
    assert w.admin.list_keys() == []
    assert w.book.events == []  # no event: the subscriptions that would receive it are gone
    assert refused(errors.NOT_FOUND, w.admin.delete_partner, acme.id).reason == f"no partner {acme.id}"


# --- keys ---------------------------------------------------------------------------------


def test_an_issued_key_is_shown_once_and_stored_only_as_its_hash(w):
    acme = w.admin.create_partner("Acme")
    issued = w.admin.issue_key(acme.id, label="  CI  ")
    (stored,) = w.book.keys.values()
    assert stored.key_hash == keys.key_hash(issued.key) and issued.key not in repr(stored)
    assert stored.prefix == keys.display_prefix(issued.key) and stored.label == "CI"
    assert w.admin.key_owner(keys.key_hash(issued.key)) == acme.id
    (listed,) = w.admin.list_keys(acme.id)
    assert (listed.id, listed.revoked_at, listed.label) == (issued.id, None, "CI")


def test_a_key_for_nobody_a_key_in_use_and_a_bad_label_are_refused(w):
    acme = w.admin.create_partner("Acme")
    assert refused(errors.NOT_FOUND, w.admin.issue_key, "nobody").reason == "no partner nobody"
    fixed = "fixed-key-for-the-tests-0001"
    w.admin.issue_key(acme.id, fixed)
    assert refused(errors.BAD_VALUE, w.admin.issue_key, acme.id, fixed).reason == "that key is already in use"
    error = refused(errors.BAD_VALUE, w.admin.issue_key, acme.id, label="x" * 101)
    assert "at most 100 characters" in error.reason
    assert len(w.book.keys) == 1


def test_a_revoked_key_keeps_its_owner_and_an_unknown_key_is_not_found(w):
    acme = w.admin.create_partner("Acme")
    issued = w.admin.issue_key(acme.id)
    w.admin.revoke_key(issued.id)
    w.clock.advance(60)
    w.admin.revoke_key(issued.id)  # twice is fine; the first time stays
    (listed,) = w.admin.list_keys()
    assert listed.revoked_at == datetime.fromtimestamp(w.clock() - 60, UTC)
    assert w.admin.key_owner(keys.key_hash(issued.key)) == acme.id  # revoked or not
    assert w.admin.key_owner(keys.key_hash("never-issued-key-0000")) is None
    assert refused(errors.NOT_FOUND, w.admin.revoke_key, "nope").reason == "no key nope"


# --- lines --------------------------------------------------------------------------------


def test_a_line_is_added_once_and_another_partners_number_is_refused(w):
    acme, other = w.admin.create_partner("Acme"), w.admin.create_partner("Other")
    line = w.admin.add_line(acme.id, LINE)
    assert (line.phone_number, line.partner_id, line.has_card) == (LINE, acme.id, False)
    assert w.admin.add_line(acme.id, LINE) == line  # already theirs
    error = refused(errors.BAD_VALUE, w.admin.add_line, other.id, LINE)
    assert error.reason == f"{LINE} already belongs to another partner"
    assert refused(errors.NOT_FOUND, w.admin.add_line, "nobody", LINE_2).reason == "no partner nobody"
    assert refused(errors.BAD_VALUE, w.admin.add_line, acme.id, "5550000003").reason == (
        "'5550000003' is not an E.164 phone number"
    )
    assert w.book.lines == {LINE: acme.id}


def test_removing_a_line_with_a_card_records_its_deleted_event(w):
    acme = w.admin.create_partner("Acme")
    w.admin.add_line(acme.id, LINE)
    w.book.cards[LINE] = card(LINE, first="Ada", last="Lovelace")
    w.admin.remove_line(LINE)
    assert w.book.lines == {} and w.book.cards == {}
    (event,) = w.book.events
    assert (event.event_type, event.partner_id, event.phone_number) == (events.CARD_DELETED, acme.id, LINE)
    body = orjson.loads(event.head + "2025-01-01" + event.tail)
    assert body["data"]["contact_card"]["first_name"] == "Ada"
    assert body["data"]["contact_card"]["image_url"] == f"{CDN_PREFIX}abc.jpg"  # the CDN's URL
    assert refused(errors.NOT_FOUND, w.admin.remove_line, LINE).reason == f"no line {LINE}"


def test_removing_a_line_without_a_card_records_no_event(w):
    acme = w.admin.create_partner("Acme")
    w.admin.add_line(acme.id, LINE)
    w.admin.remove_line(LINE)
    assert w.book.lines == {} and w.book.events == []


def test_the_line_filter_takes_a_number_prefix_with_or_without_its_plus(w):
    acme, other = w.admin.create_partner("Acme"), w.admin.create_partner("Other")
    for phone in (LINE, LINE_2):
        w.admin.add_line(acme.id, phone)
    w.admin.add_line(other.id, LINE_3)
    w.book.cards[LINE_2] = card(LINE_2, first="Grace", active=False)
    w.book.cards[LINE_3] = card(LINE_3, first="Ada")

    def numbers(where: LineFilter) -> list[str]:
        found = [row.phone_number for row in w.admin.line_cards(where)]
        assert w.admin.line_count(where) == len(found)
        assert w.admin.line_count(where, at_most=0) == min(len(found), 1)  # stops past the bound
        return found

    assert numbers(LineFilter()) == [LINE, LINE_2, LINE_3]
    assert numbers(LineFilter(number_prefix="1555000")) == [LINE, LINE_2]  # as people type it
    assert numbers(LineFilter(number_prefix="+1555100")) == [LINE_3]
    assert numbers(LineFilter(partner_id=other.id)) == [LINE_3]
    assert numbers(LineFilter(state="inactive")) == [LINE_2]
    assert numbers(LineFilter(state="none")) == [LINE]
    assert numbers(LineFilter(name="gra")) == [LINE_2]
    assert numbers(LineFilter(partner_id=acme.id, state="active")) == []
    for bad in ("%", "+1%", "1 OR 1", "+١٢"):
        error = refused(errors.BAD_VALUE, w.admin.line_cards, LineFilter(number_prefix=bad))
        assert error.reason == f"{bad!r} is not the start of a phone number"
        refused(errors.BAD_VALUE, w.admin.line_count, LineFilter(number_prefix=bad))


def test_line_pages_go_forward_after_a_number_and_back_before_one(w):
    acme = w.admin.create_partner("Acme")
    numbers = [f"+1555000{i:04d}" for i in range(5)]
    for phone in numbers:
        w.admin.add_line(acme.id, phone)
    first = w.admin.line_cards(limit=2)
    second = w.admin.line_cards(after=first[-1].phone_number, limit=2)
    assert [r.phone_number for r in first + second] == numbers[:4]
    assert [r.phone_number for r in w.admin.line_cards(before=numbers[3], limit=2)] == [numbers[2], numbers[1]]


# --- devices ------------------------------------------------------------------------------


def test_a_lines_device_is_scripted_and_viewed_only_for_a_line(w):
    acme = w.admin.create_partner("Acme")
    w.admin.add_line(acme.id, LINE)
    script = DeviceScript(fail_next=2, rcs_unavailable=True)
    view = w.admin.script_device(LINE, script)
    assert view.script == script and w.devices.scripts == {LINE: script}
    assert w.admin.device_view(LINE).script == script
    assert refused(errors.NOT_FOUND, w.admin.device_view, LINE_2).reason == f"no line {LINE_2}"
    assert refused(errors.NOT_FOUND, w.admin.script_device, LINE_2, script).reason == f"no line {LINE_2}"
    error = refused(errors.BAD_VALUE, w.admin.script_device, LINE, DeviceScript(fail_next=-1))
    assert error.reason == "scripted counts cannot be negative"
    assert w.devices.scripts == {LINE: script}  # refused scripts are never set


# --- webhook subscriptions and deliveries -------------------------------------------------


def subscription(subscription_id: str, partner_id: str) -> SubscriptionRow:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return SubscriptionRow(
        subscription_id, partner_id, "Acme", "https://hooks.test/", [events.CARD_DELETED], None, True, "v", at
    )


def delivery(event_id: str, subscription_id: str, status: str = "failed", attempts: int = 3) -> DeliveryRow:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return DeliveryRow(event_id, subscription_id, "p", "t", LINE, status, attempts, None, 500, "boom", 1.0, at, at)


def test_a_subscription_is_switched_and_an_unknown_one_is_not_found(w):
    w.book.subscriptions["s1"] = subscription("s1", "p")
    w.admin.set_subscription_active("s1", False)
    assert [s.is_active for s in w.admin.list_subscriptions("p")] == [False]
    assert w.admin.counts().disabled_subscriptions == 1
    assert refused(errors.NOT_FOUND, w.admin.set_subscription_active, "s2", True).reason == "no subscription s2"


def test_a_redelivery_starts_a_fresh_schedule_due_now(w):
    w.book.deliveries.append(delivery("e1", "s1"))
    w.book.bodies[("e1", "s1")] = '{"event": 1}'
    row = w.admin.redeliver("e1", "s1")
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, w.clock())
    assert w.admin.delivery_body("e1", "s1") == '{"event": 1}'
    found, attempts = w.admin.delivery("e1", "s1")
    assert found == row and attempts == []
    missing = "no delivery of event e1 to subscription s9"
    for call in (w.admin.redeliver, w.admin.delivery, w.admin.delivery_body):
        assert refused(errors.NOT_FOUND, call, "e1", "s9").reason == missing
    assert refused(errors.NOT_FOUND, w.admin.delivery, "e1", "").reason.endswith("to subscription ")


def test_deliveries_are_listed_newest_first_by_state(w):
    w.book.deliveries += [
        delivery("e1", "s1"),
        delivery("e2", "s1", "pending", 1),
        delivery("e3", "s2", "delivered", 1),
    ]
    assert [d.event_id for d in w.admin.list_deliveries()] == ["e3", "e2", "e1"]
    assert [d.event_id for d in w.admin.list_deliveries("s1")] == ["e2", "e1"]
    assert [d.event_id for d in w.admin.list_deliveries(state="retrying")] == ["e2"]
    assert [d.event_id for d in w.admin.list_deliveries(limit=1, offset=1)] == ["e2"]
    counts = w.admin.counts()
    assert (counts.retrying_deliveries, counts.failed_deliveries) == (1, 1)
