"""The request journal: the newest requests, filtered by trace id, number and status, and a
live view of new ones as server-sent events (`static/live.js` adds them to the table)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from contactcard import errors
from contactcard.admin import Admin
from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, dashboard, off_loop, render, signed_in
from contactcard.errors import ApiError
from contactcard.journal import Entry, Query
from contactcard.kit import Kit

NAV = Nav("Requests", "/requests")
PAGE_SIZE = 100
# The live view reads the journal this often. Each read first stores this process's
# buffered requests (so a request shows within a second); on PostgreSQL that commit also
# empties the GET memo, which is why it is a second and not less.
POLL_SECONDS = 1.0
# One stream lasts this long, then ends; the browser's EventSource connects again by
# itself (after RECONNECT_MS, sending the last id it saw), so nothing is missed, and no
# forgotten tab holds a connection and a worker thread's time for ever.
STREAM_SECONDS = 120.0
RECONNECT_MS = 1000
# A comment line this often while nothing happens: proxies keep the connection, and a
# client that left is noticed.
KEEPALIVE_SECONDS = 15.0
# Every this many quiet polls, whether the journal was emptied (a reset): ids start again.
RESET_CHECK_POLLS = 5

_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
_ID = re.compile(r"[0-9a-f]{32}")
# A partner filter reads the partner's numbers into the query (the journal keeps no partner,
# and on SQLite it lives in a file of its own, so it cannot be joined with the lines).
PARTNER_LINES_MAX = 1000
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_STATUS = re.compile(r"[1-5](?:[0-9]{2}|xx)")  # 429, or a class: 4xx
_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS")
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,199}")


def _filters(request: Request) -> tuple[Query, dict[str, str]]:
    """The journal query the page's GET form asks for, and the filters as typed (for the
    form and the live view's URL); ApiError names the first field that is not right."""
    names = ("trace_id", "number", "status", "method", "path", "api", "partner")
    given = {name: request.query_params.get(name, "").strip() for name in names}
    trace_id, number, status = given["trace_id"], given["number"], given["status"].lower()
    method, path = given["method"].upper(), given["path"]
    # A number typed in the query string arrives with its + as a space, as in the API.
    if number.startswith(" "):
        number = "+" + number[1:]
    if trace_id and not _TRACE_ID.fullmatch(trace_id):
        raise ApiError(errors.BAD_VALUE, "a trace id is 32 hexadecimal digits, as in the x-trace-id header")
    if number and not _E164.fullmatch(number):
        raise ApiError(errors.BAD_VALUE, "the number must be in E.164 form, e.g. +15551234567")
    if status and not _STATUS.fullmatch(status):
        raise ApiError(errors.BAD_VALUE, "the status must be an HTTP status from 100 to 599, or a class such as 4xx")
    if method and method not in _METHODS:
        raise ApiError(errors.BAD_VALUE, f"the method must be one of {', '.join(_METHODS)}")
    if path and not _PATH.fullmatch(path):
        raise ApiError(errors.BAD_VALUE, "the path must start with / (e.g. /v3/contact_card)")
    exact = int(status) if status and not status.endswith("xx") else None
    lowest = int(status[0]) * 100 if status.endswith("xx") else None
    before = request.query_params.get("before", "")
    query = Query(
        trace_id=trace_id.lower() or None,
        phone_number=number or None,
        status=exact,
        limit=PAGE_SIZE,
        before_id=int(before) if before.isascii() and before.isdigit() and len(before) < 19 else None,
        method=method or None,
        path_prefix=path or None,
        status_min=lowest,
        status_max=lowest + 99 if lowest is not None else None,
        api_only=given["api"] == "on",
    )
    if given["partner"] and not _ID.fullmatch(given["partner"]):
        raise ApiError(errors.BAD_VALUE, "a partner id is 32 hexadecimal digits")
    given["status"], given["method"] = status, method
    return query, {name: value for name, value in given.items() if value}


