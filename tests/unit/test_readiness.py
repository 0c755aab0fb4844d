"""`Readiness` (what `/readyz` answers) against a real SQLite file, a PostgreSQL URL where
nothing listens, and image stores that fail or hang."""

from __future__ import annotations

import threading
import time

import anyio
import pytest
from sqlalchemy import text

from contactcard.readiness import Readiness
from contactcard.store.db import HEAD_REVISION, connect, migrate
from tests.fakes import FakeBlobStore
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio


class HangingStore(FakeBlobStore):
    """A store whose ping blocks until released, as a connection to a dead host would."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.pings = 0

    def ping(self) -> None:
        self.pings += 1
        self.release.wait(30)


@pytest.fixture
def database(tmp_path):
    database = connect(f"sqlite:///{tmp_path / 'ready.db'}", timeout=1)
    migrate(database)
    yield database
    database.dispose()


async def test_ready_when_database_and_store_answer(database):
    assert await Readiness(database, FakeBlobStore(), timeout=1).check() == {"database": "ok", "image_store": "ok"}


async def test_a_schema_behind_the_code_is_not_ready(database):
    with database.writer.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    checks = await Readiness(database, FakeBlobStore(), timeout=1).check()
    assert checks["database"] == f"schema at 0000, this server needs {HEAD_REVISION}"
    assert checks["image_store"] == "ok"


@pytest.mark.timed  # a 2 s bound over a 1 s timeout
async def test_an_unreachable_database_is_not_ready_within_the_bound():
    nowhere = connect(f"postgresql+psycopg://root@127.0.0.1:{free_port()}/none", timeout=1)
    try:
        started = time.monotonic()
        checks = await Readiness(nowhere, FakeBlobStore(), timeout=1.5).check()
        assert time.monotonic() - started < 2.0
    finally:
        nowhere.dispose()
    assert checks["database"].startswith(("unreachable", "no answer")), checks


async def test_a_store_that_fails_is_not_ready(database):
    store = FakeBlobStore()
    store.unavailable = True
    checks = await Readiness(database, store, timeout=1).check()
    assert checks == {"database": "ok", "image_store": "unreachable (store switched off by the test)"}


async def test_a_hanging_store_answers_within_the_bound_and_is_not_asked_twice(database):
    store = HangingStore()
    readiness = Readiness(database, store, timeout=0.3)
    try:
        with anyio.fail_after(2):
            first = await readiness.check()
            second = await readiness.check()
        assert first["image_store"] == "no answer within 0.3 s"
        assert second["image_store"] == "no answer yet from the previous check"
        assert store.pings == 1  # the hung probe was not started again
        assert first["database"] == second["database"] == "ok"
    finally:
        store.release.set()
    states = []
    with anyio.fail_after(2):
        for _ in range(100):  # the released probe needs a moment to return from its thread
            states.append((await readiness.check())["image_store"])
            if states[-1] == "ok":
                break
            await anyio.sleep(0.01)
    assert states[-1] == "ok", states
    assert store.pings == 2
