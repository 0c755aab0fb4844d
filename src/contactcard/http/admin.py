"""`/admin/v1`: the operator API, so a test suite in any language can set up partners,
keys and lines and script device outcomes without a shell. Bearer admin token.

A FastAPI sub-app, mounted by `app.py` only when an admin token is set."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.responses import Response

from contactcard import errors
from contactcard.admin import Admin
from contactcard.device import DeviceScript, DeviceView
from contactcard.errors import ApiError
from contactcard.http.admin_auth import require_admin
from contactcard.settings import Settings

if TYPE_CHECKING:
    from contactcard.kit import Kit


def _admin(request: Request) -> Admin:
    require_admin(request)
    admin: Admin = request.app.state.admin
    return admin


AdminDep = Annotated[Admin, Depends(_admin)]
router = APIRouter(tags=["admin"])
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


def admin_app(
    settings: Settings, admin: Admin, handlers: Mapping[type[Exception], ErrorHandler], *, kit: Kit | None = None
) -> FastAPI:
    """The sub-app, with the app's error handlers plus its own for pydantic's validation."""
    app = FastAPI(redirect_slashes=False, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.admin = admin
    app.state.kit = kit
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
    api_error = handlers[ApiError]

    async def validation_error(request: Request, exc: Exception) -> Response:
        # pydantic's validation, in the same envelope (never 422).
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        kind = first.get("type", "")
        if kind == "missing":
            return await api_error(request, ApiError(errors.MISSING_FIELD, where or None))
        if kind.startswith("json") or where == "":
            return await api_error(request, ApiError(errors.BAD_BODY))
        return await api_error(request, ApiError(errors.BAD_VALUE, f"{where}: {first.get('msg', 'invalid')}"))

    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(router)
    if kit is not None:
        from contactcard.http import admin_kit

        app.include_router(admin_kit.router)
    return app


class PartnerIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class PartnerOut(BaseModel):
    id: str
    name: str
    created_at: datetime


class KeyIn(BaseModel):
    key: str | None = Field(None, min_length=16, max_length=200, description="Optional fixed key (tests).")
    label: str | None = Field(None, max_length=100, description="What the operator calls it.")


class IssuedKeyOut(BaseModel):
    id: str
    partner_id: str
    key: str = Field(description="Shown once; only its hash is stored.")


class KeyOut(BaseModel):
    id: str
    partner_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    label: str | None = None
    last_used_at: datetime | None = Field(
        None,
        description="When a request last used the key, on the server's clock, up to the key-use flush interval "
        "behind (`CONTACTCARD_KEY_USE_FLUSH_INTERVAL`); null: never.",
    )


class LineIn(BaseModel):
    partner_id: str
    phone_number: str


class LineOut(BaseModel):
    phone_number: str
    partner_id: str
    has_card: bool
    is_active: bool


class ScriptIn(BaseModel):
    fail_next: int = Field(0, ge=0, le=1_000_000)
    rate_limit_next: int = Field(0, ge=0, le=1_000_000)
    rcs_unavailable: bool = False
    apply_delay: float = Field(0.0, ge=0, le=3600, description="Seconds the next apply takes.")


class DeviceOut(BaseModel):
    phone_number: str
    first_name: str | None
    last_name: str | None
    image_url: str | None
    applies: int
    applied_at: datetime | None
    fail_next: int
    rate_limit_next: int
    rcs_unavailable: bool
    apply_delay: float


def _device(view: DeviceView) -> DeviceOut:
    return DeviceOut(
        phone_number=view.phone_number,
        first_name=view.first_name,
        last_name=view.last_name,
        image_url=view.image_url,
        applies=view.applies,
        applied_at=view.applied_at,
        fail_next=view.script.fail_next,
        rate_limit_next=view.script.rate_limit_next,
        rcs_unavailable=view.script.rcs_unavailable,
        apply_delay=view.script.apply_delay,
    )


@router.post("/partners", response_model=PartnerOut)
def create_partner(body: PartnerIn, admin: AdminDep) -> PartnerOut:
    return PartnerOut(**admin.create_partner(body.name).__dict__)


@router.get("/partners", response_model=list[PartnerOut])
def list_partners(admin: AdminDep) -> list[PartnerOut]:
    return [PartnerOut(**p.__dict__) for p in admin.list_partners()]


@router.post("/partners/{partner_id}/keys", response_model=IssuedKeyOut)
def issue_key(partner_id: str, admin: AdminDep, body: KeyIn | None = None) -> IssuedKeyOut:
    issued = admin.issue_key(partner_id, body.key if body else None, body.label if body else None)
    return IssuedKeyOut(**issued.__dict__)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(admin: AdminDep, partner_id: str | None = None) -> list[KeyOut]:
    return [KeyOut(**k.__dict__) for k in admin.list_keys(partner_id)]


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, admin: AdminDep) -> None:
    admin.revoke_key(key_id)


@router.post("/lines", response_model=LineOut)
def add_line(body: LineIn, admin: AdminDep) -> LineOut:
    return LineOut(**admin.add_line(body.partner_id, body.phone_number).__dict__)


@router.get("/lines", response_model=list[LineOut])
def list_lines(admin: AdminDep, partner_id: str | None = None) -> list[LineOut]:
    return [LineOut(**line.__dict__) for line in admin.list_lines(partner_id)]


@router.delete("/lines/{phone_number}", status_code=204)
def remove_line(phone_number: str, admin: AdminDep) -> None:
    admin.remove_line(phone_number)


class DeliveryOut(BaseModel):
    event_id: str
    subscription_id: str
    partner_id: str
    event_type: str
    phone_number: str | None
    status: str
    attempts: int
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    last_latency_ms: float | None
    created_at: datetime
    finished_at: datetime | None


@router.get("/webhook-deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    admin: AdminDep, subscription_id: str | None = None, event_id: str | None = None
) -> list[DeliveryOut]:
    """Deliveries, newest first: attempts, status, last answer, latency, error, next attempt."""
    return [DeliveryOut(**d.__dict__) for d in admin.list_deliveries(subscription_id, event_id)]


@router.post("/webhook-deliveries/{event_id}/{subscription_id}/redeliver", response_model=DeliveryOut)
def redeliver(event_id: str, subscription_id: str, admin: AdminDep) -> DeliveryOut:
    return DeliveryOut(**admin.redeliver(event_id, subscription_id).__dict__)


@router.get("/devices/{phone_number}", response_model=DeviceOut)
def device_view(phone_number: str, admin: AdminDep) -> DeviceOut:
    return _device(admin.device_view(phone_number))


@router.put("/devices/{phone_number}/script", response_model=DeviceOut)
def script_device(phone_number: str, body: ScriptIn, admin: AdminDep) -> DeviceOut:
    script = DeviceScript(body.fail_next, body.rate_limit_next, body.rcs_unavailable, body.apply_delay)
    return _device(admin.script_device(phone_number, script))
