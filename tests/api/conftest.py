"""Fixtures the API tests share: a webhook receiver, server processes stopped at teardown,
and a database of the test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.databases import own_database
from tests.support.processes import ServerProcess, stop_all
from tests.support.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1, for this test alone."""
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    """Every process a test registers here is stopped (or killed) at teardown, pass or fail."""
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        stop_all(started)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, postgres_url) -> Iterator[str | None]:
    """A database of the test's own (None: SQLite in the server's data folder), so that no
    other server's delivery worker claims its deliveries."""
    with own_database(request.param, postgres_url) as url:
        yield url
