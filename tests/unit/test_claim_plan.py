"""On PostgreSQL a claim's transaction turns bitmap scans off before the claim
(store/webhooks.py `_claim_plan`): the claim wants the first due rows in `next_at` order,
which an index scan reads and stops at, and with statistics lagging behind a backlog the
planner picked a bitmap scan of every pending row (seen in a server: 23 ms a claim at
20,000 pending rows against 3 ms guided). Not reproduced here from statistics alone, so
this holds the guard itself: it is in force for the claim, and gone after the transaction."""

from __future__ import annotations

import psycopg
import pytest

from contactcard.bootstrap import _conninfo
from contactcard.store.webhooks import WebhookStore
from tests.support.databases import own_database


def test_a_claims_transaction_turns_bitmap_scans_off_and_only_for_itself(postgres_url):
    if postgres_url is None:
        pytest.skip("PostgreSQL tests need CONTACTCARD_TEST_POSTGRES_URL (CI sets it)")
    assert WebhookStore(None, dialect="sqlite")._claim_plan() == []  # type: ignore[arg-type]
    with own_database("postgres", postgres_url) as url:
        assert url is not None
        with psycopg.connect(_conninfo(url), autocommit=True) as db:
            with db.transaction():
                for stmt in WebhookStore(None, dialect="postgresql")._claim_plan():  # type: ignore[arg-type]
                    db.execute(stmt.sql)
                assert db.execute("SHOW enable_bitmapscan").fetchone() == ("off",)
            assert db.execute("SHOW enable_bitmapscan").fetchone() == ("on",)
