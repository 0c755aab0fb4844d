"""Partners and their keys: create a partner, issue a key (shown once), revoke a key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard.admin import AdminError, IssuedKey
from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, dashboard, form, off_loop, redirect, render, signed_in

NAV = Nav("Partners and keys", "/partners")


async def _page(
    request: Request, session: Session, *, issued: IssuedKey | None = None, error: str | None = None
) -> Response:
    admin = dashboard(request).admin
    keys_by_partner: dict[str, list[object]] = {}
    for key in await off_loop(admin.list_keys):
        keys_by_partner.setdefault(key.partner_id, []).append(key)
    return render(
        request,
        "partners.html",
        session,
        status=400 if error else 200,
        partners=await off_loop(admin.list_partners),
        keys=keys_by_partner,
        issued=issued,
        error=error,
    )


@signed_in
async def partners_page(request: Request, session: Session) -> Response:
    return await _page(request, session)


@signed_in
async def create_partner(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    try:
        name = fields.get("name", "")
        if len(name) > 200:  # the column's size, as the admin API's model says
            raise AdminError("a partner's name is at most 200 characters")
        await off_loop(dashboard(request).admin.create_partner, name)
    except AdminError as exc:
        return await _page(request, session, error=str(exc))
    return redirect(request, "/partners")


@signed_in
async def issue_key(request: Request, session: Session) -> Response:
    await form(request, session)
    try:
        issued = await off_loop(dashboard(request).admin.issue_key, request.path_params["partner_id"])
    except AdminError as exc:
        return await _page(request, session, error=str(exc))
    # Answered to the POST itself, never redirected: the key is in no URL and no later page.
    return await _page(request, session, issued=issued)


@signed_in
async def revoke_key(request: Request, session: Session) -> Response:
    await form(request, session)
    try:
        await off_loop(dashboard(request).admin.revoke_key, request.path_params["key_id"])
    except AdminError as exc:
        return await _page(request, session, error=str(exc))
    return redirect(request, "/partners")


def routes() -> list[Route]:
    return [
        Route("/partners", partners_page, methods=["GET"]),
        Route("/partners/new", create_partner, methods=["POST"]),
        Route("/partners/{partner_id}/keys", issue_key, methods=["POST"]),
        Route("/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
    ]
