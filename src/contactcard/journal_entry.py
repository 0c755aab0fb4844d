"""One journaled request (`Entry`), the query that finds them, and a stored entry's columns.

Plain values, beneath both the journal (`journal.py`, which records and reads them) and
its store (`store/journal.py`, which keeps them as rows), so the store need not import the
journal above it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    trace_id: str
    at: float  # unix seconds on the server's clock
    method: str
    path: str
    phone_number: str | None
    status: int
    error_code: int | None
    duration_ms: float
    retry_count: int | None
    user_agent: str | None
    id: int = 0  # the row's id once stored; grows with time


@dataclass(frozen=True)
class Query:
    trace_id: str | None = None
    phone_number: str | None = None
    status: int | None = None
    since: float | None = None  # unix seconds, on the server's clock
    until: float | None = None
    after_id: int | None = None  # for following: only newer entries, oldest first
    limit: int = 100
    # The dashboard's filters and paging (after `limit`: callers build Query positionally).
    before_id: int | None = None  # the page of older entries: the newest `limit` below this id
    method: str | None = None
    path_prefix: str | None = None
    status_min: int | None = None  # a class of statuses, e.g. 400 to 499
    status_max: int | None = None
    api_only: bool = False  # only the API's own paths (not a scanner's /wp-login.php)
    # Any of these numbers (a partner's lines: the journal keeps no partner of its own).
    phone_numbers: tuple[str, ...] | None = None


# The API's paths, for `Query.api_only`.
API_PREFIXES = ("/v3/", "/api/partner/v3/")


# A stored entry's columns, in `Entry`'s order (without the id).
Row = tuple[str, float, str, str, str | None, int, int | None, float, int | None, str | None]
