"""The dashboard's session: a signed cookie that says "signed in", names the session and
holds the CSRF token.

Signed with our own HMAC-SHA256, the key derived from the admin token, rather than
Starlette's SessionMiddleware: no extra dependency, and changing the admin token signs
every session out, since their signatures no longer match. A signed-in session is also
recorded on the server (`store/dashboard_sessions.py`, by its id's hash) from sign-in to
sign-out: a copy of the cookie kept after signing out (a shared machine, a proxy's log)
opens nothing. The sign-in form's own session is only signed: it grants nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "contactcard_dashboard"  # the signed-in session
# The sign-in form's own session (its CSRF token), in a cookie of its own: a visit that
# arrives without the session cookie (SameSite=Strict withholds it on a link from another
# site) must not overwrite a signed-in session when it shows the form.
SIGN_IN_COOKIE = "contactcard_sign_in"
LIFETIME = 12 * 3600  # seconds a session lasts, signed in or not
_PURPOSE = b"contactcard dashboard session v1"


@dataclass(frozen=True)
class Session:
    signed_in: bool
    csrf: str  # sent back in every form; a POST without it is refused
    issued_at: int
    id: str = ""  # a signed-in session's, recorded on the server until sign-out

    @staticmethod
    def new(*, signed_in: bool) -> Session:
        return Session(
            signed_in, secrets.token_urlsafe(24), int(time.time()), secrets.token_urlsafe(24) if signed_in else ""
        )

    @property
    def id_hash(self) -> str:
        """What the server records: a leaked database names no usable session."""
        return hashlib.sha256(self.id.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, admin_token: str) -> None:
        self._key = hmac.new(admin_token.encode(), _PURPOSE, hashlib.sha256).digest()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def dump(self, session: Session) -> str:
        data = {"s": session.signed_in, "c": session.csrf, "t": session.issued_at, "i": session.id}
        payload = _b64(json.dumps(data).encode())
        return f"{payload}.{self._sign(payload)}"

    def load(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in the cookie; None when absent, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(bool(data["s"]), str(data["c"]), int(data["t"]), str(data.get("i", "")))
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= (now or time.time()) - session.issued_at < LIFETIME:
            return None
        return session
