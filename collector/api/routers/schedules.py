"""The `schedules` routes: operators add, pause, resume and remove periodic scans of a zones file
the settings name; any user role lists them with when they fire next and how their last scan
went. What may be scheduled is checked here against the settings, as `medsec schedules add`
checks it: the zones name one of `scans.zones`, the cadence no more often than
`scans.min_every_seconds`.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role aliases (Operator, Auditor) are local to the function that registers the routes.
from typing import Annotated

from fastapi import APIRouter, Response

from collector.api.auth import Auth
from collector.api.errors import ERRORS, ERRORS_OR_NOT_FOUND, ApiError, ErrorOut
from collector.api.middleware import Clock
from collector.api.schemas import (
    API,
    Limit,
    Offset,
    PageOut,
    ScheduleIn,
    ScheduleName,
    ScheduleOut,
    to_out,
)
from collector.models import Principal
from collector.settings import CollectorSettings
from collector.store import Store
from collector.store.schedules import Cadence, InvalidCadence, ScheduleExists, UnknownSchedule


def router(settings: CollectorSettings, store: Store, auth: Auth, clock: Clock) -> APIRouter:
    routes = APIRouter(tags=["schedules"])
    Operator = Annotated[Principal, auth.operator]
    Auditor = Annotated[Principal, auth.auditor]

    @routes.get(f"{API}/schedules", response_model=PageOut[ScheduleOut], responses=ERRORS)
    def list_schedules(_: Auditor, limit: Limit = 100, offset: Offset = 0) -> PageOut[ScheduleOut]:
        """Schedules by name, each with its next due time and its last scan's state."""
        return to_out(PageOut[ScheduleOut], store.list_schedules(limit, offset, clock()))

    @routes.post(
        f"{API}/schedules",
        status_code=201,
        response_model=ScheduleOut,
        responses={
            **ERRORS,
            404: {"model": ErrorOut, "description": "unknown_zones"},
            409: {"model": ErrorOut, "description": "schedule_exists"},
            422: {"model": ErrorOut, "description": "invalid_request, invalid_schedule"},
        },
    )
    def add_schedule(body: ScheduleIn, principal: Operator) -> ScheduleOut:
        """Scan a zones file every period or at a cron expression's times (UTC); the first scan
        comes one period (or the next cron time) from now."""
        if body.zones not in settings.scans.zones:
            raise ApiError(
                404, "unknown_zones", f"the collector's settings name no zones file {body.zones!r}"
            )
        now = clock()
        try:
            cadence = Cadence.parse(
                body.every, body.cron, min_seconds=settings.scans.min_every_seconds, now=now
            )
        except InvalidCadence as exc:
            raise ApiError(422, "invalid_schedule", str(exc)) from None
        try:
            added = store.add_schedule(body.name, body.zones, cadence, principal.name, now)
        except ScheduleExists:
            raise ApiError(
                409, "schedule_exists", f"a schedule named {body.name!r} exists already"
            ) from None
        return to_out(ScheduleOut, added)

    @routes.post(
        f"{API}/schedules/{{name}}/pause",
        response_model=ScheduleOut,
        responses=ERRORS_OR_NOT_FOUND,
    )
    def pause_schedule(name: ScheduleName, _: Operator) -> ScheduleOut:
        """Stop firing it (a scan it started runs on); pausing a paused one changes nothing."""
        try:
            return to_out(ScheduleOut, store.pause_schedule(name, clock()))
        except UnknownSchedule:
            raise ApiError(404, "not_found", f"no schedule named {name!r}") from None

    @routes.post(
        f"{API}/schedules/{{name}}/resume",
        response_model=ScheduleOut,
        responses=ERRORS_OR_NOT_FOUND,
    )
    def resume_schedule(name: ScheduleName, _: Operator) -> ScheduleOut:
        """Fire it again, next one period (or the cron's next time) from now: the due times it
        was paused through are not made up."""
        try:
            return to_out(ScheduleOut, store.resume_schedule(name, clock()))
        except UnknownSchedule:
            raise ApiError(404, "not_found", f"no schedule named {name!r}") from None

    @routes.delete(f"{API}/schedules/{{name}}", status_code=204, responses=ERRORS_OR_NOT_FOUND)
    def remove_schedule(name: ScheduleName, _: Operator) -> Response:
        """Delete it; the scans it started stay in the history."""
        try:
            store.remove_schedule(name)
        except UnknownSchedule:
            raise ApiError(404, "not_found", f"no schedule named {name!r}") from None
        return Response(status_code=204)

    return routes
