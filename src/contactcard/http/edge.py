"""Pure ASGI middleware at the edge of the app.

It gives every request a trace id (answered in `x-trace-id` on every response, CDN and
errors included), refuses bodies over the limit as they arrive (a chunked body has no
Content-Length), and turns any exception that escapes into `500 3006` with no detail.
It also sees every answer go out, so it counts requests for the metrics, writes the
request's log line (status, envelope error code, duration, what the use case noted) and
hands the request to the request journal, all from one look at the answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcard import errors
from contactcard.errors import ApiError
from contactcard.http.envelope import TRACE_HEADER, error_response
from contactcard.journal import UNJOURNALED, Journal
from contactcard.logs import open_request
from contactcard.metrics import Metrics, route_of

log = logging.getLogger("contactcard")
request_log = logging.getLogger("contactcard.request")
_QUIET_METHODS = ("GET", "HEAD")


class BodyTooLarge(Exception):
    """Raised from `receive` when a body grows past the limit."""


class Edge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        docs_base_url: str,
        metrics: Metrics | None = None,
        log_every_request: bool = False,
        journal: Journal | None = None,
    ) -> None:
        self.app = app
        self.journal = journal
        self.max_body = max_body
        self.docs_base_url = docs_base_url
        self.metrics = metrics
        self.log_every_request = log_every_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        trace_id = os.urandom(16).hex()  # 128 random bits; a fifth of uuid4().hex's cost
        scope.setdefault("state", {})["trace_id"] = trace_id
        trace_header = (TRACE_HEADER.encode(), trace_id.encode())
        status = 0  # 0 until the answer starts
        code = 0
        noted = open_request(trace_id)
        # One pass over the headers for what the edge needs: the declared length, and the
        # two the journal keeps. Holding the header list itself in the journal's buffer
        # until a flush kept a thousand requests' objects alive and cost GETs ~5 %.
        declared = retries = agent = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"user-agent":
                agent = value
            elif name == b"x-stainless-retry-count":
                retries = value

        async def send_traced(message: Message) -> None:
            nonlocal status, code
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), trace_header]
            elif status >= 400 and code == 0 and message["type"] == "http.response.body":
                code = _envelope_code(message.get("body", b""))
            await send(message)

        try:
            await self._answer(scope, receive, send_traced, trace_id, _length(declared), lambda: status != 0)
        finally:
            if status == 0:  # the client went away, or nothing could be sent
                status = 499
            seconds = time.perf_counter() - arrived
            route = route_of(scope["path"])
            method = scope["method"]
            if self.metrics is not None:
                self.metrics.request(route, method, status, code, seconds)
            journal = self.journal
            if journal is not None and journal.on and not scope["path"].startswith(UNJOURNALED):
                # An append; the journal's thread does the rest (see `journal.py`).
                journal.record(
                    (
                        trace_id,
                        method,
                        scope["path"],
                        scope["query_string"],
                        scope["state"].get("phone_number"),
                        status,
                        code or None,
                        seconds,
                        time.time(),
                        retries,
                        agent,
                    )
                )
            if self.log_every_request or method not in _QUIET_METHODS or status >= 500:
                request_log.info(
                    "%s %s %s",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "code": code or None,
                        "duration_ms": round(seconds * 1000, 2),
                        **noted,
                    },
                )

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send_traced: Send,
        trace_id: str,
        declared: int | None,
        started: Callable[[], bool],
    ) -> None:
        if declared is not None and declared > self.max_body:
            response = error_response(ApiError(errors.BODY_TOO_LARGE), trace_id, self.docs_base_url)
            await response(scope, receive, send_traced)
            return

        seen = 0

        async def receive_bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, receive_bounded, send_traced)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when its graceful-shutdown bound
            # passes; left alone it would answer a plain-text 500 and log a traceback. The
            # task ends here either way, so answering and returning loses nothing.
            if started():
                raise
            log.warning("request cut off by the shutdown (trace_id=%s)", trace_id)
            error = ApiError(errors.SHUTTING_DOWN, headers={"retry-after": "1", "x-should-retry": "true"})
            await error_response(error, trace_id, self.docs_base_url)(scope, receive, send_traced)
        except Exception:
            if not started():  # otherwise the app's own handler already logged and answered
                log.exception("unhandled error (trace_id=%s)", trace_id)
                response = error_response(ApiError(errors.INTERNAL), trace_id, self.docs_base_url)
                await response(scope, receive, send_traced)


def _envelope_code(body: bytes) -> int:
    """The `error.code` of an envelope body (errors are small and rare: parsing is cheap)."""
    try:
        found: Any = orjson.loads(body)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return 0
    return found if isinstance(found, int) else 0


def _length(declared: bytes | None) -> int | None:
    """A Content-Length header's value (None: absent or not a number)."""
    if declared is None:
        return None
    try:
        return int(declared)
    except ValueError:
        return None
