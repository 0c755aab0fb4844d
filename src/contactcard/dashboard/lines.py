"""Lines and their cards (search by number, keyset pages), one line's device and its script."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard import errors
from contactcard.admin import LineCard, LineFilter
from contactcard.dashboard.flash import Flash
from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, answered, dashboard, form, off_loop, redirect, render, signed_in, visible
from contactcard.device import DeviceScript
from contactcard.errors import ApiError

NAV = Nav("Lines and cards", "/lines")
PAGE_SIZE = 50
# The total above the list is counted no further: past it the page says "more than".
TOTAL_MOST = 10_000
STATES = {"active": "active card", "inactive": "inactive card", "none": "no card"}
# What the search box takes as the start of a number; anything else is a part of a name.
_NUMBERISH = re.compile(r"\+?[0-9]*")


async def _list(request: Request, session: Session, *, error: str | None = None, status: int = 200) -> Response:
    board = dashboard(request)
    query = request.query_params.get("q", "").strip()
    after = request.query_params.get("after", "")
    before = request.query_params.get("before") or None
    partner = request.query_params.get("partner") or None
    state = request.query_params.get("state", "")
    state = state if state in STATES else ""
    # One box for both: the start of a number (+ and digits), else a part of a card's name.
    number, name = (query, "") if _NUMBERISH.fullmatch(query) else ("", query[:100])
    where = LineFilter(number_prefix=number, partner_id=partner, state=state or None, name=name)
    total = 0
    try:
        # One row more than shown: whether a page lies beyond, without counting.
        rows = await off_loop(board.admin.line_cards, where, after=after, before=before, limit=PAGE_SIZE + 1)
        total = await off_loop(board.admin.line_count, where, at_most=TOTAL_MOST)
    except ApiError as exc:
        rows, error, status = [], exc.reason, 400
    more = len(rows) > PAGE_SIZE
    page = rows[:PAGE_SIZE]
    if before is not None:
        page.reverse()  # read backwards from `before`, nearest first
    # Going back, the page we came from lies ahead; going forward, one lies behind `after`.
    has_next, has_previous = (True, more) if before is not None else (more, bool(after))
    partners = await off_loop(board.admin.list_partners)
    return render(
        request,
        "lines.html",
        session,
        status=status,
        rows=page,
        photos={row.phone_number: board.image_src(request, row.image_blob) for row in page},
        next_after=page[-1].phone_number if page and has_next else None,
        previous_before=page[0].phone_number if page and has_previous else None,
        query=query,
        paged=bool(after or before),
        partner=partner,
        state=state,
        states=STATES,
        total=total,
        total_most=TOTAL_MOST,
        partners=partners,
        partner_name=next((p.name for p in partners if p.id == partner), None),
        error=error,
    )


@signed_in
async def lines_page(request: Request, session: Session) -> Response:
    return await _list(request, session)


@signed_in
async def add_line(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    number = fields.get("phone_number", "").strip()
    try:
        await off_loop(dashboard(request).admin.add_line, fields.get("partner_id", ""), number)
    except ApiError as exc:
        typed = {"partner_id": fields.get("partner_id", ""), "phone_number": fields.get("phone_number", "")}
        return answered(request, session, "/lines", Flash(error=exc.reason, form="add-line", typed=typed))
    return answered(request, session, f"/lines/{number}", Flash(done="Line added."))


async def _line_card(request: Request, phone: str) -> LineCard | None:
    rows = await off_loop(dashboard(request).admin.line_cards, LineFilter(number_prefix=phone), limit=1)
    # The exact number sorts before any longer number it begins.
    return rows[0] if rows and rows[0].phone_number == phone else None


@signed_in
async def line_page(request: Request, session: Session) -> Response:
    board = dashboard(request)
    phone = request.path_params["phone"]
    card = await _line_card(request, phone)
    if card is None:
        return render(request, "not_found.html", session, status=404, what=phone)
    device = await off_loop(board.admin.device_view, phone)
    return render(
        request,
        "line.html",
        session,
        card=card,
        photo=board.image_src(request, card.image_blob),
        device=device,
        device_photo=board.shown_src(request, device.image_url),
    )


def _count(fields: dict[str, str], name: str) -> int:
    value = fields.get(name, "").strip() or "0"
    if not value.isascii() or not value.isdigit() or len(value) > 7:
        raise ApiError(errors.BAD_VALUE, f"{name.replace('_', ' ')} must be a whole number from 0 to 1000000")
    return int(value)


def _delay(fields: dict[str, str]) -> float:
    value = fields.get("apply_delay", "").strip() or "0"
    try:
        delay = float(value)
    except ValueError:
        raise ApiError(errors.BAD_VALUE, "the delay must be a number of seconds") from None
    if not 0 <= delay <= 3600:  # also refuses NaN
        raise ApiError(errors.BAD_VALUE, "the delay must be from 0 to 3600 seconds")
    return delay


@signed_in
async def script_line(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    phone = request.path_params["phone"]
    try:
        script = DeviceScript(
            fail_next=min(_count(fields, "fail_next"), 1_000_000),
            rate_limit_next=min(_count(fields, "rate_limit_next"), 1_000_000),
            rcs_unavailable=fields.get("rcs_unavailable") == "on",
            apply_delay=_delay(fields),
        )
        await off_loop(dashboard(request).admin.script_device, phone, script)
    except ApiError as exc:
        if exc.error is errors.NOT_FOUND:
            return answered(request, session, "/lines", Flash(error=exc.reason))
        return answered(request, session, f"/lines/{phone}", Flash(error=exc.reason, form="script", typed=fields))
    return answered(request, session, f"/lines/{phone}", Flash(done="Script saved."))


@signed_in
async def remove_page(request: Request, session: Session) -> Response:
    phone = request.path_params["phone"]
    card = await _line_card(request, phone)
    if card is None:
        return render(request, "not_found.html", session, status=404, what=phone)
    goes = [f"the line {phone}, of {visible(card.partner_name)}"]
    if card.first_name is not None:
        goes.append("its card (subscribers receive contact_card.deleted) and what its device shows")
    return render(
        request,
        "confirm.html",
        session,
        title="Remove a line",
        lead="Removing it deletes:",
        goes=goes,
        action=f"/lines/{phone}/remove",
        button="Remove the line",
        back=f"/lines/{phone}",
    )


@signed_in
async def remove_line(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    phone = request.path_params["phone"]
    if fields.get("confirmed") != "yes":  # only the page that asks first sends it
        return redirect(request, f"/lines/{phone}/remove")
    try:
        await off_loop(dashboard(request).admin.remove_line, phone)
    except ApiError as exc:
        return answered(request, session, "/lines", Flash(error=exc.reason))
    return answered(request, session, "/lines", Flash(done=f"Line {phone} removed."))


def routes() -> list[Route]:
    return [
        Route("/lines", lines_page, methods=["GET"]),
        Route("/lines/new", add_line, methods=["POST"]),
        Route("/lines/{phone}", line_page, methods=["GET"]),
        Route("/lines/{phone}/script", script_line, methods=["POST"]),
        Route("/lines/{phone}/remove", remove_page, methods=["GET"]),
        Route("/lines/{phone}/remove", remove_line, methods=["POST"]),
    ]
