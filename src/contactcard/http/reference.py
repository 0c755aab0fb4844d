"""`/docs`: the served OpenAPI document as a searchable reference, with the Swagger UI
bundle (version 5, which reads OpenAPI 3.1) vendored by the `swagger-ui-py` package: no
CDN, so it works offline.

Every link on the page is relative, so it works behind a proxy path too."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from contactcard import errors
from contactcard.errors import ApiError


def _swagger_static() -> Path:
    # Located without importing the package: only its static files are used.
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations, "swagger-ui-py is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "static"


_SWAGGER = _swagger_static()
_OWN = Path(__file__).resolve().parent / "static"
# The only files served, by name: nothing else of either folder is reachable.
ASSETS = {
    "swagger-ui.css": _SWAGGER / "swagger-ui.css",
    "swagger-ui-bundle.js": _SWAGGER / "swagger-ui-bundle.js",
    "reference.js": _OWN / "reference.js",
    "reference.css": _OWN / "reference.css",
    "errors.css": _OWN / "errors.css",
    "favicon-32x32.png": _SWAGGER / "favicon-32x32.png",
}
# Scripts and styles from this server only (no inline script); Swagger UI's icons are
# data: images; "Try it out" calls this server.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'self'"
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API reference · contactcard</title>
<link rel="icon" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
<link rel="stylesheet" href="docs/assets/reference.css">
</head>
<body>
<p class="links"><a href="docs/errors">Error codes</a> · <a href="openapi.json">openapi.json</a>{dashboard}</p>
<div id="reference" data-spec="openapi.json"></div>{admin}
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/reference.js"></script>
</body>
</html>
"""


# The admin API (`/admin/v1`, bearer the admin token) documented apart from the partner API.
_ADMIN_SECTION = """
<h2 class="section" id="admin-api">Admin API (<code>/admin/v1</code>, the admin token as bearer)</h2>
<div id="admin-reference" data-spec="docs/admin-api.json"></div>"""


def routes(*, dashboard: bool) -> list[Route]:
    page = _PAGE.replace("{dashboard}", ' · <a href="dashboard">Dashboard</a>' if dashboard else "")
    page = page.replace("{admin}", _ADMIN_SECTION if dashboard else "")

    async def reference(request: Request) -> Response:
        return HTMLResponse(page, headers=HEADERS)

    return [
        Route("/docs", reference, methods=["GET"]),
        Route("/docs/assets/{name}", asset, methods=["GET"]),
        # Asked for by every browser on every page without an icon of its own: not a 404.
        Route("/favicon.ico", favicon, methods=["GET"]),
    ]


async def favicon(request: Request) -> Response:
    return FileResponse(ASSETS["favicon-32x32.png"], headers={**HEADERS, "cache-control": "public, max-age=86400"})


async def asset(request: Request) -> Response:
    path = ASSETS.get(request.path_params["name"])
    if path is None:
        raise ApiError(errors.NOT_FOUND)
    return FileResponse(path, headers={**HEADERS, "cache-control": "public, max-age=3600"})
