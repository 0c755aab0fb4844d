"""Migrations create exactly the tables the code uses, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from contactcard.store.db import connect, migrate
from contactcard.store.schema import metadata


def _drift(url: str) -> list:
    database = connect(url)
    try:
        migrate(database)
        migrate(database)  # idempotent: a second start changes nothing
        with database.writer.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        database.dispose()


def test_sqlite_schema_matches_models(tmp_path):
    assert _drift(f"sqlite:///{tmp_path / 'm.db'}") == []


def test_postgres_schema_matches_models(farm, postgres_url):
    import pytest

    if postgres_url is None:
        pytest.skip("PostgreSQL tests need CONTACTCARD_TEST_POSTGRES_URL (CI sets it)")
    assert _drift(postgres_url) == []


def test_head_revision_constant_matches_alembic():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from contactcard.store.db import HEAD_REVISION, MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
