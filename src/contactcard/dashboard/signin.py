"""Sign in with the admin token, sign out, and the overview page."""

from __future__ import annotations

import hmac
import math
import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard.dashboard.flash import Flash
from contactcard.dashboard.session import LIFETIME, SIGN_IN_COOKIE, Session
from contactcard.dashboard.web import (
    Nav,
    answered,
    clear_session,
    dashboard,
    form,
    off_loop,
    redirect,
    render,
    safe_next,
    session_of,
    set_session,
    sign_in_session_of,
    signed_in,
)
from contactcard.journal import Query
from contactcard.kit import Kit

NAV: Nav | None = None  # the overview is the menu's home link


async def sign_in_page(request: Request) -> Response:
    wanted = safe_next(request.query_params.get("next", "/"))
    if await session_of(request) is not None:
        return redirect(request, wanted)
    # Not signed in: a session all the same, for the sign-in form's CSRF token.
    session = sign_in_session_of(request) or Session.new(signed_in=False)
    response = render(request, "sign_in.html", session, next=wanted)
    set_session(request, response, session)
    return response


def _address(request: Request) -> str:
    # The peer, as uvicorn's --proxy-headers / --forwarded-allow-ips report it behind a proxy.
    return request.client.host if request.client else ""


async def sign_in(request: Request) -> Response:
    board = dashboard(request)
    session = sign_in_session_of(request)
    fields = await form(request, session)
    assert session is not None  # form() refuses a POST without one
    wanted = safe_next(fields.get("next", "/"))
    again = "/sign-in" + (f"?next={quote(wanted, safe='/')}" if wanted != "/" else "")
    address = _address(request)
    wait = board.throttle.wait(address)
    if wait > 0:
        # Not even checked: trying on cannot find the token, nor make the wait longer.
        error = f"Too many wrong tokens from this address: try again in {math.ceil(wait)} s."
        return answered(request, session, again, Flash(error=error))
    token = board.settings.admin_token or ""
    given = fields.get("token", "")
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        board.throttle.failed(address)
        return answered(request, session, again, Flash(error="That is not the admin token."))
    board.throttle.succeeded(address)
    # A new session (and CSRF token) once signed in: one planted before cannot be reused.
    signed = Session.new(signed_in=True)
    await off_loop(board.records.begin, signed.id_hash, time.time(), time.time() + LIFETIME)
    response = redirect(request, wanted)
    set_session(request, response, signed)
    clear_session(request, response, SIGN_IN_COOKIE)
    return response


@signed_in
async def sign_out(request: Request, session: Session) -> Response:
    await form(request, session)
    # Ended on the server: the cookie, wherever a copy of it lies, opens nothing now.
    await off_loop(dashboard(request).records.end, session.id_hash)
    response = redirect(request, "/sign-in")
    clear_session(request, response)
    return response


RECENT_SECONDS = 3600  # "recent" requests on the overview: the last hour of the server's clock


def _recent(kit: Kit) -> tuple[int, int, int] | None:
    """Requests of the last hour, those answered 4xx, those answered 5xx (None: no journal)."""
    if kit.journal is None or kit.settings().journal_size == 0:
        return None
    since = kit.clock().now.timestamp() - RECENT_SECONDS
    entries = kit.requests(Query(since=since, limit=1000))
    return (
        len(entries),
        sum(400 <= e.status < 500 for e in entries),
        sum(e.status >= 500 for e in entries),
    )


@signed_in
async def overview(request: Request, session: Session) -> Response:
    """What an operator looks at first: how much there is, and whether anything needs them."""
    board = dashboard(request)
    counts = await off_loop(board.admin.counts)
    recent = await off_loop(_recent, board.kit)
    attention = counts.failed_deliveries or counts.retrying_deliveries or (recent is not None and recent[2] > 0)
    return render(request, "overview.html", session, counts=counts, recent=recent, attention=attention)


def routes() -> list[Route]:
    return [
        Route("/", overview, methods=["GET"]),
        Route("/sign-in", sign_in_page, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
    ]
