"""Partners and their keys: create a partner, issue a key (shown once), revoke a key."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard.admin import AdminError
from contactcard.dashboard.flash import Flash
from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, answered, dashboard, form, off_loop, render, signed_in

NAV = Nav("Partners and keys", "/partners")


@signed_in
async def partners_page(request: Request, session: Session) -> Response:
    admin = dashboard(request).admin
    keys_by_partner: dict[str, list[object]] = {}
    for key in await off_loop(admin.list_keys):
        keys_by_partner.setdefault(key.partner_id, []).append(key)
    return render(request, "partners.html", session, partners=await off_loop(admin.list_partners), keys=keys_by_partner)


@signed_in
async def create_partner(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    name = fields.get("name", "")
    try:
        if len(name) > 200:  # the column's size, as the admin API's model says
            raise AdminError("a partner's name is at most 200 characters")
        await off_loop(dashboard(request).admin.create_partner, name)
    except AdminError as exc:
        return answered(request, session, "/partners", Flash(error=str(exc), form="new-partner", typed={"name": name}))
    return answered(request, session, "/partners", Flash(done="Partner created."))


@signed_in
async def issue_key(request: Request, session: Session) -> Response:
    await form(request, session)
    partner_id = request.path_params["partner_id"]
    try:
        issued = await off_loop(dashboard(request).admin.issue_key, partner_id)
    except AdminError as exc:
        return answered(request, session, "/partners", Flash(error=str(exc)))
    # The secret rides in the flash cookie, never in a URL: the page shows it once, and a
    # reload of that page neither shows it again nor issues another key.
    return answered(request, session, "/partners", Flash(secret=issued.key, form=f"keys-{issued.partner_id}"))


@signed_in
async def revoke_key(request: Request, session: Session) -> Response:
    await form(request, session)
    try:
        await off_loop(dashboard(request).admin.revoke_key, request.path_params["key_id"])
    except AdminError as exc:
        return answered(request, session, "/partners", Flash(error=str(exc)))
    return answered(request, session, "/partners", Flash(done="Key revoked: it is refused from now on."))


def routes() -> list[Route]:
    return [
        Route("/partners", partners_page, methods=["GET"]),
        Route("/partners/new", create_partner, methods=["POST"]),
        Route("/partners/{partner_id}/keys", issue_key, methods=["POST"]),
        Route("/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
    ]
