"""The dashboard's page of lines, on a real SQLite database: order, keyset pages, search,
and a plan that starts at the page instead of reading every row before it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

from contactcard import errors
from contactcard.admin import LineFilter
from contactcard.bootstrap import admin_for
from contactcard.errors import ApiError
from contactcard.store.db import connect, migrate
from contactcard.store.lines import line_cards_query
from contactcard.store.schema import cards, device_displays

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def world(tmp_path):
    database = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(database)
    admin = admin_for(database)
    yield database, admin
    database.dispose()


def test_pages_follow_number_order_from_the_last_number_shown(world):
    database, admin = world
    ada = admin.create_partner("Ada")
    bob = admin.create_partner("Bob")
    numbers = [f"+1555000{i:04d}" for i in range(7)]
    for i, number in enumerate(numbers):
        admin.add_line((ada if i % 2 else bob).id, number)
    with database.writer.begin() as conn:
        conn.execute(
            insert(cards).values(
                phone_number=numbers[3],
                id="c3",
                first_name="Card",
                last_name="Three",
                image_blob="b.jpg",
                image_source_url=None,
                is_active=False,
                ever_active=True,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(
            insert(device_displays).values(
                phone_number=numbers[3], first_name="Shown", last_name=None, image_url=None, applies=2, applied_at=NOW
            )
        )
    first = admin.line_cards(limit=3)
    second = admin.line_cards(after=first[-1].phone_number, limit=3)
    third = admin.line_cards(after=second[-1].phone_number, limit=3)
    assert [r.phone_number for r in first + second + third] == numbers
    # Back from the third page's first number: the lines just before it, nearest first.
    assert [r.phone_number for r in admin.line_cards(before=third[0].phone_number, limit=2)] == numbers[5:3:-1]
    row = second[0]
    assert (row.phone_number, row.partner_name, row.first_name, row.last_name, row.image_blob) == (
        numbers[3],
        "Ada",
        "Card",
        "Three",
        "b.jpg",
    )
    assert (row.is_active, row.shown_first_name, row.applied_at is not None) == (False, "Shown", True)
    assert first[0].first_name is None and first[0].applied_at is None  # a line without a card
    assert [r.phone_number for r in admin.line_cards(LineFilter(partner_id=ada.id))] == numbers[1::2]


def test_search_by_the_start_of_a_number(world):
    _, admin = world
    partner = admin.create_partner("P")
    for number in ("+15550001", "+155500012", "+15550002", "+4420000"):
        admin.add_line(partner.id, number)
    assert [r.phone_number for r in admin.line_cards(LineFilter(number_prefix="+1555000"))] == [
        "+15550001",
        "+155500012",
        "+15550002",
    ]
    # Without its plus, as people type it.
    assert [r.phone_number for r in admin.line_cards(LineFilter(number_prefix="15550001"))] == [
        "+15550001",
        "+155500012",
    ]
    for bad in ("%", "_", "+1%", "1 OR 1", "+١٢"):
        with pytest.raises(ApiError) as refused:
            admin.line_cards(LineFilter(number_prefix=bad))
        assert refused.value.error is errors.BAD_VALUE


@pytest.mark.parametrize(("page", "seek"), [({"after": "+15550005000"}, ">"), ({"before": "+15550005000"}, "<")])
def test_the_plan_seeks_to_the_page_start_by_the_primary_key(world, page, seek):
    database, _ = world
    query = line_cards_query(limit=51, **page)
    with database.reader.connect() as conn:
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    # A SEARCH on the key (not a SCAN of the table) and no sort: the rows come in index order.
    assert f"SEARCH lines USING PRIMARY KEY (phone_number{seek}?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_a_count_told_where_to_stop_reads_no_further(world):
    _, admin = world
    ada = admin.create_partner("Ada")
    for i in range(12):
        admin.add_line(ada.id, f"+1555100{i:04d}")
    assert admin.line_count() == 12
    assert admin.line_count(at_most=20) == 12  # below the bound: the count itself
    assert admin.line_count(at_most=5) == 6  # past it: one more than the bound, "more than 5"
    assert admin.line_count(LineFilter(number_prefix="+15551000000"), at_most=5) == 1
