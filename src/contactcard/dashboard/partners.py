"""Partners and their keys: create, rename and delete a partner, issue a key (shown once),
revoke a key (after a page that asks)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard.admin import KeyInfo
from contactcard.dashboard.flash import Flash
from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, answered, dashboard, form, off_loop, redirect, render, signed_in, visible
from contactcard.errors import ApiError

NAV = Nav("Partners and keys", "/partners")


@signed_in
async def partners_page(request: Request, session: Session) -> Response:
    admin = dashboard(request).admin
    keys_by_partner: dict[str, list[object]] = {}
    for key in await off_loop(admin.list_keys):
        keys_by_partner.setdefault(key.partner_id, []).append(key)
    return render(request, "partners.html", session, partners=await off_loop(admin.list_partners), keys=keys_by_partner)


def confirmed(fields: dict[str, str]) -> bool:
    """Whether the POST came from the page that asks first (its form carries this field)."""
    return fields.get("confirmed") == "yes"


@signed_in
async def create_partner(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    name = fields.get("name", "")
    try:
        await off_loop(dashboard(request).admin.create_partner, name)
    except ApiError as exc:
        return answered(
            request, session, "/partners", Flash(error=exc.reason, form="new-partner", typed={"name": name})
        )
    return answered(request, session, "/partners", Flash(done="Partner created."))


@signed_in
async def issue_key(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    partner_id = request.path_params["partner_id"]
    label = fields.get("label", "")
    try:
        issued = await off_loop(dashboard(request).admin.issue_key, partner_id, None, label)
    except ApiError as exc:
        flash = Flash(error=exc.reason, form=f"issue-{partner_id}", typed={"label": label})
        return answered(request, session, "/partners", flash)
    # The secret rides in the flash cookie, never in a URL: the page shows it once, and a
    # reload of that page neither shows it again nor issues another key.
    return answered(request, session, "/partners", Flash(secret=issued.key, form=f"keys-{issued.partner_id}"))


async def _key(request: Request) -> tuple[KeyInfo, str] | None:
    admin = dashboard(request).admin
    key_id = request.path_params["key_id"]
    found = [k for k in await off_loop(admin.list_keys) if k.id == key_id]
    if not found:
        return None
    names = {p.id: p.name for p in await off_loop(admin.list_partners)}
    return found[0], names.get(found[0].partner_id, "")


@signed_in
async def revoke_page(request: Request, session: Session) -> Response:
    found = await _key(request)
    if found is None:
        return render(request, "not_found.html", session, status=404, kind="key", what=request.path_params["key_id"])
    key, partner_name = found
    return render(
        request,
        "confirm.html",
        session,
        title="Revoke a key",
        lead=f"The key {key.prefix}… of {visible(partner_name)} is refused from the moment it is revoked: "
        "every SDK call made with it answers 401.",
        goes=[],
        action=f"/keys/{key.id}/revoke",
        button="Revoke the key",
        back="/partners",
    )


@signed_in
async def revoke_key(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    if not confirmed(fields):
        return redirect(request, f"/keys/{request.path_params['key_id']}/revoke")
    try:
        await off_loop(dashboard(request).admin.revoke_key, request.path_params["key_id"])
    except ApiError as exc:
        return answered(request, session, "/partners", Flash(error=exc.reason))
    return answered(request, session, "/partners", Flash(done="Key revoked: it is refused from now on."))


@signed_in
async def rename_partner(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    partner_id = request.path_params["partner_id"]
    name = fields.get("name", "")
    try:
        await off_loop(dashboard(request).admin.rename_partner, partner_id, name)
    except ApiError as exc:
        flash = Flash(error=exc.reason, form=f"rename-{partner_id}", typed={"name": name})
        return answered(request, session, "/partners", flash)
    return answered(request, session, "/partners", Flash(done="Partner renamed."))


@signed_in
async def delete_page(request: Request, session: Session) -> Response:
    admin = dashboard(request).admin
    partner_id = request.path_params["partner_id"]
    found = [p for p in await off_loop(admin.list_partners) if p.id == partner_id]
    if not found:
        return render(request, "not_found.html", session, status=404, kind="partner", what=partner_id)
    keys, lines, subscriptions = await off_loop(admin.partner_holdings, partner_id)
    return render(
        request,
        "confirm.html",
        session,
        title="Delete a partner",
        lead=f"Deleting {visible(found[0].name)} deletes with it:",
        goes=[
            f"{keys} key{'' if keys == 1 else 's'} (refused from then on)",
            f"{lines} line{'' if lines == 1 else 's'}, with their cards and what their devices show",
            f"{subscriptions} webhook subscription{'' if subscriptions == 1 else 's'}, with every delivery",
        ],
        action=f"/partners/{partner_id}/delete",
        button="Delete the partner",
        back="/partners",
    )


@signed_in
async def delete_partner(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    partner_id = request.path_params["partner_id"]
    if not confirmed(fields):
        return redirect(request, f"/partners/{partner_id}/delete")
    try:
        await off_loop(dashboard(request).admin.delete_partner, partner_id)
    except ApiError as exc:
        return answered(request, session, "/partners", Flash(error=exc.reason))
    return answered(
        request, session, "/partners", Flash(done="Partner deleted, with its keys, lines and subscriptions.")
    )


def routes() -> list[Route]:
    return [
        Route("/partners", partners_page, methods=["GET"]),
        Route("/partners/new", create_partner, methods=["POST"]),
        Route("/partners/{partner_id}/keys", issue_key, methods=["POST"]),
        Route("/partners/{partner_id}/rename", rename_partner, methods=["POST"]),
        Route("/partners/{partner_id}/delete", delete_page, methods=["GET"]),
        Route("/partners/{partner_id}/delete", delete_partner, methods=["POST"]),
        Route("/keys/{key_id}/revoke", revoke_page, methods=["GET"]),
        Route("/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
    ]
