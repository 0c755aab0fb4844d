"""Runtime controls in the use cases: a write obeys a change made anywhere at once, and
reads the controls' row only when the version it sees with the line's state moved."""

from __future__ import annotations

import dataclasses

import pytest

from contactcard import errors
from contactcard.contract import ImageRules, SetupRequest, UpdateRequest
from contactcard.controls import Controls, LiveControls, Overrides
from contactcard.errors import ApiError
from contactcard.service import ContactCards, Policy
from tests.fakes import CDN_PREFIX, FakeBlobStore, FakeDevice, FakeFetcher, FakeLocks, FakeStore

pytestmark = pytest.mark.anyio

KEY, LINE = "key-hash", "+15550000001"


class SharedRow:
    """The database's controls row, as another process would change it."""

    def __init__(self) -> None:
        self.overrides = Overrides()
        self.loads = 0

    def load(self) -> Overrides:
        self.loads += 1
        return self.overrides

    def change(self, **values: object) -> None:
        self.overrides = dataclasses.replace(self.overrides, version=self.overrides.version + 1, **values)


class VersionedStore(FakeStore):
    """The fake store, answering the row's version with the line's state as the SQL does."""

    def __init__(self, row: SharedRow) -> None:
        super().__init__(CDN_PREFIX)
        self.row = row

    async def line_state(self, key_hash, phone, budget_since):
        state = await super().line_state(key_hash, phone, budget_since)
        return dataclasses.replace(state, controls_version=self.row.overrides.version)


def cards_on(row: SharedRow, now: list[float]) -> tuple[ContactCards, LiveControls, VersionedStore]:
    store = VersionedStore(row)
    store.add_partner("partner", KEY, [LINE])
    controls = LiveControls(Controls(0, "seed", 3, 600, 100), row.load)
    controls.reload()
    # The fake's clock: real time replaced by a list the test moves, plus the row's offset.
    controls.time = lambda: now[0] + controls.current.clock_offset  # type: ignore[method-assign]
    cards = ContactCards(
        reads=store,
        writes=store,
        locks=FakeLocks(),
        device=FakeDevice([]),
        cdn=FakeBlobStore(),
        fetcher=FakeFetcher(),
        rules=ImageRules(allow_http=False, own_cdn_prefix=CDN_PREFIX),
        policy=Policy(profile="seed", write_budget=3, write_budget_window=600),
        controls=controls,
    )
    return cards, controls, store


async def test_a_write_obeys_a_budget_changed_elsewhere_at_once():
    row, now = SharedRow(), [1_000_000.0]
    cards, controls, _ = cards_on(row, now)
    await cards.setup(KEY, SetupRequest(LINE, "Ada", None, None))
    row.change(write_budget=1)  # another process: nothing told this one
    with pytest.raises(ApiError) as refused:
        await cards.update(KEY, LINE, UpdateRequest(first_name="Grace"))
    assert refused.value.error is errors.RATE_LIMITED
    assert refused.value.retry_after == 600
    assert controls.current.write_budget == 1


async def test_a_moved_clock_ends_the_window_and_shortens_retry_after():
    row, now = SharedRow(), [1_000_000.0]
    cards, _, _ = cards_on(row, now)
    row.change(write_budget=1)
    await cards.setup(KEY, SetupRequest(LINE, "Ada", None, None))
    row.change(clock_offset=590.0)
    with pytest.raises(ApiError) as refused:
        await cards.update(KEY, LINE, UpdateRequest(first_name="Grace"))
    assert refused.value.retry_after == 10
    row.change(clock_offset=600.0)
    written = await cards.update(KEY, LINE, UpdateRequest(first_name="Grace"))
    assert written.card["first_name"] == "Grace"


async def test_the_row_is_read_only_when_its_version_moved():
    row, now = SharedRow(), [1_000_000.0]
    cards, _, _ = cards_on(row, now)
    before = row.loads
    await cards.setup(KEY, SetupRequest(LINE, "Ada", None, None))
    await cards.update(KEY, LINE, UpdateRequest(first_name="Grace"))
    assert row.loads == before
    row.change(profile="hosted")
    await cards.update(KEY, LINE, UpdateRequest(first_name="Edith"))
    assert row.loads == before + 1
