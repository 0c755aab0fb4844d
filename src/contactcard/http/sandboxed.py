"""Pure ASGI middleware of the open sandbox (`sandbox.py`): before a request to a partner
route (cards, webhook subscriptions, the event list) reaches the API, the partner of its
key and the lines of its numbers exist.

A key the API could not parse as a bearer token (one with spaces) is replaced, in the
request only, by the token the sandbox derived from it. A card POST's number, and a
subscription's `phone_numbers`, are in the body, which is read here and handed on
unchanged (the edge has already bounded its size).
"""

from __future__ import annotations

import anyio.to_thread
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcard.http.openapi import CARD_PATHS, WEBHOOK_PREFIXES
from contactcard.journal import phone_from_query
from contactcard.sandbox import Sandbox, usable_key
from contactcard.webhooks.subscriptions import MAX_PHONE_NUMBERS


class Sandboxed:
    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _partner_route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
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
        phones: list[str] = []
        if route == "card":
            phone: object = phone_from_query(scope["query_string"]) if scope["query_string"] else None
            if scope["method"] == "POST":
                body, receive = await _read_body(receive)
                phone = _field(body, "phone_number")
            phones = [phone] if isinstance(phone, str) else []
        elif route == "subscriptions" and scope["method"] in ("POST", "PUT"):
            body, receive = await _read_body(receive)
            listed = _field(body, "phone_numbers")
            # More numbers than the API takes are refused by it: none are made.
            if isinstance(listed, list) and len(listed) <= MAX_PHONE_NUMBERS:
                phones = [p for p in listed if isinstance(p, str)]
        if not self.sandbox.known(key, phones):
            await anyio.to_thread.run_sync(self.sandbox.prepare, key, phones)
        await self.app(scope, receive, send)


def _partner_route(path: str) -> str | None:
    """`card`, `subscriptions` or `events` for a partner route; None for any other path."""
    if path in CARD_PATHS:
        return "card"
    for prefix in WEBHOOK_PREFIXES:
        rest = path.removeprefix(prefix)
        if rest == path:
            continue
        if rest == "/webhook-events":
            return "events"
        if rest == "/webhook-subscriptions" or rest.startswith("/webhook-subscriptions/"):
            return "subscriptions"
    return None


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


def _field(body: bytes, name: str) -> object:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the API answers that
    return parsed.get(name) if isinstance(parsed, dict) else None
