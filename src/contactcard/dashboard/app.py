"""Build the dashboard's ASGI app from its page modules.

Adding a page group (webhooks, the request journal, runtime controls): write a module
beside `lines.py` with `NAV` (a `Nav`, or None to stay out of the menu) and `routes()`
(Starlette routes below `/dashboard`, each wrapped in `signed_in` and reading POSTs with
`form`, which checks the CSRF token), put its templates in `templates/` (extending
`base.html`), and add the module to `PAGES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from contactcard.admin import Admin
from contactcard.dashboard import controls, journal, lines, overview, partners, signin, webhooks
from contactcard.dashboard.flash import Flashes
from contactcard.dashboard.session import Sessions
from contactcard.dashboard.throttle import SignInThrottle
from contactcard.dashboard.web import (
    STATIC,
    Dashboard,
    FormRefused,
    Nav,
    SecurityHeaders,
    csp,
    render,
    session_of,
    templates,
)
from contactcard.kit import Kit
from contactcard.settings import Settings
from contactcard.store.core import StoreUnavailable
from contactcard.store.dashboard_sessions import SessionRecords
from contactcard.store.db import Database

DATABASE_ERRORS: tuple[type[Exception], ...] = (StoreUnavailable, OperationalError, PoolTimeout)

# The page groups, in menu order: the extension point.
PAGES: tuple[ModuleType, ...] = (signin, overview, partners, lines, webhooks, journal, controls)


async def _form_refused(request: Request, exc: Exception) -> Response:
    # A form without this session's token: possibly another site posting here.
    return render(request, "refused.html", await session_of(request), status=403)


async def _not_a_page(request: Request, exc: Exception) -> Response:
    # A form's address opened with GET (Back, a bookmark, a reload of an old tab): a page
    # that says so, not the framework's bare plain-text 405.
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return render(request, "method.html", await session_of(request), status=405, headers=dict(exc.headers or {}))
    return render(
        request, "not_found.html", await session_of(request), status=exc.status_code, kind="page", what=request.url.path
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    # The database refused or did not answer within its timeout (`store/core/deadlines.py`).
    return PlainTextResponse("The database is not answering; try again in a moment.", 503, headers={"retry-after": "1"})


def dashboard_app(settings: Settings, admin: Admin, kit: Kit, database: Database) -> ASGIApp:
    assert settings.admin_token, "the dashboard is off without an admin token"
    routes: list[BaseRoute] = [Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    nav: list[Nav] = []
    for module in PAGES:
        routes.extend(module.routes())
        if module.NAV is not None:
            nav.append(module.NAV)
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        FormRefused: _form_refused,
        HTTPException: _not_a_page,
    }
    handlers.update(dict.fromkeys(DATABASE_ERRORS, _database_unavailable))
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.router.redirect_slashes = False
    app.state.dashboard = Dashboard(
        settings,
        admin,
        kit,
        Sessions(settings.admin_token),
        SessionRecords(database),
        Flashes(settings.admin_token),
        SignInThrottle(),
        templates(),
        nav,
    )
    return SecurityHeaders(app, csp(settings))
