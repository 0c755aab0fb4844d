"""The error envelope every non-2xx answer carries, rendered in one place."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from contactcard.errors import ApiError

TRACE_HEADER = "x-trace-id"


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def error_body(error: ApiError, trace_id: str, docs_base_url: str) -> dict[str, object]:
    inner: dict[str, object] = {
        "status": error.error.status,
        "code": error.error.code,
        "message": error.message,
        "doc_url": f"{docs_base_url}/errors/{error.error.code}",
    }
    if error.retry_after is not None:
        inner["retry_after"] = error.retry_after
    return {"success": False, "error": inner, "trace_id": trace_id}


def error_response(error: ApiError, trace_id: str, docs_base_url: str) -> Response:
    return json_response(error_body(error, trace_id, docs_base_url), error.error.status, error.headers)
