"""Engines and migrations for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from contactcard.store.schema import metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The newest migration; a test keeps it equal to Alembic's head. Knowing it lets a start on
# an up-to-date database skip loading Alembic at all.
HEAD_REVISION = "0006_webhook_line_order"


@dataclass
class Database:
    """The operator side's engines (admin, CLI, migrations); the API's writes go through
    `writer.py` and its reads through `reads.py`.

    `reader` reads; `writer` opens transactions that may write.

    On SQLite the writer begins with `BEGIN IMMEDIATE`, so a write transaction takes the
    file's write lock up front (waiting on `busy_timeout`) instead of failing half-way when
    it upgrades from reading. On PostgreSQL both are the same engine.
    """

    url: str
    reader: Engine
    writer: Engine

    @property
    def dialect(self) -> str:
        return self.writer.dialect.name

    def dispose(self) -> None:
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()


def _sqlite_engine(url: str, *, immediate: bool, timeout: float) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Own the transactions (pysqlite's implicit BEGIN would defer the write lock).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a write the server acknowledged survives a crash of the machine too.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    if immediate:

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    # The reader runs each statement in SQLite's autocommit mode: a single SELECT is its
    # own consistent snapshot, and the hot path saves a round trip for BEGIN.
    return engine


def connect(url: str, *, timeout: float = 30.0) -> Database:
    """`timeout`: how long a statement waits for a locked SQLite file, or a connection to
    PostgreSQL, before failing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return Database(
            url,
            _sqlite_engine(url, immediate=False, timeout=timeout),
            _sqlite_engine(url, immediate=True, timeout=timeout),
        )
    # Operator requests only: one connection kept, a few more for a burst of admin calls.
    engine = create_engine(
        url,
        pool_size=1,
        max_overflow=4,
        pool_pre_ping=True,
        pool_timeout=timeout,
        connect_args={"connect_timeout": max(1, round(timeout))},
    )
    return Database(url, engine, engine)


def current_revision(database: Database) -> str | None:
    try:
        with database.reader.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no table yet: an empty database
        return None


def schema_state(database: Database) -> str:
    """ "ok" when the database answers at the schema this code expects; else what is wrong
    (for `/readyz`; blocking)."""
    try:
        with database.reader.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        return f"unreachable ({type(exc.__cause__ or exc).__name__})"
    if revision != HEAD_REVISION:
        return f"schema at {revision}, this server needs {HEAD_REVISION}"
    return "ok"


def migrate(database: Database) -> None:
    """Bring the schema to the newest migration (idempotent; safe at every start)."""
    if current_revision(database) == HEAD_REVISION:
        return
    with database.writer.connect() as connection:
        if database.dialect == "postgresql":
            # Several processes may start at once against one database.
            connection.exec_driver_sql("SELECT pg_advisory_lock(7212001)")
            connection.commit()
        try:
            if current_revision(database) == HEAD_REVISION:  # another process just did it
                return
            empty = not inspect(connection).get_table_names()
            connection.rollback()
            if empty:
                _create_at_head(connection)
            else:
                _upgrade(database, connection)
        finally:
            if database.dialect == "postgresql":
                connection.exec_driver_sql("SELECT pg_advisory_unlock(7212001)")
                connection.commit()


def _create_at_head(connection: Connection) -> None:
    """An empty database gets the newest schema at once, stamped as migrated: the same
    tables the migrations build (a test compares them), without loading Alembic."""
    metadata.create_all(connection)
    connection.execute(
        text(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
    )
    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": HEAD_REVISION})
    connection.commit()


def _upgrade(database: Database, connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    connection.commit()
