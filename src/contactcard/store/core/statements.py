"""What the store hands the core: statements with `:name` placeholders, grouped into
transactions, and the lines whose GET answers a transaction may change."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Row = tuple[Any, ...]
Params = dict[str, Any]


@dataclass(frozen=True)
class Stmt:
    """One SQL statement with `:name` placeholders; `rows` when its answer is wanted."""

    sql: str
    params: Params
    rows: bool = False


# A transaction: statements that never depend on each other's results (conditions live in
# the SQL), which is what lets the writer send a whole batch of them at once.
Tx = Sequence[Stmt]

Lines = frozenset[str] | None  # the lines whose GET answers a transaction may change; None: any
NO_LINES: Lines = frozenset()  # a transaction no GET answer depends on (webhooks, the device)


_PLACEHOLDER = re.compile(r"(?<![:\w]):(\w+)")


@functools.cache  # the statements are a fixed set: each is converted once per process
def pyformat(sql: str) -> str:
    """`:name` placeholders as psycopg's `%(name)s` (the SQL itself has no `%`)."""
    return _PLACEHOLDER.sub(r"%(\1)s", sql)


def sqlite_value(value: object) -> object:
    # The text form SQLAlchemy's SQLite dialect stores, so the admin side reads it back.
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
