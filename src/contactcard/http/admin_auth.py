"""The admin token check every `/admin/v1` route depends on, in a module of its own so the
admin API (`admin.py`) and the test kit's routes (`admin_kit.py`) both import it without
importing each other."""

from __future__ import annotations

import hmac

from fastapi import Request

from contactcard import errors
from contactcard.errors import ApiError
from contactcard.keys import bearer_key


def require_admin(request: Request) -> None:
    token: str | None = request.app.state.settings.admin_token
    given = bearer_key(request.headers.getlist("authorization"))
    if not token or given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(errors.UNAUTHORIZED)
