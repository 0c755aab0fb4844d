"""Pure ASGI middleware at the edge of the app.

It gives every request a trace id (answered in `x-trace-id` on every response, CDN and
errors included), refuses bodies over the limit as they arrive (a chunked body has no
Content-Length), and turns any exception that escapes into `500 3006` with no detail.
"""

from __future__ import annotations

import asyncio
import logging
import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcard import errors
from contactcard.errors import ApiError
from contactcard.http.envelope import TRACE_HEADER, error_response

log = logging.getLogger("contactcard")


class BodyTooLarge(Exception):
    """Raised from `receive` when a body grows past the limit."""


class Edge:
    def __init__(self, app: ASGIApp, *, max_body: int, docs_base_url: str) -> None:
        self.app = app
        self.max_body = max_body
        self.docs_base_url = docs_base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = os.urandom(16).hex()  # 128 random bits; a fifth of uuid4().hex's cost
        scope.setdefault("state", {})["trace_id"] = trace_id
        trace_header = (TRACE_HEADER.encode(), trace_id.encode())
        started = False

        async def send_traced(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), trace_header]
            await send(message)

        declared = _content_length(scope)
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
            if started:
                raise
            log.warning("request cut off by the shutdown (trace_id=%s)", trace_id)
            error = ApiError(errors.SHUTTING_DOWN, headers={"retry-after": "1", "x-should-retry": "true"})
            await error_response(error, trace_id, self.docs_base_url)(scope, receive, send_traced)
        except Exception:
            if not started:  # otherwise the app's own handler already logged and answered
                log.exception("unhandled error (trace_id=%s)", trace_id)
                response = error_response(ApiError(errors.INTERNAL), trace_id, self.docs_base_url)
                await response(scope, receive, send_traced)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
