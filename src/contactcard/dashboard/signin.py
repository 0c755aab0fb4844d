"""Sign in with the admin token (throttled per address), and sign out."""

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

NAV: Nav | None = None  # not in the menu: Sign out is a button of its own


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


def routes() -> list[Route]:
    return [
        Route("/sign-in", sign_in_page, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
    ]
