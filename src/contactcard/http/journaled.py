"""Pure ASGI middleware that hands each finished API request to the request journal.

It sits just inside `Edge` (which has set the trace id) and costs a request, while the
journal is on, two clock reads, a scan of the headers and a deque append: everything else
is done by the journal's thread (see `journal.py`).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcard.journal import UNJOURNALED, Journal


class Journaled:
    def __init__(self, app: ASGIApp, journal: Journal) -> None:
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        journal = self.journal
        if scope["type"] != "http" or not journal.on or scope["path"].startswith(UNJOURNALED):
            await self.app(scope, receive, send)
            return
        began, at = time.perf_counter(), journal.time()
        status = 0
        error_body: bytes | None = None

        async def send_seen(message: Message) -> None:
            nonlocal status, error_body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif status >= 400 and error_body is None:
                error_body = message.get("body", b"")  # the envelope, for its error code
            await send(message)

        try:
            await self.app(scope, receive, send_seen)
        finally:
            retries = agent = None
            for name, value in scope["headers"]:
                if name == b"x-stainless-retry-count":
                    retries = value
                elif name == b"user-agent":
                    agent = value
            state = scope.get("state", {})
            journal.record(
                (
                    state.get("trace_id", ""),
                    at,
                    scope["method"],
                    scope["path"],
                    scope["query_string"],
                    state.get("phone_number"),
                    status or 500,  # nothing answered: the edge answers 500 (or 503 at shutdown)
                    error_body,
                    time.perf_counter() - began,
                    retries,
                    agent,
                )
            )
