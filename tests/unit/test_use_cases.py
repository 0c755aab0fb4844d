"""The use cases (`contactcard.service.ContactCards`) over in-memory fakes.

Each test names a rule of CONTRACT.md (POST, PATCH, device outcomes and profiles, limits,
who may touch what) and asserts both the answer and the side effects: what was stored,
what the device was asked, what the budget spent, what was fetched.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

from contactcard import errors, images
from contactcard.card import Outcome
from contactcard.contract import SetupRequest, UpdateRequest
from contactcard.errors import ApiError, ErrorCode
from contactcard.service import WriteResult
from tests.fakes import CDN_PREFIX, World, make_world, png

pytestmark = pytest.mark.anyio

KEY = "key-hash-a"
OTHER_KEY = "key-hash-b"
LINE = "+15550000001"
LINE_2 = "+15550000002"
OTHERS_LINE = "+15550000099"
NOBODYS_LINE = "+15550000777"
IMAGE = "https://img.example.com/ada.png"
IMAGE_2 = "https://img.example.com/ada-2.png"


def world(**policy) -> World:
    w = make_world(**policy)
    w.store.add_partner("partner-a", KEY, [LINE, LINE_2])
    w.store.add_partner("partner-b", OTHER_KEY, [OTHERS_LINE])
    return w


def setup(phone: str = LINE, first: str = "Ada", last: str | None = None, image: str | None = None) -> SetupRequest:
    return SetupRequest(phone, first, last, image)


async def refused(expected: ErrorCode, call) -> ApiError:
    """Await `call` and return its ApiError, asserting it is the catalogue's `expected`."""
    with pytest.raises(ApiError) as caught:
        await call
    error = caught.value
    assert error.error is expected, f"{error} instead of {expected.status} {expected.code}"
    assert (error.error.status, error.error.code) == (expected.status, expected.code)
    return error


async def active_card(w: World, phone: str = LINE, **fields) -> WriteResult:
    """A card set up successfully through the use case (the budget it spent is forgotten)."""
    result = await w.cards.setup(KEY, setup(phone, **fields))
    assert result.card["is_active"] is True
    w.store.attempts.clear()
    w.device.applied.clear()
    w.fetcher.calls.clear()
    w.journal.clear()
    return result


# --- POST ------------------------------------------------------------------------------


async def test_use_case_post_stores_inactive_then_applies_then_marks_active():
    w = world()
    seen_at_apply = []
    w.device.observe = lambda card: seen_at_apply.append(w.store.cards.get(card.phone_number))

    result = await w.cards.setup(KEY, setup(last="Lovelace"))

    assert w.journal == ["line_state", "store", "apply", "mark_active"]
    # When the device was asked, the new values were already stored, inactive.
    (stored_then,) = seen_at_apply
    assert stored_then is not None and stored_then.is_active is False
    assert (stored_then.first_name, stored_then.last_name) == ("Ada", "Lovelace")
    assert result.error is None
    assert result.card == {
        "phone_number": LINE,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "image_url": None,
        "is_active": True,
    }
    stored = w.store.cards[LINE]
    assert stored.is_active and stored.ever_active


async def test_use_case_post_image_is_fetched_rehosted_and_answered_as_the_cdn_url():
    w = world()
    result = await w.cards.setup(KEY, setup(image=IMAGE))

    assert [url.raw for url in w.fetcher.calls] == [IMAGE]
    stored = w.store.cards[LINE]
    assert stored.image_source_url == IMAGE
    assert stored.image_blob in w.cdn.blobs and stored.image_blob.endswith(".jpg")
    cdn_url = f"{CDN_PREFIX}{stored.image_blob}"
    assert result.card["image_url"] == cdn_url  # never the caller's URL
    assert w.device.applied[-1][1] == cdn_url  # the device gets our copy
    # The blob is the normalised rendition, not the caller's bytes.
    assert w.cdn.blobs[stored.image_blob][:3] == b"\xff\xd8\xff"


async def test_use_case_post_on_an_active_card_is_409_without_spending_budget_or_fetching():
    w = world()
    await active_card(w)
    before = w.store.cards[LINE]

    error = await refused(errors.CARD_EXISTS, w.cards.setup(KEY, setup(first="Eve", image=IMAGE)))

    assert error.headers["x-should-retry"] == "false"
    assert error.message == "Contact card already exists"
    assert w.store.attempts.get(LINE, []) == []
    assert w.fetcher.calls == [] and w.device.applied == []
    assert w.store.cards[LINE] == before


