"""`GET|POST|PATCH /v3/contact_card`: HTTP in, use case, JSON out.

These endpoints read the request directly rather than through FastAPI's parameter
machinery: the contract's error codes depend on the order of checks, and the GET path
stays lean. The OpenAPI document describing them lives in `openapi.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from contactcard import contract, errors
from contactcard.errors import ApiError
from contactcard.http.envelope import json_response
from contactcard.keys import bearer_key, key_hash
from contactcard.service import ContactCards, WriteResult

T = TypeVar("T")


def _key_hash(request: Request) -> str:
    key = bearer_key(request.headers.getlist("authorization"))
    if key is None:
        raise ApiError(errors.UNAUTHORIZED)
    return key_hash(key)


def _validated(service: ContactCards, hashed_key: str, parse: Callable[[], T]) -> T:
    """Parse the request; a bad request from an unknown key is still a 401."""
    try:
        return parse()
    except ApiError:
        service.require_key(hashed_key)
        raise


async def contact_card(request: Request) -> Response:
    service: ContactCards = request.app.state.cards
    hashed_key = _key_hash(request)
    if request.method == "POST":
        return await _setup(request, service, hashed_key)
    if request.method == "PATCH":
        return await _update(request, service, hashed_key)
    phone = _validated(
        service,
        hashed_key,
        lambda: contract.phone_from_query(request.query_params.getlist("phone_number"), required=False),
    )
    found = service.list_cards(hashed_key) if phone is None else service.get_card(hashed_key, phone)
    prefix = service.rules.own_cdn_prefix
    return json_response({"contact_cards": [card.public(prefix) for card in found]})


async def _setup(request: Request, service: ContactCards, hashed_key: str) -> Response:
    raw = await request.body()
    setup = _validated(
        service,
        hashed_key,
        lambda: contract.setup_request(
            contract.json_object(raw, request.headers.get("content-type")), service.rules
        ),
    )
    return _written(service, await service.setup(hashed_key, setup))


async def _update(request: Request, service: ContactCards, hashed_key: str) -> Response:
    raw = await request.body()

    def parse() -> tuple[str, contract.UpdateRequest]:
        phone = contract.phone_from_query(request.query_params.getlist("phone_number"), required=True)
        body = contract.json_object(raw, request.headers.get("content-type"))
        assert phone is not None
        return phone, contract.update_request(body, service.rules)

    phone, update = _validated(service, hashed_key, parse)
    return _written(service, await service.update(hashed_key, phone, update))


def _written(service: ContactCards, result: WriteResult) -> Response:
    if result.error is not None:
        raise result.error
    return json_response(result.card.public(service.rules.own_cdn_prefix))
