"""Engines and migrations for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from contactcard.store.core import StoreUnavailable
from contactcard.store.core.deadlines import WATCHDOG, connection_options
from contactcard.store.schema import metadata

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The newest migration; a test keeps it equal to Alembic's head. Knowing it lets a start on
# an up-to-date database skip loading Alembic at all.
HEAD_REVISION = "0008_webhook_line_order"


@dataclass
class Database:
    """The operator side's engines (admin, CLI, migrations); the API's writes go through
    `core/writer.py` and its reads through `reads.py`.

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
        pool_timeout=timeout,
        connect_args=connection_options(timeout),
    )
    _bound_every_call(engine, timeout)
    return Database(url, engine, engine)


# Connections running what may rightly take long (migrations): no deadline while here.
_UNBOUNDED: weakref.WeakSet[Any] = weakref.WeakSet()


@contextmanager
def unbounded(connection: Connection) -> Iterator[None]:
    """No deadline on `connection`'s calls for the body."""
    dbapi_connection = connection.connection.dbapi_connection
    if connection.dialect.name != "postgresql":  # only PostgreSQL's calls have deadlines
        yield
        return
    _UNBOUNDED.add(dbapi_connection)
    try:
        yield
    finally:
        _UNBOUNDED.discard(dbapi_connection)


def _bound_every_call(engine: Engine, timeout: float) -> None:
    """Every round trip of the engine's connections (the check at checkout, each
    statement, commit, rollback, the reset at checkin) is abandoned past `timeout`
    (`core/deadlines.py`): a frozen server costs an operator request `timeout`, not forever."""

    def arm(info: dict[Any, Any], dbapi_connection: Any) -> None:
        disarm(info)
        if dbapi_connection is not None and dbapi_connection not in _UNBOUNDED:
            info["deadline"] = WATCHDOG.arm(dbapi_connection, timeout)

    def disarm(info: dict[Any, Any]) -> bool:
        token = info.pop("deadline", None)
        return token is None or WATCHDOG.disarm(token)

    def bounded(call: Callable[[Any], None]) -> Callable[[Any], None]:
        # Commit and rollback (the reset at checkin too) have no event after them: the
        # dialect's own calls are wrapped instead, so the deadline ends with the call.
        def run(proxied: Any) -> None:
            dbapi_connection = getattr(proxied, "dbapi_connection", proxied)  # the pool's proxy, or not
            if dbapi_connection in _UNBOUNDED:
                call(proxied)
                return
            token = WATCHDOG.arm(dbapi_connection, timeout)
            try:
                call(proxied)
            finally:
                WATCHDOG.disarm(token)

        return run

    dialect: Any = engine.dialect
    dialect.do_commit = bounded(dialect.do_commit)
    dialect.do_rollback = bounded(dialect.do_rollback)

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: object) -> None:
        # In place of `pool_pre_ping`, whose check nothing would bound.
        arm(record.info, dbapi_connection)
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not disarm(record.info):
            raise StoreUnavailable("no answer from the database in time")
        if not alive:
            raise DisconnectionError("the connection was closed")  # the pool connects anew

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        disarm(record.info)

    def _before(connection: Connection, *_: object) -> None:
        arm(connection.info, connection.connection.dbapi_connection)

    def _after(connection: Connection, *_: object) -> None:
        disarm(connection.info)

    event.listen(engine, "before_cursor_execute", _before)
    event.listen(engine, "after_cursor_execute", _after)

    @event.listens_for(engine, "handle_error")
    def _failed(context: ExceptionContext) -> None:
        if context.connection is not None:
            disarm(context.connection.info)


# Advisory-lock keys: the schema's migration, and a process's whole start-up.
_MIGRATION_LOCK = 7212001
_STARTUP_LOCK = 7212002
_STARTUP_WAIT = 300.0  # seconds a start waits for other processes' starts


@contextmanager
def startup_lock(url: str, *, timeout: float) -> Iterator[None]:
    """Held around a process's start-up writes (migrations, the demo partner and its key,
    a seed) on PostgreSQL, so that processes starting at the same moment make them one
    after another. Nothing on SQLite: one process writes a file at start."""
    if make_url(url).get_backend_name() == "sqlite":
        yield
        return
    database = connect(url, timeout=timeout)
    try:
        with database.writer.connect() as connection:
            # Asked again and again rather than waited for in one statement: each ask is
            # bounded like any call, so a database that hangs fails the start instead of
            # holding it forever; another process's start is waited for.
            waited_until = time.monotonic() + _STARTUP_WAIT
            while not connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({_STARTUP_LOCK})").scalar():
                connection.commit()
                if time.monotonic() > waited_until:
                    raise RuntimeError(f"another process held the start-up lock for {_STARTUP_WAIT:.0f} s")
                time.sleep(0.05)
            connection.commit()
            try:
                yield
            finally:
                # (Released by the server too, if this process dies holding it.)
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_STARTUP_LOCK})")
                connection.commit()
    finally:
        database.dispose()


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
    # A migration's statements may take long on a big database: no deadline for them.
    with database.writer.connect() as connection, unbounded(connection):
        if database.dialect == "postgresql":
            # Several processes may start at once against one database.
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})")
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
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})")
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
