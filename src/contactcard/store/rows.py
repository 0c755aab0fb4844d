"""The row code the operator's records share: one read or one change, each in a
transaction of its own on the database's engines (`db.py`), off the hot path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Executable, func, select

from contactcard.store.db import Database

T = TypeVar("T")


def read(database: Database, query: Executable) -> Sequence[Any]:
    """Every row `query` finds (SQLAlchemy's `Row`s: tuples whose columns are also attributes)."""
    with database.reader.connect() as conn:
        return conn.execute(query).all()


def read_as(database: Database, query: Executable, row: Callable[[Any], T]) -> list[T]:
    """Every row `query` finds, each made a value by `row`."""
    return [row(r) for r in read(database, query)]


def scalar(database: Database, query: Executable) -> Any:
    """The first column of the first row `query` finds; None when it finds none."""
    with database.reader.connect() as conn:
        return conn.execute(query).scalar()


def count(table: Any, *where: Any) -> Any:
    """How many rows of `table` match, as a subquery (several counts read in one statement)."""
    return select(func.count()).select_from(table).where(*where).scalar_subquery()


def changed(database: Database, statement: Executable) -> bool:
    """Run one UPDATE or DELETE in its own transaction: whether it changed a row."""
    with database.writer.begin() as conn:
        return bool(conn.execute(statement).rowcount)


def utc(at: datetime | None) -> datetime | None:
    """SQLite hands back times without their zone; they were stored in UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
