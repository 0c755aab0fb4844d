"""Migrations create exactly the tables the code uses, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from contactcard.store.db import HEAD_REVISION, _upgrade, connect, current_revision, migrate
from contactcard.store.schema import metadata


def _drift(url: str) -> list:
    """Run the Alembic migrations (as on an existing database) and compare with the models."""
    database = connect(url)
    try:
        with database.writer.connect() as connection:
            _upgrade(database, connection)
        migrate(database)  # idempotent: a second start changes nothing
        with database.writer.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        database.dispose()


def _columns(url: str) -> dict:
    database = connect(url)
    try:
        with database.reader.connect() as conn:
            found = inspect(conn)
            return {
                table: (
                    sorted((c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)),
                    sorted(str(i["column_names"]) + str(i["unique"]) for i in found.get_indexes(table)),
                    sorted(str(u["column_names"]) for u in found.get_unique_constraints(table)),
                    sorted(
                        str(f["referred_table"]) + str(f["constrained_columns"]) for f in found.get_foreign_keys(table)
                    ),
                )
                for table in found.get_table_names()
            }
    finally:
        database.dispose()


def test_sqlite_schema_matches_models(tmp_path):
    assert _drift(f"sqlite:///{tmp_path / 'm.db'}") == []


def test_a_new_database_gets_exactly_the_migrated_schema(tmp_path):
    migrated, created = f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'created.db'}"
    _drift(migrated)
    database = connect(created)
    try:
        migrate(database)  # empty: created at head without Alembic
        assert current_revision(database) == HEAD_REVISION
    finally:
        database.dispose()
    assert _columns(created) == _columns(migrated)
    assert _triggers(created) == _triggers(migrated)
    # Nine: insert, update and delete on each of the three tables a GET reads.
    assert len(_triggers(created)) == 9


def _triggers(url: str) -> list[tuple[str, str]]:
    """SQLite's triggers (the GET memo's change count, store/schema.py), by name and SQL."""
    database = connect(url)
    try:
        with database.reader.connect() as conn:
            rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            return [(name, " ".join(sql.split())) for name, sql in rows]
    finally:
        database.dispose()


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
