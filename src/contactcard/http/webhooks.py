"""`/v3/webhook-subscriptions` and `/v3/webhook-events`: HTTP in, use case, JSON out.

Every route first turns the bearer key into its partner (401 otherwise), so a bad body
from an unknown key is still a 401, as on the card endpoints.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard import contract, errors
from contactcard.errors import ApiError
from contactcard.http.envelope import json_response
from contactcard.http.openapi import WEBHOOK_PREFIXES
from contactcard.keys import bearer_key, key_hash
from contactcard.keys_seen import KeysSeen
from contactcard.webhooks.subscriptions import Subscriptions, event_list


async def _partner(request: Request) -> str:
    key = bearer_key(request.headers.getlist("authorization"))
    if key is None:
        raise ApiError(errors.UNAUTHORIZED)
    subscriptions: Subscriptions = request.app.state.subscriptions
    hashed = key_hash(key)
    partner = await subscriptions.partner(hashed)
    seen: KeysSeen = request.app.state.keys_seen
    seen.mark(hashed)  # accepted: whatever the route answers next, it answers as this partner
    return partner


def _trace_id(request: Request) -> str:
    trace_id: str = request.scope.get("state", {}).get("trace_id", "")
    return trace_id


async def _body(request: Request) -> dict[str, object]:
    return contract.json_object(await request.body(), request.headers.get("content-type"))


async def collection(request: Request) -> Response:
    subscriptions: Subscriptions = request.app.state.subscriptions
    partner = await _partner(request)
    if request.method == "POST":
        created = await subscriptions.create(partner, await _body(request), _trace_id(request))
        return json_response(created, status=201)
    return json_response(await subscriptions.list_all(partner))


async def item(request: Request) -> Response:
    subscriptions: Subscriptions = request.app.state.subscriptions
    partner = await _partner(request)
    subscription_id = request.path_params["subscription_id"]
    if request.method == "PUT":
        updated = await subscriptions.update(partner, subscription_id, await _body(request), _trace_id(request))
        return json_response(updated)
    if request.method == "DELETE":
        await subscriptions.delete(partner, subscription_id, _trace_id(request))
        return Response(status_code=204)
    return json_response(await subscriptions.get(partner, subscription_id))


async def events(request: Request) -> Response:
    await _partner(request)
    return json_response(event_list())


def routes() -> list[Route]:
    found = []
    for prefix in WEBHOOK_PREFIXES:  # the second: under the SDKs' default base URL
        found += [
            Route(f"{prefix}/webhook-subscriptions", collection, methods=["GET", "POST"]),
            Route(f"{prefix}/webhook-subscriptions/{{subscription_id}}", item, methods=["GET", "PUT", "DELETE"]),
            Route(f"{prefix}/webhook-events", events, methods=["GET"]),
        ]
    return found
