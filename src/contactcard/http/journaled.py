"""Pure ASGI middleware that hands each finished API request to the request journal.

It sits just inside `Edge` (which has set the trace id) and costs a request, while the
journal is on, three clock reads, a wrapped `send` and a deque append: everything else,
the headers' scan included, is done by the journal's thread (see `journal.py`).
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
        began = time.perf_counter()
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
            state = scope.get("state", {})
            journal.record(
                (
                    state.get("trace_id", ""),
                    scope["method"],
                    scope["path"],
                    scope["query_string"],
                    state.get("phone_number"),
                    status or 500,  # nothing answered: the edge answers 500 (or 503 at shutdown)
                    error_body,
                    began,
                    time.perf_counter(),
                    time.time(),
                    scope["headers"],
                )
            )