async def _with_partner(admin: Admin, query: Query, filters: dict[str, str]) -> tuple[Query, dict[str, str]]:
    """The query narrowed to the numbers of the partner filtered on, if one is."""
    partner = filters.get("partner")
    if not partner:
        return query, filters
    numbers = tuple(line.phone_number for line in await off_loop(admin.list_lines, partner))
    if len(numbers) > PARTNER_LINES_MAX:
        raise ApiError(errors.BAD_VALUE, f"that partner has over {PARTNER_LINES_MAX} lines: filter by number instead")
    return replace(query, phone_numbers=numbers), filters


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def row(entry: Entry) -> dict[str, Any]:
    """One journal entry as the table shows it: the same fields for the page and the stream."""
    return {
        "id": entry.id,
        "at": _when(entry.at),
        "method": entry.method,
        "path": entry.path,
        "phone_number": entry.phone_number or "",
        "status": entry.status,
        "error_code": "" if entry.error_code is None else str(entry.error_code),
        "duration_ms": f"{entry.duration_ms:.1f}",
        "retry_count": "" if entry.retry_count is None else str(entry.retry_count),
        "user_agent": entry.user_agent or "",
        "trace_id": entry.trace_id,
    }


@signed_in
async def requests_page(request: Request, session: Session) -> Response:
    kit = dashboard(request).kit
    error, status = None, 200
    entries: list[Entry] = []
    filters: dict[str, str] = {}
    query = Query()
    board = dashboard(request)
    try:
        query, filters = await _with_partner(board.admin, *_filters(request))
        entries = await off_loop(kit.requests, query)
    except ApiError as exc:
        error, status = exc.reason, 400
    journal_on = (await off_loop(kit.settings)).journal_size > 0
    rows = [row(entry) for entry in reversed(entries)]  # newest first
    return render(
        request,
        "requests.html",
        session,
        status=status,
        rows=rows,
        filters=filters,
        # The live view starts after the newest entry shown, with the same filters; an older
        # page has no live view (new requests belong on the first).
        after=max((entry.id for entry in entries), default=0),
        paged=query.before_id is not None if error is None else False,
        older=min((entry.id for entry in entries), default=0) if len(entries) == PAGE_SIZE else None,
        journal_on=journal_on,
        methods=_METHODS,
        partners=await off_loop(board.admin.list_partners),
        error=error,
    )


def _event(entry: Entry) -> bytes:
    return b"id: %d\nevent: request\ndata: %s\n\n" % (entry.id, orjson.dumps(row(entry)))


async def follow(kit: Kit, query: Query, after: int, *, lasting: float = STREAM_SECONDS) -> AsyncIterator[bytes]:
    """New journal entries matching `query`, after the id `after`, for `lasting` seconds."""
    yield b"retry: %d\n\n" % RECONNECT_MS
    deadline = anyio.current_time() + lasting
    quiet_since = anyio.current_time()
    quiet_polls = 0
    while anyio.current_time() < deadline:
        entries = await off_loop(kit.requests, replace(query, after_id=after))
        for entry in entries:
            yield _event(entry)
            after = entry.id
        if entries:
            quiet_since, quiet_polls = anyio.current_time(), 0
        else:
            quiet_polls += 1
            if quiet_polls % RESET_CHECK_POLLS == 0:
                newest = await off_loop(kit.requests, Query(limit=1))
                if not newest or newest[0].id < after:
                    after = 0  # the journal was reset and counts again from 1
            if anyio.current_time() - quiet_since >= KEEPALIVE_SECONDS:
                quiet_since = anyio.current_time()
                yield b": nothing new\n\n"
        await anyio.sleep(POLL_SECONDS)


def _after(request: Request) -> int:
    # A reconnecting EventSource names the last event it saw; else the page's newest row.
    given = request.headers.get("last-event-id") or request.query_params.get("after", "")
    return int(given) if given.isascii() and given.isdigit() and len(given) < 19 else 0


@signed_in
async def live(request: Request, session: Session) -> Response:
    kit = dashboard(request).kit
    try:
        query, _ = await _with_partner(dashboard(request).admin, *_filters(request))
    except ApiError as exc:
        return Response(exc.reason, status_code=400, media_type="text/plain")
    query = replace(query, before_id=None)
    if kit.journal is None:
        return Response("no request journal in this process", status_code=404, media_type="text/plain")
    return StreamingResponse(
        follow(kit, query, _after(request)),
        media_type="text/event-stream",
        # A proxy that buffers (nginx does by default) would hold the events back.
        headers={"x-accel-buffering": "no"},
    )


def routes() -> list[Route]:
    return [
        Route("/requests", requests_page, methods=["GET"]),
        Route("/requests/live", live, methods=["GET"]),
    ]
