"""`/admin/v1` routes of the test kit: settings, the clock, reset and the request journal.

Thin: each route turns HTTP into a `kit.Kit` call and back. Mounted with the rest of the
admin API (`admin.py`), behind the same admin token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from contactcard import journal
from contactcard.controls import Controls
from contactcard.http.admin_auth import require_admin
from contactcard.kit import ClockView, Kit


def _kit(request: Request) -> Kit:
    require_admin(request)
    kit: Kit = request.app.state.kit
    return kit


KitDep = Annotated[Kit, Depends(_kit)]
router = APIRouter(tags=["test kit"])


class SettingsOut(BaseModel):
    profile: str
    write_budget: int = Field(description="POST+PATCH calls per number per window; 0: off.")
    write_budget_window: int = Field(description="Seconds.")
    journal_size: int = Field(description="Requests the journal keeps; 0: off.")


class SettingsIn(BaseModel):
    """Only the fields given change; `null` puts the server's own setting back."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "3" is not a budget
    profile: str | None = None
    write_budget: int | None = None
    write_budget_window: int | None = None
    journal_size: int | None = None


class ClockOut(BaseModel):
    now: datetime = Field(description="Now, on the server's clock.")
    offset: float = Field(description="Seconds ahead of real time.")
    real: bool


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    seconds: float = Field(ge=0)


class SetClockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    now: datetime = Field(description="An instant with its time zone; time goes on from there.")


class ResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    everything: bool = Field(False, description="Forget partners, keys and lines too; settings and clock back.")


class RequestOut(BaseModel):
    id: int
    trace_id: str
    at: datetime = Field(description="When it arrived, on the server's clock.")
    method: str
    path: str
    phone_number: str | None
    status: int
    error_code: int | None
    duration_ms: float
    retry_count: int | None = Field(description="The SDK's x-stainless-retry-count.")
    user_agent: str | None


def _settings(controls: Controls) -> SettingsOut:
    return SettingsOut(
        profile=controls.profile,
        write_budget=controls.write_budget,
        write_budget_window=controls.write_budget_window,
        journal_size=controls.journal_size,
    )


def _clock(view: ClockView) -> ClockOut:
    return ClockOut(now=view.now, offset=view.offset, real=view.real)


def _seconds(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@router.get("/settings", response_model=SettingsOut)
def get_settings(kit: KitDep) -> SettingsOut:
    return _settings(kit.settings())


@router.patch("/settings", response_model=SettingsOut)
def change_settings(body: SettingsIn, kit: KitDep) -> SettingsOut:
    return _settings(kit.change_settings(body.model_dump(exclude_unset=True)))


@router.delete("/settings", response_model=SettingsOut)
def restore_settings(kit: KitDep) -> SettingsOut:
    return _settings(kit.restore_settings())


@router.get("/clock", response_model=ClockOut)
def get_clock(kit: KitDep) -> ClockOut:
    return _clock(kit.clock())


@router.post("/clock/advance", response_model=ClockOut)
def advance_clock(body: AdvanceIn, kit: KitDep) -> ClockOut:
    return _clock(kit.advance_clock(body.seconds))


@router.put("/clock", response_model=ClockOut)
def set_clock(body: SetClockIn, kit: KitDep) -> ClockOut:
    return _clock(kit.set_clock(body.now))


@router.delete("/clock", response_model=ClockOut)
def real_clock(kit: KitDep) -> ClockOut:
    return _clock(kit.real_clock())


@router.post("/reset", status_code=204)
def reset(kit: KitDep, body: ResetIn | None = None) -> None:
    kit.reset(everything=body.everything if body else False)


@router.get("/requests", response_model=list[RequestOut])
def requests(
    kit: KitDep,
    trace_id: str | None = None,
    phone_number: str | None = None,
    status: int | None = None,
    since: Annotated[datetime | None, Query(description="Server clock; no zone: UTC.")] = None,
    until: datetime | None = None,
    after_id: Annotated[int | None, Query(description="Only newer entries, oldest first (for following).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RequestOut]:
    found = kit.requests(
        journal.Query(trace_id, phone_number, status, _seconds(since), _seconds(until), after_id, limit)
    )
    return [_request(entry) for entry in found]


def _request(entry: journal.Entry) -> RequestOut:
    fields: dict[str, Any] = {**entry.__dict__, "at": datetime.fromtimestamp(entry.at, UTC)}
    return RequestOut(**fields)
