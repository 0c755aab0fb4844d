"""Build the ASGI app: routes, the error envelope for every failure, the edge middleware."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from contactcard import errors
from contactcard.admin import AdminError
from contactcard.bootstrap import Services, build
from contactcard.contract import MAX_BODY_BYTES
from contactcard.errors import ApiError
from contactcard.http import admin, cards, openapi, pages
from contactcard.http.edge import BodyTooLarge, Edge
from contactcard.http.envelope import error_response, json_response
from contactcard.settings import Settings

log = logging.getLogger("contactcard")


def _trace_id(request: Request) -> str:
    return request.scope.get("state", {}).get("trace_id", "")


def _install_error_handlers(app: FastAPI, docs_base_url: str) -> None:
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

    async def validation_error(request: Request, exc: Exception) -> Response:
        # The admin API's pydantic validation, in the same envelope (never 422).
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        kind = first.get("type", "")
        if kind == "missing":
            return render(request, ApiError(errors.MISSING_FIELD, where or None))
        if kind.startswith("json") or where == "":
            return render(request, ApiError(errors.BAD_BODY))
        return render(request, ApiError(errors.BAD_VALUE, f"{where}: {first.get('msg', 'invalid')}"))

    async def admin_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdminError)
        return render(request, admin.admin_failure(exc))

    async def too_large(request: Request, exc: Exception) -> Response:
        return render(request, ApiError(errors.BODY_TOO_LARGE))

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error (trace_id=%s)", _trace_id(request), exc_info=exc)
        return render(request, ApiError(errors.INTERNAL))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_exception_handler(AdminError, admin_error)
    app.add_exception_handler(Exception, unexpected)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Edge:
    settings = settings or Settings()
    services = services or build(settings)
    docs_base = settings.resolved_docs_base_url
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything built so far (framework, routes, settings, modules) lives as long as
        # the process: move it out of the collector's reach, so that a full collection,
        # triggered by the garbage of requests, no longer walks it. Without this, one
        # request in a few dozen waited ~50 ms for a collection under load.
        gc.collect()
        gc.freeze()
        yield
        await services.cards.aclose()  # PostgreSQL's pool of GET connections, bound to this loop

    app = FastAPI(
        lifespan=lifespan,
        title="contactcard",
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.cards = services.cards
    app.state.admin = services.admin
    app.state.cdn = services.cdn
    document = openapi.document(settings.public_base_url)

    for path in openapi.CARD_PATHS:
        app.router.add_route(path, cards.contact_card, methods=["GET", "POST", "PATCH"], include_in_schema=False)
    app.router.add_route("/cdn/contact-card/{name}", pages.cdn_image, methods=["GET"], include_in_schema=False)
    app.router.add_route("/docs/errors", pages.error_index, methods=["GET"], include_in_schema=False)
    app.router.add_route("/docs/errors/{code}", pages.error_page, methods=["GET"], include_in_schema=False)
    app.router.add_route("/healthz", pages.healthz, methods=["GET"], include_in_schema=False)

    async def openapi_json(request: Request) -> Response:
        return json_response(document)

    app.router.add_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    app.include_router(admin.router)
    _install_error_handlers(app, docs_base)
    fast = cards.FastGet(app, services.cards, docs_base)
    return Edge(fast, max_body=MAX_BODY_BYTES, docs_base_url=docs_base)


def create_app_from_env() -> Edge:
    """Factory for `uvicorn --factory` (several worker processes)."""
    return create_app()
