"""Webhook subscriptions, their deliveries (as the last attempt left each) and every attempt of
one delivery (its outcome, the answer's status, latency and error), and sending one again."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard.dashboard.flash import Flash
from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, answered, dashboard, form, off_loop, redirect, render, signed_in
from contactcard.errors import ApiError

NAV = Nav("Webhooks", "/webhooks")
PAGE_SIZE = 200
STATES = ("pending", "retrying", "delivered", "failed")
# Subscription and event ids are 32 hexadecimal digits: anything else finds nothing anyway.
_ID = re.compile(r"[0-9a-f]{32}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at is not None else ""


@signed_in
async def webhooks_page(request: Request, session: Session) -> Response:
    admin = dashboard(request).admin
    chosen = request.query_params.get("subscription", "")
    error = None
    if chosen and not _ID.fullmatch(chosen):
        chosen, error = "", "a subscription id is 32 hexadecimal digits"
    state = request.query_params.get("state", "")
    state = state if state in STATES else ""
    number = request.query_params.get("number", "").strip()
    if number.startswith(" "):  # a + typed in a query string arrives as a space
        number = "+" + number[1:]
    number = number if _E164.fullmatch(number) else ""
    given = request.query_params.get("page", "1")
    page = int(given) if given.isascii() and given.isdigit() and 0 < len(given) < 6 and int(given) > 0 else 1
    subscriptions = await off_loop(admin.list_subscriptions)
    # One row more than shown: whether a page lies beyond.
    deliveries = await off_loop(
        admin.list_deliveries,
        subscription_id=chosen or None,
        state=state or None,
        limit=PAGE_SIZE + 1,
        offset=(page - 1) * PAGE_SIZE,
        phone_number=number or None,
    )
    more = len(deliveries) > PAGE_SIZE
    deliveries = deliveries[:PAGE_SIZE]
    return render(
        request,
        "webhooks.html",
        session,
        status=400 if error else 200,
        subscriptions=subscriptions,
        targets={s.id: s.target_url for s in subscriptions},
        deliveries=deliveries,
        next_at={d.event_id + d.subscription_id: _when(d.next_attempt_at) for d in deliveries},
        chosen=chosen,
        state=state,
        number=number,
        states=STATES,
        page=page,
        more=more,
        done=request.query_params.get("done") == "redelivered",
        error=error,
    )


@signed_in
async def delivery_page(request: Request, session: Session) -> Response:
    admin = dashboard(request).admin
    event_id, subscription_id = request.path_params["event_id"], request.path_params["subscription_id"]
    try:
        delivery, attempts = await off_loop(admin.delivery, event_id, subscription_id)
    except ApiError:
        return render(request, "not_found.html", session, status=404, kind="delivery", what=event_id)
    targets = {s.id: s.target_url for s in await off_loop(admin.list_subscriptions, delivery.partner_id)}
    body = await off_loop(admin.delivery_body, event_id, subscription_id)
    try:  # shown indented; the bytes sent (and signed) are exactly the stored ones
        payload = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        payload = body
    # Numbered on across redeliveries (the store counts each round from 1), with a marker
    # where an operator sent it again: 1, 2, 3, then "sent again", 4, 5.
    shown: list[tuple[int, bool, object]] = []
    previous = 0
    for number, attempt in enumerate(attempts, start=1):
        shown.append((number, 0 < previous >= attempt.attempt, attempt))
        previous = attempt.attempt
    return render(
        request,
        "delivery.html",
        session,
        delivery=delivery,
        attempts=shown,
        payload=payload,
        queued_again=delivery.status == "pending" and delivery.attempts == 0 and bool(attempts),
        target=targets.get(subscription_id, ""),
        next_at=_when(delivery.next_attempt_at),
        done=request.query_params.get("done") == "redelivered",
    )


@signed_in
async def redeliver(request: Request, session: Session) -> Response:
    await form(request, session)
    event_id, subscription_id = request.path_params["event_id"], request.path_params["subscription_id"]
    try:
        await off_loop(dashboard(request).admin.redeliver, event_id, subscription_id)
    except ApiError as exc:
        return answered(request, session, "/webhooks", Flash(error=exc.reason))
    # Back to the page it was sent from: the delivery's own, or the list (of one subscription).
    if request.query_params.get("from") == "delivery":
        return redirect(request, f"/webhooks/deliveries/{event_id}/{subscription_id}?done=redelivered")
    back = request.query_params.get("subscription", "")
    shown = f"subscription={back}&" if _ID.fullmatch(back) else ""
    return redirect(request, f"/webhooks?{shown}done=redelivered")


@signed_in
async def set_active(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    subscription_id = request.path_params["subscription_id"]
    active = fields.get("active") == "on"
    try:
        await off_loop(dashboard(request).admin.set_subscription_active, subscription_id, active)
    except ApiError as exc:
        return answered(request, session, "/webhooks", Flash(error=exc.reason))
    said = "enabled: new events are delivered to it again" if active else "disabled: no new event is delivered to it"
    return answered(request, session, "/webhooks", Flash(done=f"Subscription {said}."))


def routes() -> list[Route]:
    return [
        Route("/webhooks", webhooks_page, methods=["GET"]),
        Route("/webhooks/subscriptions/{subscription_id}/active", set_active, methods=["POST"]),
        Route("/webhooks/deliveries/{event_id}/{subscription_id}", delivery_page, methods=["GET"]),
        Route("/webhooks/deliveries/{event_id}/{subscription_id}/redeliver", redeliver, methods=["POST"]),
    ]
