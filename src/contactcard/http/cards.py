"""`GET|POST|PATCH /v3/contact_card`: HTTP in, use case, JSON out.

These endpoints read the request directly rather than through FastAPI's parameter
machinery: the contract's error codes depend on the order of checks. GET, the hot path,
is answered by `FastGet`, a bare ASGI layer in front of the framework; both it and the
routed endpoint call `read_cards`. The OpenAPI document describing them is `openapi.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from contactcard import contract, errors
from contactcard.errors import ApiError
from contactcard.http.envelope import error_response, json_response
from contactcard.http.openapi import CARD_PATHS
from contactcard.keys import bearer_key, key_hash
from contactcard.service import ContactCards, WriteResult

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


async def read_cards(service: ContactCards, authorization: list[str], phones: list[str]) -> tuple[bytes, str | None]:
    """The body of a GET: every card of the key's partner, or one line's (and that line)."""
    hashed_key = _key_hash(authorization)
    phone = await _validated(service, hashed_key, lambda: contract.phone_from_query(phones, required=False))
    if phone is None:
        found = await service.list_cards(hashed_key)
    else:
        found = await service.get_card(hashed_key, phone)
    return orjson.dumps({"contact_cards": found}), phone


class FastGet:
    """Answers GET and HEAD on the card paths before the framework sees them."""

    def __init__(self, app: ASGIApp, service: ContactCards, docs_base_url: str) -> None:
        self.app = app
        self.service = service
        self.docs_base_url = docs_base_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CARD_PATHS or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
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
                await self._ok(scope, send, hit[0])
                return
        authorization = [v.decode("latin-1") for v in raw_authorization]
        phones = (
            [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "phone_number"]
            if query
            else []
        )
        try:
            body, phone = await read_cards(self.service, authorization, phones)
        except ApiError as error:
            trace_id = scope.get("state", {}).get("trace_id", "")
            await error_response(error, trace_id, self.docs_base_url)(scope, receive, send)
            return
        if memo is not None and phone is not None:  # a 200 for one number: the key owns the line
            if len(memo) >= self.service.read_cache_size:
                del memo[next(iter(memo))]  # the oldest answer
            memo[slot] = (body, phone)  # the line as stored: a write to it drops the answer
        await self._ok(scope, send, body)

    @staticmethod
    async def _ok(scope: Scope, send: Send, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})


async def contact_card(request: Request) -> Response:
    service: ContactCards = request.app.state.cards
    if request.method == "POST":
        return await _setup(request, service, _key_hash(request.headers.getlist("authorization")))
    if request.method == "PATCH":
        return await _update(request, service, _key_hash(request.headers.getlist("authorization")))
    body, _ = await read_cards(
        service, request.headers.getlist("authorization"), request.query_params.getlist("phone_number")
    )
    return Response(body, media_type="application/json")


async def _setup(request: Request, service: ContactCards, hashed_key: str) -> Response:
    raw = await request.body()
    setup = await _validated(
        service,
        hashed_key,
        lambda: contract.setup_request(contract.json_object(raw, request.headers.get("content-type")), service.rules),
    )
    request.state.phone_number = setup.phone_number  # for the request journal (the body is not kept)
    return _written(await service.setup(hashed_key, setup, _trace_id(request)))


async def _update(request: Request, service: ContactCards, hashed_key: str) -> Response:
    raw = await request.body()

    def parse() -> tuple[str, contract.UpdateRequest]:
        phone = contract.phone_from_query(request.query_params.getlist("phone_number"), required=True)
        body = contract.json_object(raw, request.headers.get("content-type"))
        assert phone is not None
        return phone, contract.update_request(body, service.rules)

    phone, update = await _validated(service, hashed_key, parse)
    return _written(await service.update(hashed_key, phone, update, _trace_id(request)))


def _written(result: WriteResult) -> Response:
    if result.error is not None:
        raise result.error
    return json_response(result.card)


def _trace_id(request: Request) -> str:
    trace_id: str = request.scope.get("state", {}).get("trace_id", "")
    return trace_id