async def test_use_case_post_again_after_a_failed_apply_sets_the_card_up():
    w = world()
    w.device.answer(Outcome.FAILED)
    first = await w.cards.setup(KEY, setup(first="Ada"))
    assert first.card["is_active"] is False

    second = await w.cards.setup(KEY, setup(first="Eve"))

    assert second.card["is_active"] is True and second.card["first_name"] == "Eve"
    assert w.store.cards[LINE].id == w.device.applied[0][0].id  # one card for the line, kept


async def test_use_case_409_wins_over_429():
    w = world(write_budget=3)
    await active_card(w)
    w.store.spend(LINE, w.clock.now, w.clock.now, w.clock.now)

    await refused(errors.CARD_EXISTS, w.cards.setup(KEY, setup()))


# --- a device that joins the card's commit, and one that cannot ------------------------


async def test_use_case_a_device_that_cannot_join_is_applied_after_the_store_then_marked_active():
    w = world()
    result = await w.cards.setup(KEY, setup(first="Ada", image=IMAGE))

    assert w.journal == ["line_state", "store", "apply", "mark_active"]
    assert w.store.displays == {}  # nothing shown inside the store's commit
    ((card, image_url),) = w.device.applied
    assert image_url == f"{CDN_PREFIX}{w.store.cards[LINE].image_blob}"
    assert card.is_active is False  # it was asked to apply the card stored inactive
    assert result.card["is_active"] is True and w.store.cards[LINE].is_active


async def test_use_case_a_device_that_joins_shows_the_card_in_the_store_commit_and_is_not_called():
    w = world(device_joins=True)
    result = await w.cards.setup(KEY, setup(first="Ada", last="Lovelace", image=IMAGE))

    assert w.journal == ["line_state", "store"]  # one commit: no apply, no mark_active
    assert w.device.applied == []
    cdn_url = f"{CDN_PREFIX}{w.store.cards[LINE].image_blob}"
    shown = w.store.displays[LINE]
    assert (shown.first_name, shown.last_name, shown.image_url) == ("Ada", "Lovelace", cdn_url)
    stored = w.store.cards[LINE]
    assert stored.is_active and stored.ever_active
    assert result.error is None and result.card["is_active"] is True and result.card["image_url"] == cdn_url


async def test_use_case_a_joined_patch_spends_the_budget_and_records_its_event_in_the_one_commit():
    w = world(device_joins=True, write_budget=3)
    await active_card(w)

    result = await w.cards.update(KEY, LINE, UpdateRequest(first_name="Grace"))

    assert w.journal == ["line_state", "store"]
    assert w.store.attempts[LINE] == [w.clock.now]
    assert [event.event_type for event in w.store.events][-1] == "contact_card.updated"
    assert w.store.displays[LINE].first_name == "Grace" and result.card["first_name"] == "Grace"


async def test_use_case_a_joined_apply_the_store_did_not_show_is_applied_after_the_commit():
    # As when an outcome was scripted for the simulated device after the state read.
    w = world(device_joins=True)
    w.store.refuse_joined = True
    w.device.answer(Outcome.FAILED)

    result = await w.cards.setup(KEY, setup(first="Ada"))

    assert w.journal == ["line_state", "store", "apply"]  # failed: never marked active
    assert LINE not in w.store.displays and len(w.device.applied) == 1
    assert result.card["is_active"] is False and w.store.cards[LINE].is_active is False


# --- the write budget ------------------------------------------------------------------


