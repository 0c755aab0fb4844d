"""Build the ASGI app: routes, the error envelope for every failure, the edge middleware.

The app is plain Starlette: every public endpoint reads its request directly. The
admin API (FastAPI, for its request models) and the dashboard (Jinja2) are mounted only
when an admin token is set, so a server without one never loads either: about 10 MiB less
memory and a faster start. (pydantic itself is loaded, by the settings.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from contactcard import errors
from contactcard.bootstrap import Services, build
from contactcard.contract import MAX_BODY_BYTES
from contactcard.errors import ApiError
from contactcard.http import cards, openapi, pages, reference, webhooks
from contactcard.http.edge import BodyTooLarge, Edge
from contactcard.http.envelope import error_response, json_response
from contactcard.keys_seen import KeysSeen, KeyUseFlusher
from contactcard.settings import Settings
from contactcard.store.key_use import store_key_use

log = logging.getLogger("contactcard")


def _trace_id(request: Request) -> str:
    trace_id: str = request.scope.get("state", {}).get("trace_id", "")
    return trace_id


ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


_RETRY_SOON = {"retry-after": "1", "x-should-retry": "true"}


def _database_unavailable(exc: Exception) -> bool:
    """The database could not be reached or did not answer in time (`store/core/deadlines.py`)."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from contactcard.store.core import StoreUnavailable

    if isinstance(exc, StoreUnavailable | OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def error_handlers(docs_base_url: str) -> dict[type[Exception], ErrorHandler]:
    """Every failure in the envelope, for the app and the admin sub-app alike."""

    def render(request: Request, error: ApiError) -> Response:
        return error_response(error, _trace_id(request), docs_base_url)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return render(request, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return render(request, ApiError(errors.METHOD_NOT_ALLOWED, headers=dict(exc.headers or {})))
        if exc.status_code == 404:
            return render(request, ApiError(errors.NOT_FOUND))
        if exc.status_code == 413:
            return render(request, ApiError(errors.BODY_TOO_LARGE))
        if exc.status_code == 400:
            return render(request, ApiError(errors.BAD_BODY))
        log.error("unexpected HTTP %s (trace_id=%s)", exc.status_code, _trace_id(request))
        return render(request, ApiError(errors.INTERNAL))

    async def too_large(request: Request, exc: Exception) -> Response:
        return render(request, ApiError(errors.BODY_TOO_LARGE))

    async def unexpected(request: Request, exc: Exception) -> Response:
        if _database_unavailable(exc):  # an operator request's database call (admin, dashboard)
            log.warning("database unavailable (trace_id=%s): %s", _trace_id(request), type(exc).__name__)
            return render(request, ApiError(errors.DATABASE_UNAVAILABLE, headers=dict(_RETRY_SOON)))
        log.error("unhandled error (trace_id=%s)", _trace_id(request), exc_info=exc)
        return render(request, ApiError(errors.INTERNAL))

    return {
        ApiError: api_error,
        HTTPException: http_error,
        BodyTooLarge: too_large,
        Exception: unexpected,
    }


def _admin_routes(settings: Settings, services: Services, docs_base_url: str) -> list[Route | Mount]:
    if not settings.admin_token:
        # Off: every admin path is a 401, as with a wrong token, without loading FastAPI.
        async def admin_off(request: Request) -> Response:
            raise ApiError(errors.UNAUTHORIZED)

        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        return [Route("/admin/v1/{rest:path}", admin_off, methods=methods)]
    from contactcard.dashboard.app import dashboard_app
    from contactcard.http import admin

    async def to_dashboard(request: Request) -> Response:
        # Relative, so that it also holds behind a proxy path.
        return RedirectResponse("dashboard/", status_code=303)

    handlers = error_handlers(docs_base_url)
    admin_api = admin.admin_app(settings, services.admin, handlers, kit=services.kit)

    async def admin_document(request: Request) -> Response:
        # The admin API's own document, for the reference's admin section (the routes are
        # no secret: the README lists them; every call needs the token).
        document = {**admin_api.openapi(), "servers": [{"url": f"{settings.public_base_url}/admin/v1"}]}
        return json_response(document)

    return [
        Route("/docs/admin-api.json", admin_document, methods=["GET"]),
        Mount("/admin/v1", app=admin_api),
        # The dashboard is on exactly when the admin API is (off: its paths are plain 404s).
        Route("/dashboard", to_dashboard, methods=["GET"]),
        Mount("/dashboard", app=dashboard_app(settings, services.admin, services.kit, services.database)),
    ]


def create_app(settings: Settings | None = None, services: Services | None = None) -> Edge:
    settings = settings or Settings()
    services = services or build(settings)
    docs_base = settings.resolved_docs_base_url
    key_use = _key_use(settings, services)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Everything built so far (framework, routes, settings, modules) lives as long as
        # the process: move it out of the collector's reach, so that a full collection,
        # triggered by the garbage of requests, no longer walks it. Without this, one
        # request in a few dozen waited ~50 ms for a collection under load.
        gc.collect()
        gc.freeze()
        services.deliveries.start()  # every process delivers: no extra service to run
        services.journal.start()
        key_use.start()
        if services.metrics is not None:
            services.metrics.bind(asyncio.get_running_loop())  # before the first request is tallied
        sampler = asyncio.ensure_future(_sample_database(services)) if services.metrics else None

        yield
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        # Requests have finished (or the shutdown bound passed): store when keys were last
        # used, let queued writes commit, then close the connections bound to this loop.
        await key_use.aclose()
        await services.aclose()
        await anyio.to_thread.run_sync(services.journal.close)
        await anyio.to_thread.run_sync(services.writer.close)

    document = openapi.document(settings.public_base_url)

    async def openapi_json(request: Request) -> Response:
        return json_response(document)

    routes = [
        *(Route(path, cards.answered_in_front, methods=["GET", "POST", "PATCH"]) for path in openapi.CARD_PATHS),
        Route("/cdn/contact-card/{name}", pages.cdn_image, methods=["GET"]),
        *reference.routes(dashboard=bool(settings.admin_token)),
        Route("/docs/errors", pages.error_index, methods=["GET"]),
        Route("/docs/errors/{code}", pages.error_page, methods=["GET"]),
        Route("/healthz", pages.healthz, methods=["GET"]),
        Route("/readyz", pages.readyz, methods=["GET"]),
        *([Route("/metrics", pages.metrics, methods=["GET"])] if settings.metrics == "admin" else []),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *webhooks.routes(),
        *_admin_routes(settings, services, docs_base),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=error_handlers(docs_base))
    app.router.redirect_slashes = False  # `/v3/contact_card/` is a 404, as on the hosted API
    app.state.settings = settings
    app.state.cards = services.cards
    app.state.cdn = services.cdn
    app.state.subscriptions = services.subscriptions
    app.state.readiness = services.readiness
    app.state.metrics = services.metrics
    app.state.keys_seen = key_use.seen

    fast = cards.FastCards(app, services.cards, docs_base, key_use.seen)
    inner: ASGIApp = fast
    if settings.open_sandbox:
        from contactcard.http.sandboxed import Sandboxed
        from contactcard.sandbox import Sandbox

        inner = Sandboxed(fast, Sandbox(services.admin))
    return Edge(
        inner,
        max_body=MAX_BODY_BYTES,
        docs_base_url=docs_base,
        metrics=services.metrics,
        log_every_request=settings.access_log,
        journal=services.journal,
    )


def _key_use(settings: Settings, services: Services) -> KeyUseFlusher:
    """When each key was last used: tallied on the server's clock, stored every interval."""
    timeout = settings.database_timeout
    return KeyUseFlusher(
        KeysSeen(services.controls.time),
        functools.partial(store_key_use, services.database, timeout=timeout),
        interval=settings.key_use_flush_interval,
        timeout=timeout,
    )


async def _sample_database(services: Services, every: float = 1.0) -> None:
    """Pool use, the writers' backlog and the requests tallied, written to the metrics once a
    second: a scrape may be answered by another worker (or the supervisor), so the values
    must already be there. The last tallies are flushed when the task is cancelled."""
    assert services.metrics is not None
    try:
        while True:
            services.metrics.database(services.reads.pool_use(), services.writer.backlog())
            services.metrics.flush()
            await asyncio.sleep(every)
    finally:
        services.metrics.flush()


def create_app_from_env() -> Edge:
    """Factory for `uvicorn --factory` (several worker processes)."""
    return create_app()
