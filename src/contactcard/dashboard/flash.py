"""What a form's answer tells the page it redirects to (Post/Redirect/Get).

Every form is answered with a 303 to a GET address, so that a reload or Back never posts
again. What that GET page must show once (a message, an error beside the form that failed,
what was typed, a new key's secret) travels in a short-lived cookie of its own: signed with
the session's key and bound to the session's CSRF token (no other session, and no link,
can plant one), HttpOnly, and cleared by the page that shows it, so a reload shows it no
more. A secret never goes in a URL, and is kept nowhere on the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

FLASH_COOKIE = "contactcard_flash"
# Long enough for the browser to follow the redirect, short enough that a flash not shown
# (the redirect was never followed) is soon gone.
FLASH_LIFETIME = 120
_PURPOSE = b"contactcard dashboard flash v1"
_MAX_TYPED = 1000  # characters of one typed value kept (a cookie holds about 4 KB)


@dataclass(frozen=True)
class Flash:
    """Shown once by the page a form redirected to."""

    done: str = ""  # what was done
    error: str = ""  # why nothing was done
    form: str = ""  # which of the page's forms the error and the typed values belong to
    typed: dict[str, str] = field(default_factory=dict)  # the form's fields as they were sent
    secret: str = ""  # a new key, shown this once

    def field(self, form: str, name: str, default: Any = "") -> Any:
        """What was typed in `form`'s field `name`, if that form failed; else `default`."""
        if self.form == form and name in self.typed:
            return self.typed[name]
        return default

    def error_of(self, form: str) -> str:
        return self.error if self.form == form else ""


NO_FLASH = Flash()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Flashes:
    def __init__(self, admin_token: str) -> None:
        self._key = hmac.new(admin_token.encode(), _PURPOSE, hashlib.sha256).digest()

    def _sign(self, bound_to: str, payload: str) -> str:
        message = f"{bound_to}.{payload}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def dump(self, flash: Flash, bound_to: str) -> str:
        typed = {name: value[:_MAX_TYPED] for name, value in flash.typed.items()}
        data = {"d": flash.done, "e": flash.error, "f": flash.form, "t": typed, "s": flash.secret}
        payload = _b64(json.dumps(data, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(bound_to, payload)}"

    def load(self, cookie: str | None, bound_to: str) -> Flash:
        """The flash in the cookie, if it was made for this session; else nothing."""
        if not cookie or cookie.count(".") != 1:
            return NO_FLASH
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(bound_to, payload)):
            return NO_FLASH
        try:
            data = json.loads(_unb64(payload))
            typed = {str(k): str(v) for k, v in dict(data["t"]).items()}
            return Flash(str(data["d"]), str(data["e"]), str(data["f"]), typed, str(data["s"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return NO_FLASH
