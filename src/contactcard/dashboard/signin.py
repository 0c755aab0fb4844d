"""Sign in with the admin token, sign out, and the overview page."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard.dashboard.flash import Flash
from contactcard.dashboard.session import SIGN_IN_COOKIE, Session
from contactcard.dashboard.web import (
    Nav,
    answered,
    clear_session,
    dashboard,
    form,
    off_loop,
    redirect,
    render,
    session_of,
    set_session,
    sign_in_session_of,
    signed_in,
)

NAV: Nav | None = None  # the overview is the menu's home link


async def sign_in_page(request: Request) -> Response:
    if session_of(request) is not None:
        return redirect(request, "/")
    # Not signed in: a session all the same, for the sign-in form's CSRF token.
    session = sign_in_session_of(request) or Session.new(signed_in=False)
    response = render(request, "sign_in.html", session)
    set_session(request, response, session)
    return response


async def sign_in(request: Request) -> Response:
    session = sign_in_session_of(request)
    fields = await form(request, session)
    assert session is not None  # form() refuses a POST without one
    token = dashboard(request).settings.admin_token or ""
    given = fields.get("token", "")
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return answered(request, session, "/sign-in", Flash(error="That is not the admin token."))
    # A new session (and CSRF token) once signed in: one planted before cannot be reused.
    response = redirect(request, "/")
    set_session(request, response, Session.new(signed_in=True))
    clear_session(request, response, SIGN_IN_COOKIE)
    return response


@signed_in
async def sign_out(request: Request, session: Session) -> Response:
    await form(request, session)
    response = redirect(request, "/sign-in")
    clear_session(request, response)
    return response


@signed_in
async def overview(request: Request, session: Session) -> Response:
    admin = dashboard(request).admin
    return render(request, "overview.html", session, partners=await off_loop(admin.partner_count))


def routes() -> list[Route]:
    return [
        Route("/", overview, methods=["GET"]),
        Route("/sign-in", sign_in_page, methods=["GET"]),
        Route("/sign-in", sign_in, methods=["POST"]),
        Route("/sign-out", sign_out, methods=["POST"]),
    ]