async def test_use_case_budget_spends_only_when_an_apply_is_attempted():
    w = world(write_budget=1)
    await active_card(w, LINE_2)
    w.store.put_card(LINE, is_active=False, ever_active=False)
    w.fetcher.error = images.FetchError("connection refused")

    # Refused before the device: each of these must leave the one call of budget untouched.
    await refused(errors.UNAUTHORIZED, w.cards.setup("unknown", setup()))
    await refused(errors.FORBIDDEN, w.cards.setup(KEY, setup(OTHERS_LINE)))
    await refused(errors.CARD_EXISTS, w.cards.setup(KEY, setup(LINE_2)))
    await refused(errors.NOT_FOUND, w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve")))
    w.device.rcs_available = False
    await refused(errors.RCS_UNAVAILABLE, w.cards.update(KEY, LINE_2, UpdateRequest(first_name="Eve")))
    w.device.rcs_available = True
    await refused(errors.IMAGE_FETCH_FAILED, w.cards.setup(KEY, setup(image=IMAGE)))
    w.fetcher.error = None
    w.fetcher.data = b"not an image at all"
    await refused(errors.IMAGE_UNUSABLE, w.cards.setup(KEY, setup(image=IMAGE)))
    assert w.store.attempts.get(LINE, []) == [] and w.store.attempts.get(LINE_2, []) == []

    # A call that reaches the device counts, whatever the device answers.
    w.device.answer(Outcome.FAILED)
    await w.cards.setup(KEY, setup())
    assert w.store.attempts[LINE] == [w.clock.now]
    await refused(errors.RATE_LIMITED, w.cards.setup(KEY, setup()))


async def test_use_case_budget_429_has_retry_after_from_the_oldest_attempt():
    w = world(write_budget=3, write_budget_window=600)
    start = w.clock.now
    w.device.answer(Outcome.FAILED, Outcome.FAILED, Outcome.FAILED)
    for _ in range(3):
        await w.cards.setup(KEY, setup())
        w.clock.advance(100)
    assert w.store.attempts[LINE] == [start, start + 100, start + 200]
    w.fetcher.calls.clear()

    error = await refused(errors.RATE_LIMITED, w.cards.setup(KEY, setup(image=IMAGE)))

    wait = 300  # the oldest attempt (start) leaves the window at start + 600; now is start + 300
    assert error.retry_after == wait
    assert error.headers == {"retry-after": str(wait), "x-should-retry": "false"}
    # The budget is checked before the image is fetched, and a 429 spends nothing.
    assert w.fetcher.calls == [] and w.cdn.blobs == {}
    assert len(w.store.attempts[LINE]) == 3
    assert len(w.device.applied) == 3


async def test_use_case_budget_retry_after_rounds_up_and_is_at_least_one():
    w = world(write_budget=1, write_budget_window=600)
    w.store.spend(LINE, w.clock.now - 599.5)
    assert (await refused(errors.RATE_LIMITED, w.cards.setup(KEY, setup()))).retry_after == 1
    w.store.attempts[LINE] = [w.clock.now - 0.2]
    assert (await refused(errors.RATE_LIMITED, w.cards.setup(KEY, setup()))).retry_after == 600


async def test_use_case_budget_window_passing_frees_it():
    w = world(write_budget=2, write_budget_window=600)
    start = w.clock.now
    w.device.answer(Outcome.FAILED, Outcome.FAILED, Outcome.FAILED)
    await w.cards.setup(KEY, setup())
    w.clock.advance(100)
    await w.cards.setup(KEY, setup())
    w.clock.advance(499)
    assert (await refused(errors.RATE_LIMITED, w.cards.setup(KEY, setup()))).retry_after == 1

    w.clock.advance(1)  # start + 600: the first attempt is out of the window
    result = await w.cards.setup(KEY, setup(first="Eve"))
    assert result.card["first_name"] == "Eve"
    # The old attempt is pruned; the next wait is counted from the one at start + 100.
    assert w.store.attempts[LINE] == [start + 100, start + 600]
    assert (await refused(errors.RATE_LIMITED, w.cards.setup(KEY, setup()))).retry_after == 100


async def test_use_case_budget_is_per_line_and_shared_by_post_and_patch():
    w = world(write_budget=2)
    await w.cards.setup(KEY, setup())
    await w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve"))
    await refused(errors.RATE_LIMITED, w.cards.update(KEY, LINE, UpdateRequest(first_name="Ivy")))
    assert (await w.cards.setup(KEY, setup(LINE_2))).card["is_active"] is True


async def test_use_case_budget_zero_is_off():
    w = world(write_budget=0)
    w.device.answer(*[Outcome.FAILED] * 10)
    for _ in range(10):
        await w.cards.setup(KEY, setup())
    assert w.store.attempts.get(LINE, []) == []
    assert len(w.device.applied) == 10


async def test_use_case_budget_is_checked_before_the_patch_image_fetch():
    w = world(write_budget=1)
    await active_card(w)
    w.store.spend(LINE, w.clock.now)

    await refused(errors.RATE_LIMITED, w.cards.update(KEY, LINE, UpdateRequest(image_url=IMAGE_2)))
    assert w.fetcher.calls == [] and w.device.applied == []


# --- PATCH -----------------------------------------------------------------------------


async def test_use_case_patch_present_replaces_absent_keeps_null_clears():
    w = world(write_budget=0)
    await active_card(w, last="Lovelace", image=IMAGE)
    original = w.store.cards[LINE]
    cdn_url = f"{CDN_PREFIX}{original.image_blob}"

    kept = await w.cards.update(KEY, LINE, UpdateRequest(last_name="Byron"))
    assert kept.card == {
        "phone_number": LINE,
        "first_name": "Ada",
        "last_name": "Byron",
        "image_url": cdn_url,
        "is_active": True,
    }

    replaced = await w.cards.update(KEY, LINE, UpdateRequest(first_name="Augusta"))
    assert (replaced.card["first_name"], replaced.card["last_name"]) == ("Augusta", "Byron")

    cleared = await w.cards.update(KEY, LINE, UpdateRequest(last_name=None))
    assert cleared.card["last_name"] is None and cleared.card["image_url"] == cdn_url

    no_image = await w.cards.update(KEY, LINE, UpdateRequest(image_url=None))
    assert no_image.card["image_url"] is None and no_image.card["first_name"] == "Augusta"
    stored = w.store.cards[LINE]
    assert stored.image_blob is None and stored.image_source_url is None
    assert stored.id == original.id
    assert w.device.applied[-1][1] is None
    assert w.fetcher.calls == []


async def test_use_case_patch_empty_body_reapplies_the_stored_values():
    w = world()
    await active_card(w, last="Lovelace", image=IMAGE)
    before = w.store.cards[LINE]

    result = await w.cards.update(KEY, LINE, UpdateRequest())

    assert w.journal == ["line_state", "store", "apply", "mark_active"]
    applied, image_url = w.device.applied[-1]
    assert (applied.first_name, applied.last_name, applied.image_blob) == ("Ada", "Lovelace", before.image_blob)
    assert image_url == f"{CDN_PREFIX}{before.image_blob}"
    assert result.card["is_active"] is True and w.fetcher.calls == []


async def test_use_case_patch_image_is_fetched_only_when_the_url_is_new():
    w = world(write_budget=0)
    w.fetcher.by_url[IMAGE_2] = png(colour=(10, 200, 10))
    first = await active_card(w, image=IMAGE)
    cdn_url = first.card["image_url"]
    blob = w.store.cards[LINE].image_blob

    # Echoing back what GET returned (the CDN URL) or the source URL costs nothing.
    await w.cards.update(KEY, LINE, UpdateRequest(image_url=cdn_url))
    await w.cards.update(KEY, LINE, UpdateRequest(image_url=IMAGE))
    assert w.fetcher.calls == []
    assert (w.store.cards[LINE].image_blob, w.store.cards[LINE].image_source_url) == (blob, IMAGE)

    changed = await w.cards.update(KEY, LINE, UpdateRequest(image_url=IMAGE_2))
    assert [url.raw for url in w.fetcher.calls] == [IMAGE_2]
    stored = w.store.cards[LINE]
    assert stored.image_source_url == IMAGE_2 and stored.image_blob != blob
    assert changed.card["image_url"] == f"{CDN_PREFIX}{stored.image_blob}"


async def test_use_case_own_cdn_url_is_reused_without_fetching():
    w = world()
    await active_card(w, LINE_2, image=IMAGE)
    cdn_url = f"{CDN_PREFIX}{w.store.cards[LINE_2].image_blob}"

    result = await w.cards.setup(KEY, setup(image=cdn_url))

    assert w.fetcher.calls == []
    assert result.card["image_url"] == cdn_url


async def test_use_case_own_cdn_url_of_a_missing_blob_is_5006_and_nothing_stored():
    w = world()
    missing = f"{CDN_PREFIX}{'0' * 64}.jpg"
    error = await refused(errors.IMAGE_FETCH_FAILED, w.cards.setup(KEY, setup(image=missing)))
    assert "no such image" in error.message
    assert LINE not in w.store.cards and w.fetcher.calls == []


async def test_use_case_image_failures_are_400_and_nothing_stored():
    w = world()
    w.fetcher.error = images.FetchError("image host answered 404")
    error = await refused(errors.IMAGE_FETCH_FAILED, w.cards.setup(KEY, setup(image=IMAGE)))
    assert "image host answered 404" in error.message

    w.fetcher.error = None
    w.fetcher.data = b"GIF89a but not really"
    await refused(errors.IMAGE_UNUSABLE, w.cards.setup(KEY, setup(image=IMAGE)))

    assert LINE not in w.store.cards and w.cdn.blobs == {} and w.device.applied == []


async def test_use_case_patch_without_a_card_is_404():
    for profile in ("seed", "hosted"):
        w = world(profile=profile)
        error = await refused(errors.NOT_FOUND, w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve")))
        assert error.message == "Resource not found"
        assert w.device.rcs_checks == [] and w.device.applied == []
        assert LINE not in w.store.cards


async def test_use_case_seed_patch_needs_a_card_that_was_once_active():
    w = world(profile="seed")
    w.device.answer(Outcome.FAILED)
    await w.cards.setup(KEY, setup())  # stored, never applied
    before = w.store.cards[LINE]
    assert not before.ever_active

    await refused(errors.NOT_FOUND, w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve")))
    assert w.store.cards[LINE] == before and len(w.device.applied) == 1


async def test_use_case_seed_patch_of_a_once_active_card_now_inactive_is_allowed():
    w = world(profile="seed")
    w.store.put_card(LINE, is_active=False, ever_active=True)
    result = await w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve"))
    assert result.card["is_active"] is True and result.card["first_name"] == "Eve"


async def test_use_case_hosted_patch_needs_only_that_a_card_exists():
    w = world(profile="hosted")
    w.store.put_card(LINE, is_active=False, ever_active=False)
    result = await w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve"))
    assert result.error is None
    assert result.card["is_active"] is True and result.card["first_name"] == "Eve"


async def test_use_case_patch_rcs_unavailable_is_503_4004_and_nothing_changes():
    w = world()
    await active_card(w, last="Lovelace")
    before = w.store.cards[LINE]
    w.device.rcs_available = False

    error = await refused(errors.RCS_UNAVAILABLE, w.cards.update(KEY, LINE, UpdateRequest(image_url=IMAGE_2)))

    assert error.message == "RCS capability check is temporarily unavailable."
    assert w.device.rcs_checks == [LINE]
    assert w.store.cards[LINE] == before
    assert w.journal == ["line_state"]  # nothing stored, nothing applied
    assert w.fetcher.calls == [] and w.store.attempts.get(LINE, []) == []


# --- device outcomes and profiles ------------------------------------------------------


@pytest.mark.parametrize("write", ["post", "patch"])
async def test_use_case_seed_failed_apply_is_200_inactive_with_the_new_values(write):
    w = world(profile="seed")
    if write == "patch":
        await active_card(w)
    w.device.answer(Outcome.FAILED)

    if write == "post":
        result = await w.cards.setup(KEY, setup(first="Eve", last="Adams"))
    else:
        result = await w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve", last_name="Adams"))

    assert result.error is None
    assert result.card["is_active"] is False
    assert (result.card["first_name"], result.card["last_name"]) == ("Eve", "Adams")
    stored = w.store.cards[LINE]
    assert (stored.first_name, stored.last_name, stored.is_active) == ("Eve", "Adams", False)
    assert "mark_active" not in w.journal


@pytest.mark.parametrize("write", ["post", "patch"])
async def test_use_case_hosted_failed_apply_is_2022_after_storing(write):
    w = world(profile="hosted")
    if write == "patch":
        await active_card(w)
    w.device.answer(Outcome.FAILED)

    if write == "post":
        result = await w.cards.setup(KEY, setup(first="Eve"))
    else:
        result = await w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve"))

    assert result.error is not None and result.error.error is errors.APPLY_INCOMPLETE
    assert (result.error.error.status, result.error.error.code) == (500, 2022)
    assert result.card["is_active"] is False and result.card["first_name"] == "Eve"
    stored = w.store.cards[LINE]
    assert stored.first_name == "Eve" and stored.is_active is False
    assert "mark_active" not in w.journal


@pytest.mark.parametrize("profile", ["seed", "hosted"])
@pytest.mark.parametrize("write", ["post", "patch"])
async def test_use_case_upstream_rate_limited_is_503_4004_no_retry_card_stored_inactive(profile, write):
    w = world(profile=profile)
    if write == "patch":
        await active_card(w)
    w.device.answer(Outcome.RATE_LIMITED)

    if write == "post":
        call = w.cards.setup(KEY, setup(first="Eve"))
    else:
        call = w.cards.update(KEY, LINE, UpdateRequest(first_name="Eve"))
    error = await refused(errors.UPSTREAM_RATE_LIMITED, call)

    assert (error.error.status, error.error.code) == (503, 4004)
    assert error.headers["x-should-retry"] == "false"
    assert error.message == errors.UPSTREAM_RATE_LIMITED_MESSAGE and "Wait before retrying" in error.message
    stored = w.store.cards[LINE]
    assert stored.first_name == "Eve" and stored.is_active is False
    assert len(w.store.attempts[LINE]) == 1  # it reached the device: it counts


# --- who may touch what ----------------------------------------------------------------


async def test_use_case_unknown_or_revoked_key_is_401_everywhere():
    w = world()
    await active_card(w)
    before = dict(w.store.cards)
    w.store.revoke(KEY)
    for key in ("unknown", KEY):
        await refused(errors.UNAUTHORIZED, w.cards.setup(key, setup(LINE_2, image=IMAGE)))
        await refused(errors.UNAUTHORIZED, w.cards.update(key, LINE, UpdateRequest(first_name="Eve")))
        await refused(errors.UNAUTHORIZED, w.cards.get_card(key, LINE))
        await refused(errors.UNAUTHORIZED, w.cards.list_cards(key))
        await refused(errors.UNAUTHORIZED, w.cards.require_key(key))
    assert w.store.cards == before
    assert w.device.applied == [] and w.device.rcs_checks == [] and w.fetcher.calls == []
    await w.cards.require_key(OTHER_KEY)  # a known key passes


async def test_use_case_line_of_another_partner_or_of_nobody_is_403():
    w = world()
    theirs = w.store.put_card(OTHERS_LINE, is_active=True, first_name="Mallory")
    for phone in (OTHERS_LINE, NOBODYS_LINE):
        await refused(errors.FORBIDDEN, w.cards.setup(KEY, setup(phone, image=IMAGE)))
        await refused(errors.FORBIDDEN, w.cards.update(KEY, phone, UpdateRequest(first_name="Eve")))
        await refused(errors.FORBIDDEN, w.cards.get_card(KEY, phone))
    assert w.store.cards == {OTHERS_LINE: theirs}
    assert w.device.applied == [] and w.device.rcs_checks == [] and w.fetcher.calls == []
    assert w.store.attempts == {}


async def test_use_case_get_answers_the_partners_own_cards():
    w = world()
    await active_card(w, LINE_2, last="Lovelace")
    w.device.answer(Outcome.FAILED)
    await w.cards.setup(KEY, setup(LINE, first="Eve"))
    w.store.put_card(OTHERS_LINE, is_active=True, first_name="Mallory")

    listed = await w.cards.list_cards(KEY)
    assert [(c["phone_number"], c["first_name"], c["is_active"]) for c in listed] == [
        (LINE, "Eve", False),  # inactive cards are listed too, in phone-number order
        (LINE_2, "Ada", True),
    ]
    assert await w.cards.get_card(KEY, LINE_2) == [
        {"phone_number": LINE_2, "first_name": "Ada", "last_name": "Lovelace", "image_url": None, "is_active": True}
    ]
    w.store.add_partner("partner-c", "key-hash-c", ["+15550000555"])
    assert await w.cards.get_card("key-hash-c", "+15550000555") == []
    assert await w.cards.list_cards("key-hash-c") == []


# --- the write queue and the store ----------------------------------------------------


async def test_use_case_write_queue_limit_is_503_4005_at_once():
    w = world(write_queue_limit=1)
    w.device.gate = asyncio.Event()  # the first write holds its line's lock until released
    results: list[WriteResult] = []

    async def first_write() -> None:
        results.append(await w.cards.setup(KEY, setup(LINE)))

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first_write)
            await w.device.entered.wait()  # the first write is inside its line's lock

            with anyio.fail_after(0.5):  # at once, not after the first write
                error = await refused(errors.WRITES_BUSY, w.cards.setup(KEY, setup(LINE_2)))
            assert error.headers == {"retry-after": "1", "x-should-retry": "true"}
            await refused(errors.WRITES_BUSY, w.cards.update(KEY, LINE_2, UpdateRequest()))
            assert LINE_2 not in w.store.cards and w.locks.waiting.get(LINE_2, 0) == 0
            assert w.store.attempts.get(LINE_2, []) == []
            w.device.gate.set()
    assert results[0].card["is_active"] is True
    # The refused writes took no place in the queue: the next one goes through.
    assert (await w.cards.setup(KEY, setup(LINE_2))).card["is_active"] is True


async def test_use_case_line_busy_is_503_4005_and_store_down_is_503_4006():
    w = world(write_queue_limit=1)  # so a write left counted in the queue would block the next
    w.locks.busy = True
    error = await refused(errors.WRITES_BUSY, w.cards.setup(KEY, setup()))
    assert error.headers == {"retry-after": "1", "x-should-retry": "true"}
    w.locks.busy = False

    w.store.unavailable = True
    for call in (
        w.cards.setup(KEY, setup()),
        w.cards.update(KEY, LINE, UpdateRequest()),
        w.cards.get_card(KEY, LINE),
        w.cards.list_cards(KEY),
        w.cards.require_key(KEY),
        w.cards.read_memo(),
    ):
        error = await refused(errors.DATABASE_UNAVAILABLE, call)
        assert error.headers == {"retry-after": "1", "x-should-retry": "true"}
    # A failed write does not stay counted against the queue (its limit here is one).
    w.store.unavailable = False
    assert (await w.cards.setup(KEY, setup())).card["is_active"] is True


async def test_use_case_concurrent_posts_to_one_line_are_serialised():
    w = world(write_budget=0)
    outcomes: list[object] = []

    async def post(first: str) -> None:
        try:
            outcomes.append((await w.cards.setup(KEY, setup(first=first))).card["first_name"])
        except ApiError as error:
            outcomes.append(error.error.code)

    async with anyio.create_task_group() as tasks:
        for first in ("Ada", "Eve", "Ivy"):
            tasks.start_soon(post, first)

    # Some serial order: one setup wins, the others find an active card.
    winners = [outcome for outcome in outcomes if outcome != errors.CARD_EXISTS.code]
    assert len(outcomes) == 3 and len(winners) == 1
    assert len(w.device.applied) == 1
    assert w.store.cards[LINE].first_name == winners[0]


async def test_use_case_image_store_down_is_503_4008_and_stores_no_card():
    w = world()
    w.cdn.unavailable = True

    error = await refused(errors.IMAGE_STORE_UNAVAILABLE, w.cards.setup(KEY, setup(image=IMAGE)))

    assert error.headers == {"retry-after": "1", "x-should-retry": "true"}
    assert [url.raw for url in w.fetcher.calls] == [IMAGE]  # fetched and decoded, then the put failed
    assert LINE not in w.store.cards and w.store.attempts.get(LINE, []) == []
    assert w.journal == ["line_state"]  # nothing stored, nothing applied


async def test_use_case_image_store_down_on_patch_keeps_the_old_card():
    w = world()
    await active_card(w, last="Lovelace")
    before = w.store.cards[LINE]
    w.cdn.unavailable = True

    await refused(errors.IMAGE_STORE_UNAVAILABLE, w.cards.update(KEY, LINE, UpdateRequest(image_url=IMAGE_2)))
    # Echoing our own CDN URL needs the store too (to check the blob exists): the same answer.
    own = f"{CDN_PREFIX}{'a' * 64}.jpg"
    await refused(errors.IMAGE_STORE_UNAVAILABLE, w.cards.update(KEY, LINE, UpdateRequest(image_url=own)))

    assert w.store.cards[LINE] == before
    w.cdn.unavailable = False
    changed = await w.cards.update(KEY, LINE, UpdateRequest(image_url=IMAGE_2))
    assert changed.card["image_url"].startswith(CDN_PREFIX)
