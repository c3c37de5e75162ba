"""The `compliance` routes: the clause-by-clause JSON report of a standard, people's attestations
on manual clauses, and signed auditor snapshots. Auditors and above read, attest and create
snapshots; every request, downloads included, is in the audit log (the audit middleware)."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime, and
# the role alias (Auditor) is local to the function that registers the routes.
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from checks.catalog import Catalogs
from collector.api.auth import Auth
from collector.api.errors import ERRORS, ERRORS_OR_NOT_FOUND, ApiError, ErrorOut
from collector.api.middleware import Clock
from collector.api.schemas import API, AttestationOut, SnapshotOut, to_out
from collector.compliance.aggregate import ScopeError
from collector.compliance.attest import (
    DEFAULT_VALID_DAYS,
    MAX_NOTE,
    MAX_VALID_DAYS,
    AttestationRefused,
    AttestationRequest,
    record,
)
from collector.compliance.model import Scope
from collector.compliance.render import render
from collector.compliance.service import STANDARDS, ComplianceError, build
from collector.models import Principal
from collector.settings import CollectorSettings
from collector.store import NotFound, Store

logger = logging.getLogger("medsec.collector")
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_FILTER = Annotated[str | None, Query(min_length=1, max_length=300)]
_REFUSED = {**ERRORS, 400: {"model": ErrorOut, "description": "The filters select nothing"}}
_SNAPSHOT_ERRORS = {
    **_REFUSED,
    503: {"model": ErrorOut, "description": "snapshot_unavailable: its folder or key is unusable"},
}


class AttestationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    standard: Annotated[str, Field(min_length=1, max_length=64, examples=["gbt22239-2019-l3"])]
    clause: Annotated[str, Field(min_length=1, max_length=64, examples=["8.1.1.2"])]
    status: Literal["pass", "fail", "not_applicable"]
    note: Annotated[str, Field(min_length=1, max_length=MAX_NOTE)]
    valid_days: Annotated[int, Field(ge=1, le=MAX_VALID_DAYS)] = DEFAULT_VALID_DAYS
    file_name: Annotated[str | None, Field(min_length=1, max_length=255)] = None
    file_sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: Annotated[str | None, Field(min_length=1, max_length=300)] = None
    zone: Annotated[str | None, Field(min_length=1, max_length=300)] = None
    host: Annotated[str | None, Field(min_length=1, max_length=300)] = None
    as_of: Annotated[str | None, Field(min_length=1, max_length=64)] = None


def _refused(exc: Exception) -> ApiError:
    return ApiError(400, "invalid_scope", str(exc))


def router(
    settings: CollectorSettings, store: Store, auth: Auth, catalogs: Catalogs, clock: Clock
) -> APIRouter:
    routes = APIRouter(tags=["compliance"])
    Auditor = Annotated[Principal, auth.auditor]

    @routes.get(
        f"{API}/compliance",
        responses={**_REFUSED, 200: {"content": {"application/json": {}}}},
        response_class=Response,
    )
    def compliance(
        _: Auditor,
        standard: Annotated[Literal["gbt22239-2019-l3", "mnds"], Query()],
        site: _FILTER = None,
        zone: _FILTER = None,
        host: _FILTER = None,
        as_of: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> Response:
        """The clause-by-clause report of a standard (`medsec.compliance/v1`), from each host's
        newest results (as of `as_of`), joined with the collector's catalogs."""
        scope = Scope(site=site, zone=zone, host=host, as_of=as_of)
        try:
            document = build(store, settings, [standard], scope, clock(), catalogs=catalogs)
        except (ComplianceError, ScopeError) as exc:
            raise _refused(exc) from None
        return Response(render(document[standard], "json"), media_type="application/json")

    @routes.post(
        f"{API}/attestations",
        status_code=201,
        response_model=AttestationOut,
        responses={**ERRORS_OR_NOT_FOUND, 400: {"model": ErrorOut, "description": "refused"}},
    )
    def attest(body: AttestationIn, principal: Auditor) -> AttestationOut:
        """Record a person's judgement on a manual clause; after `valid_days` the clause is
        manual again. The document itself stays with the hospital: its SHA-256 is kept."""
        request = AttestationRequest(
            body.standard,
            body.clause,
            body.status,
            body.note,
            body.valid_days,
            body.file_name,
            body.file_sha256,
        )
        try:
            made = record(store, request, principal.name, clock(), catalogs)
        except AttestationRefused as exc:
            status = 404 if exc.code in ("unknown_standard", "unknown_clause") else 400
            raise ApiError(status, exc.code, str(exc)) from None
        return to_out(AttestationOut, made)

    @routes.get(f"{API}/attestations", response_model=list[AttestationOut], responses=ERRORS)
    def list_attestations(_: Auditor) -> list[AttestationOut]:
        """Every attestation, oldest first (the newest valid one per clause counts)."""
        return [to_out(AttestationOut, a) for a in store.list_attestations()]

    @routes.post(
        f"{API}/snapshots",
        status_code=201,
        response_model=SnapshotOut,
        responses=_SNAPSHOT_ERRORS,
    )
    def create_snapshot(body: SnapshotIn, principal: Auditor) -> SnapshotOut:
        """Freeze, now (or as of `as_of`), every in-scope host's hardware, its results with
        their evidence, both standards' reports and the hosts' signed reports, in one zip
        signed by the collector's snapshot key. Immutable once made."""
        from collector.compliance.snapshot import SnapshotUnavailable
        from collector.compliance.snapshot_cli import store_snapshot

        scope = Scope(site=body.site, zone=body.zone, host=body.host, as_of=body.as_of)
        try:
            made = store_snapshot(store, settings, scope, principal.name, clock())
        except SnapshotUnavailable as exc:
            logger.error("snapshot refused: %s", exc)
            raise ApiError(503, "snapshot_unavailable", str(exc)) from None
        except (ComplianceError, ScopeError) as exc:
            raise _refused(exc) from None
        return to_out(SnapshotOut, made)

    @routes.get(f"{API}/snapshots", response_model=list[SnapshotOut], responses=ERRORS)
    def list_snapshots(_: Auditor) -> list[SnapshotOut]:
        """Snapshots, newest first."""
        return [to_out(SnapshotOut, r) for r in store.list_snapshots()]

    @routes.get(
        f"{API}/snapshots/{{snapshot_id}}",
        response_class=Response,
        responses={**ERRORS_OR_NOT_FOUND, 200: {"content": {"application/zip": {}}}},
    )
    def download_snapshot(_: Auditor, snapshot_id: Annotated[str, Path(pattern=_UUID)]) -> Response:
        """The snapshot's zip, exactly as signed (its SHA-256 is checked before it is sent)."""
        from collector.compliance.snapshot_cli import read_snapshot

        try:
            kept = store.get_snapshot(snapshot_id)
        except NotFound:
            raise ApiError(404, "not_found", f"no snapshot {snapshot_id}") from None
        try:
            data = read_snapshot(settings, kept)
        except ComplianceError as exc:
            raise ApiError(500, "snapshot_altered", str(exc)) from None
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{kept.file_name}"'},
        )

    return routes


__all__ = ["STANDARDS", "router"]
