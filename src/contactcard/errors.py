"""The error catalogue: every (status, code, message) the server can send.

Use cases raise `ApiError(CATALOGUE_ENTRY, ...)`; the HTTP layer renders it into the
envelope in one place. The error pages with their table (docs/errors.md) and the OpenAPI
document are all generated from `CATALOGUE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ErrorCode:
    status: int
    code: int
    message: str
    meaning: str
    fix: str
    retry: bool = False  # an SDK may retry it at once, with backoff
    # Worth sending again only after the wait the answer names (`retry_after`): not at once.
    wait_first: bool = False

    @property
    def retry_advice(self) -> str:
        if self.wait_first:
            return "yes, once the `retry_after` seconds have passed (not sooner: each early try is refused)"
        return "yes, with backoff" if self.retry else "no, fix the request first"


MISSING_FIELD = ErrorCode(
    400,
    1001,
    "Missing required field",
    "A required field or query parameter is absent. The message names it.",
    "Send the named field.",
)
BAD_PHONE = ErrorCode(
    400,
    1002,
    "Phone number must be in E.164 format",
    "A phone number in the query or the body does not match `^\\+[1-9][0-9]{1,14}$`.",
    "Include the country code with a `+` prefix and digits only, e.g. `+15551234567`.",
)
BAD_BODY = ErrorCode(
    400,
    1003,
    "Invalid request body",
    "The body is not a JSON object: malformed JSON, bad UTF-8, duplicate keys, NaN or "
    "Infinity, nesting too deep, or a Content-Type other than `application/json`.",
    "Send one JSON object with `Content-Type: application/json`.",
)
BAD_VALUE = ErrorCode(
    400,
    1005,
    "Invalid parameter value",
    "A field has the wrong type or an unacceptable value (an empty or over-long name, "
    "control or bidirectional characters, an image URL that is not absolute https, a "
    "repeated query parameter). The message names the field and the reason.",
    "Correct the named value.",
)
RATE_LIMITED = ErrorCode(
    429,
    1007,
    "Rate limit exceeded",
    "This phone number used its write budget (POST and PATCH share 3 calls every 10 minutes "
    "by default). `Retry-After` and `error.retry_after` give the wait in seconds.",
    "Wait `retry_after` seconds. The response carries `x-should-retry: false` so SDKs do not sleep the whole window.",
    wait_first=True,
)
METHOD_NOT_ALLOWED = ErrorCode(
    405,
    1405,
    "Method not allowed",
    "The route exists but does not accept this HTTP method. The `Allow` header lists those it does.",
    "Use one of the methods in `Allow`.",
)
BODY_TOO_LARGE = ErrorCode(
    413,
    1413,
    "Request body too large",
    "The request body is larger than 64 KiB.",
    "Send a smaller body; images are passed by URL, never inline.",
)
NOT_FOUND = ErrorCode(
    404,
    2001,
    "Resource not found",
    "No such route, or (PATCH) the line has no contact card that can be updated yet.",
    "Check the path; set the card up with POST first.",
)
UNAUTHORIZED = ErrorCode(
    401,
    2004,
    "Unauthorized - missing or invalid authentication token",
    "The `Authorization: Bearer <key>` header is missing, malformed, or names an unknown or revoked key.",
    "Send a valid API key.",
)
FORBIDDEN = ErrorCode(
    403,
    2005,
    "Access denied - insufficient permissions for this resource",
    "Your partner account does not own this phone number (whether another partner owns it or nobody does).",
    "Use a number assigned to your account.",
)
CARD_EXISTS = ErrorCode(
    409,
    2014,
    "Contact card already exists",
    "POST is for first-time setup only and this line already has an active card.",
    "Update it with PATCH. The response carries `x-should-retry: false`.",
)
APPLY_INCOMPLETE = ErrorCode(
    500,
    2022,
    "Setup or update did not complete; call again",
    "(`hosted` profile) The card was stored but the line's device did not apply it; it is inactive.",
    "Call the same endpoint again.",
    retry=True,
)
INTERNAL = ErrorCode(
    500,
    3006,
    "Internal server error",
    "An unexpected failure. No detail is disclosed; the `trace_id` finds it in the server log.",
    "Retry with backoff; report the `trace_id` if it persists.",
    retry=True,
)
RCS_UNAVAILABLE = ErrorCode(
    503,
    4004,
    "RCS capability check is temporarily unavailable.",
    "Either the line's RCS capability check could not run (PATCH; nothing changed), or the "
    "upstream write is rate-limited (POST and PATCH; the card holds the new values, inactive).",
    "Wait before retrying. For the upstream limit, repeated attempts extend it, so the "
    "response carries `x-should-retry: false`.",
    retry=True,
)
WRITES_BUSY = ErrorCode(
    503,
    4005,
    "Too many writes are waiting; retry shortly",
    "(ours) The server has more writes queued than `CONTACTCARD_WRITE_QUEUE_LIMIT`, or a write "
    "waited longer than its bound for its line or the database. Nothing was stored. "
    "`Retry-After` gives a wait in seconds.",
    "Retry after `Retry-After` seconds; spread writes over time.",
    retry=True,
)
DATABASE_UNAVAILABLE = ErrorCode(
    503,
    4006,
    "Database temporarily unavailable",
    "(ours) The server could not reach its database, or the database refused the change (locked, "
    "read-only, or out of disk), or did not answer within `CONTACTCARD_DATABASE_TIMEOUT`. Nothing "
    "was half-written; nothing changed, unless the message says the change was sent (then it "
    "may have been applied whole: read before writing again). `Retry-After` gives a wait in seconds.",
    "Retry after `Retry-After` seconds; operators: see the server log for the cause.",
    retry=True,
)
# `4006` for a write sent to the database that did not answer by the deadline.
IN_DOUBT_MESSAGE = (
    "Database did not answer in time after the change was sent: it may have been applied "
    "(whole, never half); read before you write again"
)
SHUTTING_DOWN = ErrorCode(
    503,
    4007,
    "Server is shutting down; retry",
    "(ours) The server stopped before this request finished, after its graceful-shutdown bound "
    "(`CONTACTCARD_SHUTDOWN_TIMEOUT`). A write may have stored its values inactive.",
    "Retry after `Retry-After` seconds (another instance, or this one once restarted).",
    retry=True,
)
IMAGE_STORE_UNAVAILABLE = ErrorCode(
    503,
    4008,
    "Image storage temporarily unavailable",
    "(ours) The image was fetched and checked, but the store that keeps rehosted images (the "
    "local folder or the S3-compatible bucket) could not take it or give it back. No card was "
    "stored or changed. `Retry-After` gives a wait in seconds.",
    "Retry after `Retry-After` seconds; operators: see the server log and `/readyz`.",
    retry=True,
)
# The same code answers an upstream rate limit on an apply (with its own message).
UPSTREAM_RATE_LIMITED = RCS_UNAVAILABLE
IMAGE_FETCH_FAILED = ErrorCode(
    400,
    5006,
    "Image could not be fetched",
    "The `image_url` could not be downloaded: non-public address, DNS failure, timeout, "
    "non-200 status, too large, too many redirects. The message names the reason. Nothing was stored.",
    "Host the image at a public https URL that answers 200 with at most 10 MB.",
)
IMAGE_UNUSABLE = ErrorCode(
    400,
    5007,
    "Image could not be used",
    "The downloaded file is not a supported image (JPEG, PNG, GIF, WebP, HEIC), is corrupt, "
    "or is too large in pixels. The message names the reason. Nothing was stored.",
    "Use a JPEG, PNG, GIF, WebP or HEIC image of at most 50 megapixels.",
)

CATALOGUE: tuple[ErrorCode, ...] = (
    MISSING_FIELD,
    BAD_PHONE,
    BAD_BODY,
    BAD_VALUE,
    RATE_LIMITED,
    METHOD_NOT_ALLOWED,
    BODY_TOO_LARGE,
    NOT_FOUND,
    UNAUTHORIZED,
    FORBIDDEN,
    CARD_EXISTS,
    APPLY_INCOMPLETE,
    INTERNAL,
    RCS_UNAVAILABLE,
    WRITES_BUSY,
    DATABASE_UNAVAILABLE,
    SHUTTING_DOWN,
    IMAGE_STORE_UNAVAILABLE,
    IMAGE_FETCH_FAILED,
    IMAGE_UNUSABLE,
)
BY_CODE: dict[int, ErrorCode] = {e.code: e for e in CATALOGUE}

UPSTREAM_RATE_LIMITED_MESSAGE = (
    "Upstream write is rate-limited: the card was not applied and is not active. "
    "Wait before retrying; repeated attempts extend the limit."
)


@dataclass
class ApiError(Exception):
    """An expected failure of a request, rendered as the error envelope."""

    error: ErrorCode
    detail: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int | None = None
    text: str | None = None  # replaces the catalogue message (one code, two causes)

    @property
    def message(self) -> str:
        if self.text is not None:
            return self.text
        return f"{self.error.message}: {self.detail}" if self.detail else self.error.message

    @property
    def reason(self) -> str:
        """What went wrong in the words of whoever refused it: the detail alone when there is
        one (an operator's refusal, shown as such by the dashboard and the CLI)."""
        return self.detail or self.message

    def __str__(self) -> str:  # keeps logs readable
        return f"{self.error.status} {self.error.code} {self.message}"
