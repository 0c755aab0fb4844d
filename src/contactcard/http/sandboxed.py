"""Pure ASGI middleware of the open sandbox (`sandbox.py`): before a card request reaches
the API, the partner of its key and the line of its number exist.

A key the API could not parse as a bearer token (one with spaces) is replaced, in the
request only, by the token the sandbox derived from it. A POST's number is in its body,
which is read here and handed on unchanged (the edge has already bounded its size).
"""

from __future__ import annotations

import anyio.to_thread
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcard.http.openapi import CARD_PATHS
from contactcard.journal import phone_from_query
from contactcard.sandbox import Sandbox, usable_key


class Sandboxed:
    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CARD_PATHS:
            await self.app(scope, receive, send)
            return
        authorizations = [(i, v) for i, (k, v) in enumerate(scope["headers"]) if k == b"authorization"]
        scheme, _, given = authorizations[0][1].decode("latin-1").partition(" ") if authorizations else ("", "", "")
        if len(authorizations) != 1 or scheme.lower() != "bearer" or not given.strip():
            await self.app(scope, receive, send)  # the API answers 401
            return
        key = usable_key(given.strip())
        if key != given:
            headers = list(scope["headers"])
            headers[authorizations[0][0]] = (b"authorization", f"Bearer {key}".encode("latin-1"))
            scope = {**scope, "headers": headers}
        phone = phone_from_query(scope["query_string"]) if scope["query_string"] else None
        if scope["method"] == "POST":
            body, receive = await _read_body(receive)
            phone = _phone_in(body)
        if not self.sandbox.known(key, phone):
            await anyio.to_thread.run_sync(self.sandbox.prepare, key, phone)
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks = []
    failed: Exception | None = None
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
    except Exception as exc:  # a body over the limit: the API's own handler answers it
        failed = exc
    body = b"".join(chunks)
    handed = False

    async def replay() -> Message:
        nonlocal handed
        if failed is not None:
            raise failed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _phone_in(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    value = parsed.get("phone_number") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None
