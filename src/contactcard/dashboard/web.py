"""What every dashboard page shares: the signed-in check, the CSRF check on forms,
template rendering and the security headers."""

from __future__ import annotations

import functools
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

import anyio.to_thread
from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contactcard.admin import Admin
from contactcard.contract import hidden_character
from contactcard.dashboard.flash import FLASH_COOKIE, FLASH_LIFETIME, NO_FLASH, Flash, Flashes
from contactcard.dashboard.session import COOKIE, LIFETIME, SIGN_IN_COOKIE, Session, Sessions
from contactcard.dashboard.throttle import SignInThrottle
from contactcard.kit import Kit
from contactcard.settings import Settings
from contactcard.store.dashboard_sessions import SessionRecords

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
_FORM_TYPE = "application/x-www-form-urlencoded"
Page = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


@dataclass(frozen=True)
class Nav:
    """A link in the dashboard's menu: its label and its path below `/dashboard`."""

    label: str
    path: str


@dataclass
class Dashboard:
    """The collaborators of every page, kept on the dashboard app's state."""

    settings: Settings
    admin: Admin
    kit: Kit
    sessions: Sessions
    records: SessionRecords
    flashes: Flashes
    throttle: SignInThrottle
    templates: Environment
    nav: list[Nav]

    def image_src(self, request: Request, blob: str | None) -> str | None:
        """Where the browser loads a rehosted photo: through this server's own CDN route
        (relative to wherever the dashboard is mounted) unless another CDN serves them."""
        if not blob:
            return None
        if self.settings.cdn_base_url:
            return f"{self.settings.cdn_base_url}/contact-card/{blob}"
        return f"{site_root(request)}/cdn/contact-card/{blob}"

    def shown_src(self, request: Request, image_url: str | None) -> str | None:
        """Where the browser loads the photo a device shows: the same CDN copy when it is one
        of ours (the device was given its absolute URL), else nothing (the page names it)."""
        prefix = f"{self.settings.resolved_cdn_base_url}/contact-card/"
        if image_url and image_url.startswith(prefix):
            return self.image_src(request, image_url.removeprefix(prefix))
        return None


async def off_loop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking operator call (SQLAlchemy, on the operator engines) in a worker thread: the
    event loop keeps answering the API meanwhile."""
    return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))


def visible(text: object) -> str:
    """The text with every control or bidirectional character spelled out (`⟨U+202E⟩`): names
    stored before such names were refused cannot reorder the page around them."""
    value = "" if text is None else str(text)
    if not any(map(hidden_character, value)):
        return value
    return "".join(f"⟨U+{ord(c):04X}⟩" if hidden_character(c) else c for c in value)


def templates() -> Environment:
    # Autoescape everything: names and URLs come from API callers.
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, auto_reload=False)
    environment.filters["visible"] = visible
    return environment


def dashboard(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


def base(request: Request) -> str:
    """The dashboard's own path, proxy prefix (`--root-path`) included: Starlette's Mount
    puts both in `root_path`."""
    root: str = request.scope.get("root_path", "")
    return root


def site_root(request: Request) -> str:
    return base(request).removesuffix("/dashboard")


def is_https(request: Request) -> bool:
    settings = dashboard(request).settings
    return request.url.scheme == "https" or settings.public_base_url.startswith("https://")


async def session_of(request: Request) -> Session | None:
    """The signed-in session, if the request carries one still in force (not signed out)."""
    board = dashboard(request)
    session = board.sessions.load(request.cookies.get(COOKIE))
    if session is None or not session.signed_in or not session.id:
        return None
    if not await off_loop(board.records.in_force, session.id_hash, time.time()):
        return None
    return session


def sign_in_session_of(request: Request) -> Session | None:
    """The sign-in form's session (not signed in), if the request carries one."""
    session = dashboard(request).sessions.load(request.cookies.get(SIGN_IN_COOKIE))
    return session if session is not None and not session.signed_in else None


def set_session(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE if session.signed_in else SIGN_IN_COOKIE,
        dashboard(request).sessions.dump(session),
        max_age=LIFETIME,
        path=base(request) or "/",
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )


def clear_session(request: Request, response: Response, cookie: str = COOKIE) -> None:
    response.delete_cookie(
        cookie, path=base(request) or "/", secure=is_https(request), httponly=True, samesite="strict"
    )


def render(
    request: Request,
    template: str,
    session: Session | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    board = dashboard(request)
    cookie = request.cookies.get(FLASH_COOKIE)
    flash = board.flashes.load(cookie, session.csrf) if session is not None and cookie else NO_FLASH
    html = board.templates.get_template(template).render(
        base=base(request),
        site=site_root(request),
        nav=board.nav,
        here=request.url.path.removeprefix(base(request)),
        session=session,
        flash=flash,
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=headers)
    if cookie is not None:
        # Shown once: a reload, or Back to this page, shows it no more.
        clear_session(request, response, FLASH_COOKIE)
    return response


def redirect(request: Request, path: str) -> RedirectResponse:
    # 303: the browser follows a POST's answer with a GET.
    return RedirectResponse(base(request) + path, status_code=303)


def answered(request: Request, session: Session, path: str, flash: Flash) -> RedirectResponse:
    """A form's answer: a redirect to the GET page at `path`, which shows `flash` once."""
    response = redirect(request, path)
    response.set_cookie(
        FLASH_COOKIE,
        dashboard(request).flashes.dump(flash, session.csrf),
        max_age=FLASH_LIFETIME,
        path=base(request) or "/",
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )
    return response


def signed_in(page: Callable[[Request, Session], Awaitable[Response]]) -> Page:
    """The page for a signed-in session; anyone else is sent to the sign-in page."""

    async def guarded(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            # Back to the page asked for once signed in (a GET's; a form is not posted again).
            asked = request.url.path.removeprefix(base(request))
            if request.url.query:
                asked += "?" + request.url.query
            wanted = safe_next(asked) if request.method == "GET" else "/"
            return redirect(request, "/sign-in" + (f"?next={quote(wanted, safe='/')}" if wanted != "/" else ""))
        return await page(request, session)

    return guarded


# Where sign-in may send the browser: a path below the dashboard, in plain URL characters.
_NEXT = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,500}")


def safe_next(asked: str) -> str:
    """A page below the dashboard to land on after sign-in; "/" (the overview) for anything
    else: another site, a scheme, `//host`, a backslash, the sign-in pages themselves."""
    if not _NEXT.fullmatch(asked) or asked.startswith(("//", "/sign-in", "/sign-out")):
        return "/"
    return asked


class FormRefused(Exception):
    """A POST without the session's CSRF token (or not a form at all)."""


async def form(request: Request, session: Session | None) -> dict[str, str]:
    """The fields of a POSTed form, after its CSRF token was checked against the session's."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != _FORM_TYPE:
        raise FormRefused("not a form")
    try:
        fields = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise FormRefused("unreadable form") from None
    given = fields.pop("csrf", "")
    if session is None or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise FormRefused("missing or stale form token")
    return fields


def csp(settings: Settings) -> str:
    images = "'self'"
    if settings.cdn_base_url:  # photos from another CDN
        parts = urlsplit(settings.cdn_base_url)
        images += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


class SecurityHeaders:
    """Pure ASGI: the same strict headers on every answer of the app it wraps."""

    def __init__(self, app: ASGIApp, policy: str, *, cache: bool = False) -> None:
        self.app = app
        headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if not cache:
            # Pages hold the CSRF token (and once, a new key): never kept by a cache.
            headers.append((b"cache-control", b"no-store"))
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)
