"""`GET|POST|PATCH /v3/contact_card`: HTTP in, use case, JSON out.

These endpoints read the request directly rather than through FastAPI's parameter
machinery: the contract's error codes depend on the order of checks. Reads and writes
alike are answered by `FastCards`, a bare ASGI layer in front of the framework (`read_cards`
and `write_card` hold what each method does). The OpenAPI document describing them is
`openapi.py`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from contactcard import contract, errors
from contactcard.errors import ApiError
from contactcard.http.edge import BodyTooLarge
from contactcard.http.envelope import error_response
from contactcard.http.openapi import CARD_PATHS
from contactcard.keys import bearer_key, key_hash
from contactcard.keys_seen import KeysSeen
from contactcard.service import ContactCards

T = TypeVar("T")


def _key_hash(authorization: list[str]) -> str:
    key = bearer_key(authorization)
    if key is None:
        raise ApiError(errors.UNAUTHORIZED)
    return key_hash(key)


async def _validated(service: ContactCards, hashed_key: str, parse: Callable[[], T]) -> T:
    """Parse the request; a bad request from an unknown key is still a 401."""
    try:
        return parse()
    except ApiError:
        await service.require_key(hashed_key)
        raise


async def read_cards(
    service: ContactCards, authorization: list[str], phones: list[str]
) -> tuple[bytes, str | None, str]:
    """The body of a GET: every card of the key's partner, or one line's (and that line,
    and the key's hash)."""
    hashed_key = _key_hash(authorization)
    phone = await _validated(service, hashed_key, lambda: contract.phone_from_query(phones, required=False))
    if phone is None:
        found = await service.list_cards(hashed_key)
    else:
        found = await service.get_card(hashed_key, phone)
    return orjson.dumps({"contact_cards": found}), phone, hashed_key


class FastCards:
    """Answers the card paths (GET, HEAD, POST, PATCH) before the framework sees them: a
    request costs its own work, not a router's and two middlewares'. Any other method
    goes on to the routes, which answer `405` with `Allow`."""

    def __init__(self, app: ASGIApp, service: ContactCards, docs_base_url: str, seen: KeysSeen | None = None) -> None:
        self.app = app
        self.service = service
        self.docs_base_url = docs_base_url
        # Every answer given as a key's partner marks the key (`keys_seen.py`): a dict store.
        self.seen = seen or KeysSeen(time.time)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CARD_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method in ("GET", "HEAD"):
            await self._read(scope, receive, send)
        elif method in ("POST", "PATCH"):
            await self._write(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_authorization = [v for k, v in scope["headers"] if k == b"authorization"]
        query = scope["query_string"]
        # GET by number answers are remembered by (hash of the exact Authorization value,
        # exact query): the same bytes against an unchanged database give the same answer,
        # so a hit skips parsing, the lookup and serialising. Only 200s are remembered.
        memo = await self.service.read_memo() if query and len(raw_authorization) == 1 else None
        if memo is not None:
            slot = (hashlib.sha256(raw_authorization[0]).digest(), query)
            hit = memo.get(slot)
            if hit is not None:
                self.seen.mark(hit[2])
                await _ok(scope, send, hit[0])
                return
        authorization = [v.decode("latin-1") for v in raw_authorization]
        try:
            body, phone, hashed_key = await read_cards(self.service, authorization, _phones(query))
        except ApiError as error:
            self._mark_if_accepted(error, authorization)
            await self._refuse(error, scope, receive, send)
            return
        self.seen.mark(hashed_key)
        if memo is not None and phone is not None:  # a 200 for one number: the key owns the line
            if len(memo) >= self.service.read_cache_size:
                del memo[next(iter(memo))]  # the oldest answer
            # The line as stored (a write to it drops the answer), and the key to mark on a hit.
            memo[slot] = (body, phone, hashed_key)
        await _ok(scope, send, body)

    async def _write(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = None
        authorization = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value.decode("latin-1"))
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        state = scope.setdefault("state", {})
        try:
            hashed_key = _key_hash(authorization)  # before the body: no key is a 401 whatever it sends
            try:
                raw = await _body(receive)
            except BodyTooLarge:
                raise ApiError(errors.BODY_TOO_LARGE) from None
            if raw is None:
                return  # the client went away: nobody to answer
            trace_id = state.get("trace_id", "")
            body = await write_card(
                self.service, scope["method"], hashed_key, _phones(scope["query_string"]), content_type, raw, state,
                trace_id,
            )  # fmt: skip
        except ApiError as error:
            self._mark_if_accepted(error, authorization)
            await self._refuse(error, scope, receive, send)
            return
        self.seen.mark(hashed_key)
        await _ok(scope, send, body)

    def _mark_if_accepted(self, error: ApiError, authorization: list[str]) -> None:
        """A refusal for what the request asked (a bad body, another partner's line, a card
        that exists, the budget) is still a use of the key: every 4xx here but a 401 and a
        413 comes after the key was accepted (a bad request from an unknown key is a 401,
        `_validated`; only the body's size is judged before the key is looked up). A 5xx
        may come first (busy, database down), so it never counts."""
        if error.error.status >= 500 or error.error.status in (401, 413):
            return
        key = bearer_key(authorization)
        if key is not None:
            self.seen.mark(key_hash(key))

    async def _refuse(self, error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
        trace_id = scope.get("state", {}).get("trace_id", "")
        await error_response(error, trace_id, self.docs_base_url)(scope, receive, send)


def _phones(query: bytes) -> list[str]:
    if not query:
        return []
    return [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "phone_number"]


async def _body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _ok(scope: Scope, send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})


async def write_card(
    service: ContactCards,
    method: str,
    hashed_key: str,
    phones: list[str],
    content_type: str | None,
    raw: bytes,
    state: dict[str, object],
    trace_id: str,
) -> bytes:
    """The body of a POST (`setup`) or PATCH (`update`); `state` gets the line for the
    request journal (the body is not kept)."""
    if method == "POST":
        setup = await _validated(
            service,
            hashed_key,
            lambda: contract.setup_request(contract.json_object(raw, content_type), service.rules),
        )
        state["phone_number"] = setup.phone_number
        result = await service.setup(hashed_key, setup, trace_id)
    else:

        def parse() -> tuple[str, contract.UpdateRequest]:
            phone = contract.phone_from_query(phones, required=True)
            body = contract.json_object(raw, content_type)
            assert phone is not None
            return phone, contract.update_request(body, service.rules)

        phone, update = await _validated(service, hashed_key, parse)
        result = await service.update(hashed_key, phone, update, trace_id)
    if result.error is not None:
        raise result.error
    return orjson.dumps(result.card)


async def answered_in_front(request: Request) -> Response:
    """The card routes' endpoint, never called: `FastCards` answers GET, HEAD, POST and
    PATCH before the router. The routes exist so that any other method gets the router's
    `405` with `Allow`."""
    raise RuntimeError("the card paths are answered by FastCards, in front of the router")
