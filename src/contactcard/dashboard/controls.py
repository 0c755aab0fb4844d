"""Runtime controls: the profile, the write budget and its window, the journal's size, the
server's clock (advance, set, back to real time), and a reset behind a confirmation."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard import errors
from contactcard.controls import PROFILES
from contactcard.dashboard.flash import Flash
from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, answered, dashboard, form, off_loop, redirect, render, signed_in
from contactcard.errors import ApiError
from contactcard.kit import EVERYTHING_ALSO_FORGETS, RESET_FORGETS

NAV = Nav("Runtime controls", "/controls")
# What the reset form must be given, typed: a reset is not undone, so a stray click is not enough.
CONFIRM_WORD = "reset"
# Shown after a redirect, by a fixed key: nothing a link could carry is echoed into the page.
_DONE = {
    "settings": "Settings saved.",
    "restored": "Settings put back to the server's own.",
    "clock": "Clock changed.",
    "reset": f"Reset done: forgotten are {', '.join(RESET_FORGETS)}.",
    "everything": (
        f"Reset done: forgotten are {', '.join(RESET_FORGETS + EVERYTHING_ALSO_FORGETS)}; "
        "settings and clock are back to the server's own."
    ),
}
_NUMBERS = {
    # field: (label, lowest, highest); the kit checks again, these give the form's own message
    "write_budget": ("the write budget", 0, 1_000_000),
    "write_budget_window": ("the window", 1, 100 * 365 * 86400),
    "journal_size": ("the journal's size", 0, 1_000_000),
}


def _offset(seconds: float) -> str:
    if seconds == 0:
        return "real time"
    ahead = abs(seconds)
    days, rest = divmod(round(ahead), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    parts += [f"{secs} s"] * bool(secs or not parts)
    return f"{' '.join(parts)} {'ahead of' if seconds > 0 else 'behind'} real time"


@signed_in
async def controls_page(request: Request, session: Session) -> Response:
    kit = dashboard(request).kit
    settings = await off_loop(kit.settings)
    clock = await off_loop(kit.clock)
    done = request.query_params.get("done", "")
    return render(
        request,
        "controls.html",
        session,
        settings=settings,
        profiles=PROFILES,
        now=clock.now,
        offset=_offset(clock.offset),
        real=clock.real,
        done=_DONE.get(done),
    )


def _whole(fields: dict[str, str], name: str) -> int:
    label, low, high = _NUMBERS[name]
    value = fields.get(name, "").strip()
    # ASCII digits only: str.isdigit() alone takes "١" or "²".
    if not value.isascii() or not value.isdigit() or len(value) > 10 or not low <= int(value) <= high:
        raise ApiError(errors.BAD_VALUE, f"{label} must be a whole number from {low} to {high}")
    return int(value)


@signed_in
async def change_settings(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    kit = dashboard(request).kit
    try:
        profile = fields.get("profile", "")
        if profile not in PROFILES:
            raise ApiError(errors.BAD_VALUE, f"the profile must be one of {', '.join(PROFILES)}")
        wanted: dict[str, Any] = {"profile": profile, **{name: _whole(fields, name) for name in _NUMBERS}}
        current = await off_loop(kit.settings)
        # Only what changed: the others keep following the server's own settings.
        changes = {name: value for name, value in wanted.items() if getattr(current, name) != value}
        await off_loop(kit.change_settings, changes)
    except ApiError as exc:
        return answered(request, session, "/controls", Flash(error=exc.reason, form="settings", typed=fields))
    return redirect(request, "/controls?done=settings")


@signed_in
async def restore_settings(request: Request, session: Session) -> Response:
    await form(request, session)
    await off_loop(dashboard(request).kit.restore_settings)
    return redirect(request, "/controls?done=restored")


def _seconds(fields: dict[str, str]) -> float:
    value = fields.get("seconds", "").strip()
    try:
        seconds = float(value) if value.isascii() else math.nan
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        # The words of the docs and the admin API: 0 or more (back in time is "Set clock").
        raise ApiError(
            errors.BAD_VALUE, "advance the clock by a number of seconds, 0 or more (to go back, set an instant)"
        )
    return seconds


def _instant(fields: dict[str, str]) -> datetime:
    value = fields.get("instant", "").strip()
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00")) if value.isascii() else None
    except ValueError:
        instant = None
    if instant is None:
        raise ApiError(errors.BAD_VALUE, "the instant must be a date and time, e.g. 2030-01-01T00:00:00")
    # The form's datetime-local field has no zone: its label says UTC.
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


@signed_in
async def change_clock(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    kit = dashboard(request).kit
    action = fields.get("action", "")
    try:
        if action == "advance":
            await off_loop(kit.advance_clock, _seconds(fields))
        elif action == "set":
            await off_loop(kit.set_clock, _instant(fields))
        elif action == "real":
            await off_loop(kit.real_clock)
        else:
            raise ApiError(errors.BAD_VALUE, "advance, set or real: nothing else can be done to the clock")
    except ApiError as exc:
        # Beside the form it came from; an action no form sends, at the top of the page.
        where = f"clock-{action}" if action in ("advance", "set", "real") else ""
        return answered(request, session, "/controls", Flash(error=exc.reason, form=where, typed=fields))
    return redirect(request, "/controls?done=clock")


@signed_in
async def reset_page(request: Request, session: Session) -> Response:
    return render(
        request, "reset.html", session, word=CONFIRM_WORD, forgets=RESET_FORGETS, also=EVERYTHING_ALSO_FORGETS
    )


@signed_in
async def reset(request: Request, session: Session) -> Response:
    fields = await form(request, session)
    everything = fields.get("everything") == "on"
    if fields.get("confirm", "").strip().lower() != CONFIRM_WORD:
        error = f'Nothing was reset: type "{CONFIRM_WORD}" to confirm.'
        typed = {"everything": "on"} if everything else {}
        return answered(request, session, "/controls/reset", Flash(error=error, form="reset", typed=typed))
    await off_loop(dashboard(request).kit.reset, everything=everything)
    return redirect(request, f"/controls?done={'everything' if everything else 'reset'}")


def routes() -> list[Route]:
    return [
        Route("/controls", controls_page, methods=["GET"]),
        Route("/controls/settings", change_settings, methods=["POST"]),
        Route("/controls/settings/restore", restore_settings, methods=["POST"]),
        Route("/controls/clock", change_clock, methods=["POST"]),
        Route("/controls/reset", reset_page, methods=["GET"]),
        Route("/controls/reset", reset, methods=["POST"]),
    ]
