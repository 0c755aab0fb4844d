"""Small routes beside the API: CDN images, error-code pages, liveness and readiness."""

from __future__ import annotations

import hmac
import html

import anyio.to_thread
from markdown_it import MarkdownIt
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from contactcard import errors
from contactcard.cdn import BlobStore, BlobStoreUnavailable
from contactcard.cdn.base import IMMUTABLE
from contactcard.errors import ApiError
from contactcard.http.envelope import json_response
from contactcard.http.reference import HEADERS
from contactcard.keys import bearer_key
from contactcard.metrics import CONTENT_TYPE, Metrics
from contactcard.readiness import Readiness

_RETRY_SOON = {"retry-after": "1", "x-should-retry": "true"}


async def cdn_image(request: Request) -> Response:
    cdn: BlobStore = request.app.state.cdn
    try:
        blob = await anyio.to_thread.run_sync(cdn.get, request.path_params["name"])
    except BlobStoreUnavailable:
        raise ApiError(errors.IMAGE_STORE_UNAVAILABLE, headers=_RETRY_SOON) from None
    if blob is None:
        raise ApiError(errors.NOT_FOUND)
    headers = {"etag": blob.etag, "cache-control": IMMUTABLE, "x-content-type-options": "nosniff"}
    if request.headers.get("if-none-match") == blob.etag:
        return Response(status_code=304, headers=headers)
    return Response(blob.data, media_type=blob.content_type, headers=headers)


# CommonMark without raw HTML: the catalogue's backticks become <code>, and nothing in it
# could become markup of its own.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})


def _md(text: str) -> str:
    rendered: str = _MARKDOWN.renderInline(text)
    return rendered


def _page(title: str, body: str, root: str) -> HTMLResponse:
    # `root`: the way back to the site's root from this page, relative (a proxy path holds).
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)} · contactcard</title>"
        f"<link rel='icon' href='{root}docs/assets/favicon-32x32.png'>"
        f"<link rel='stylesheet' href='{root}docs/assets/errors.css'></head>"
        f"<body><main class='error-doc'>{body}</main></body></html>",
        headers=HEADERS,
    )


async def error_index(request: Request) -> Response:
    rows = "".join(
        f"<tr><td>{e.status}</td><td><a href='errors/{e.code}'>{e.code}</a></td><td>{html.escape(e.message)}</td>"
        f"<td>{_md(e.retry_advice)}</td></tr>"
        for e in errors.CATALOGUE
    )
    return _page(
        "Error codes",
        "<p class='links'><a href='../docs'>API reference</a></p><h1>Error codes</h1>"
        "<table><thead><tr><th>status</th><th>code</th><th>message</th><th>retry</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>",
        "../",
    )


async def error_page(request: Request) -> Response:
    try:
        entry = errors.BY_CODE[int(request.path_params["code"])]
    except (KeyError, ValueError):
        raise ApiError(errors.NOT_FOUND) from None
    return _page(
        f"Error {entry.code}",
        # Relative: /docs/errors/<code> -> /docs, behind a proxy path too.
        "<p class='links'><a href='../errors'>All error codes</a> · <a href='../../docs'>API reference</a></p>"
        f"<h1>{entry.code}: {html.escape(entry.message)}</h1>"
        f"<p class='status'>HTTP status <strong>{entry.status}</strong>.</p>"
        f"<h2>What it means</h2><p>{_md(entry.meaning)}</p>"
        f"<h2>What to do</h2><p>{_md(entry.fix)}</p>"
        f"<p class='retry'>Retry: {_md(entry.retry_advice)}.</p>",
        "../../",
    )


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when every dependency answered within its bound; 503 (not the envelope: a load
    balancer reads the status, an operator the per-dependency states) otherwise."""
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.check()
    ready = all(state == "ok" for state in checks.values())
    return json_response({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


async def metrics(request: Request) -> Response:
    """The Prometheus scrape, for the admin token's bearer only (`CONTACTCARD_METRICS=admin`)."""
    token: str | None = request.app.state.settings.admin_token
    given = bearer_key(request.headers.getlist("authorization"))
    if not token or given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(errors.UNAUTHORIZED)
    found: Metrics = request.app.state.metrics
    # Reading every worker's files in multiprocess mode is file work: off the event loop.
    body = await anyio.to_thread.run_sync(found.render)
    return Response(body, media_type=CONTENT_TYPE)
