"""The API's wire contract: the `/api/v1` paths, the request models and parameters, the response
models, and the one way a store record (`collector.models`) becomes a response model: `to_out`,
which reads each field from the record's attribute of the same name, so a field added to a record
and its response model needs no copying code.
"""

# No `from __future__ import annotations`: FastAPI reads these models' annotations at runtime.
import dataclasses
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Generic,
    Literal,
    TypeAlias,
    TypeVar,
    get_type_hints,
)

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, create_model

from checks import envelope as env
from collector.models import (
    Attestation,
    AuditEntry,
    HostSummary,
    IngestOutcome,
    ReportSummary,
    ResultRow,
    SnapshotRecord,
    User,
)

API = "/api/v1"
REPORTS_PATH = f"{API}/reports"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Agent and user names: a host name or a login, nothing a terminal or a log could misread."""
MAX_TOKEN_LENGTH = 200
RESULT_STATUSES = Literal["pass", "fail", "error", "not_applicable", "manual"]
_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

Limit = Annotated[int, Query(ge=1, le=500, description="Page size (at most 500).")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items to skip.")]
HostId = Annotated[str, Path(min_length=1, max_length=300)]
ScanId = Annotated[str, Path(pattern=_UUID)]
AgentName = Annotated[str, Path(pattern=NAME_PATTERN)]


# --------------------------------------------------------------------------- requests


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH)]
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    alg: Literal["ed25519", "sm2-sm3"]
    public_key: Annotated[str, Field(min_length=1, max_length=8192)]


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zones: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
            description="The name of a zones file in the collector's settings (`scans.zones`).",
        ),
    ]


def envelope_schema() -> dict[str, Any]:
    """The JSON schema of `medsec.envelope/v1`, for the OpenAPI document (and its fuzzers)."""
    import msgspec

    _, components = msgspec.json.schema_components([env.Envelope])
    schema: dict[str, Any] = components["Envelope"]
    return schema


# --------------------------------------------------------------------------- responses


def mirror(
    name: str,
    record: type,
    *,
    exclude: tuple[str, ...] = (),
    retype: dict[str, Any] | None = None,
) -> type[BaseModel]:
    """The response model of a store record: the record's fields, in its order and with its
    types (`retype` names a wire type where the record's differs, e.g. an enum sent as a string),
    so a field is declared once, on the record."""
    hints = get_type_hints(record)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        if item.name in exclude:
            continue
        kind = (retype or {}).get(item.name, hints[item.name])
        fields[item.name] = (kind, ...)
    model: type[BaseModel] = create_model(name, **fields)
    return model


# The responses that are a store record as it is: declared once, on the record. For the type
# checker they are plain models (it cannot follow `create_model`).
if TYPE_CHECKING:
    IngestOut: TypeAlias = BaseModel
    HostOut: TypeAlias = BaseModel
    ReportOut: TypeAlias = BaseModel
    ResultOut: TypeAlias = BaseModel
    AuditOut: TypeAlias = BaseModel
    UserOut: TypeAlias = BaseModel
    AttestationOut: TypeAlias = BaseModel
    SnapshotOut: TypeAlias = BaseModel
else:
    IngestOut = mirror("IngestOut", IngestOutcome)
    HostOut = mirror("HostOut", HostSummary)
    ReportOut = mirror("ReportOut", ReportSummary)
    ResultOut = mirror("ResultOut", ResultRow, retype={"clauses": list[str]})
    AuditOut = mirror("AuditOut", AuditEntry)
    UserOut = mirror("UserOut", User, exclude=("id",), retype={"role": str})
    AttestationOut = mirror("AttestationOut", Attestation)
    SnapshotOut = mirror("SnapshotOut", SnapshotRecord, exclude=("file_name",))


class EnrollOut(BaseModel):
    agent: str
    api_token: str = Field(description="The agent's API token (`msa_…`); shown once.")
    alg: str


class ScanOut(BaseModel):
    id: str
    zones: str
    requested_by: str
    state: Literal["running", "passed", "findings", "failed"]
    started_at: datetime
    finished_at: datetime | None
    report_id: str | None = Field(description="The stored report of the scan's results.")
    message: str | None = Field(description="Why a failed scan failed.")
    schedule_id: str | None = Field(
        default=None, description="The schedule that started it (none: started by hand)."
    )
    due_at: datetime | None = Field(
        default=None, description="The schedule's due time it was started for."
    )


class HostDetailOut(BaseModel):
    host: HostOut
    inventory: dict[str, Any]
    results: list[ResultOut]


class AgentOut(BaseModel):
    name: str
    state: Literal["pending", "active", "revoked"]
    alg: str | None
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None


class HealthOut(BaseModel):
    status: str


T = TypeVar("T")


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


Out = TypeVar("Out", bound=BaseModel)


def to_out(model: type[Out], record: object) -> Out:
    """`model` filled from `record`'s attributes of the same names, nested records and a store
    `Page` of them included; enum values become their strings."""
    return model.model_validate(record, from_attributes=True)


# --------------------------------------------------------------------------- probes


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="Most jobs wanted; the collector hands out at most `probes.max_claim`.",
        ),
    ] = 100
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=25,
            description="With no job to hand out, wait this long for one before answering none.",
        ),
    ] = 0.0


class ClaimedJobOut(BaseModel):
    id: str
    claim_id: str = Field(description="This claim; a result is stored only under it.")
    kind: str
    request: dict[str, Any]
    lease_until: datetime = Field(description="Renew before then or the job goes to another.")
    deadline: datetime
    scan_id: str | None
    attempts: int = Field(description="Claims of this job so far, this one included.")


class ClaimOut(BaseModel):
    zone: str
    lease_seconds: int
    jobs: list[ClaimedJobOut]


class LeaseClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(min_length=1, max_length=64)]
    claim_id: Annotated[str, Field(min_length=1, max_length=64)]


class LeasesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claims: Annotated[list[LeaseClaimIn], Field(max_length=500)]


class LeasesOut(BaseModel):
    leases: dict[str, datetime | None] = Field(
        description="Job id → its new lease end, or null: the claim is lost, stop working on it."
    )


class JobResultOut(BaseModel):
    stored: bool
    duplicate: bool = Field(description="The job was finished already; nothing changed.")


JobId = Annotated[str, Path(pattern=_UUID)]


# --------------------------------------------------------------------------- scan differences

_SCAN_REF = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|latest|previous)$"
ScanFrom = Annotated[
    str,
    Query(
        alias="from",
        pattern=_SCAN_REF,
        description="The earlier scan: its id, or `latest` / `previous` of the zones `zones`.",
    ),
]
ScanTo = Annotated[
    str,
    Query(
        pattern=_SCAN_REF,
        description="The later scan: its id, or `latest` / `previous` of the zones `zones`.",
    ),
]
ZonesName = Annotated[
    str | None,
    Query(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="The zones file (`scans.zones` name) `latest` and `previous` refer to.",
    ),
]


class ScanDiffScanOut(BaseModel):
    id: str
    zones: str
    state: str | None
    finished_at: str | None
    report_id: str
    zones_file: str | None
    errors: list[str] = Field(description="What its report could not tell (never guessed).")


class ScanDiffPathOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from", description="The zone the service was reached from.")
    to: str
    address: str
    proto: Literal["tcp", "udp"]
    port: int
    state: str = Field(description="nmap's state: open, or closed (reached, nothing listens).")


class ScanDiffStateOut(ScanDiffPathOut):
    before: str
    after: str


class ScanDiffPathsOut(BaseModel):
    opened: list[ScanDiffPathOut]
    closed: list[ScanDiffPathOut]
    state_changed: list[ScanDiffStateOut]
    not_compared: dict[str, str] = Field(
        description="Zone pair → why its paths were not compared (not measured in a scan)."
    )
    udp_unconfirmed: list[ScanDiffPathOut] = Field(
        description="UDP ports that answered ICMP port-unreachable in one scan only: hosts "
        "rate-limit those answers, so this is no change."
    )


class ScanDiffViolationsOut(BaseModel):
    new: list[ScanDiffPathOut]
    cleared: list[ScanDiffPathOut]


class ScanDiffVerdictOut(BaseModel):
    name: str
    before: bool | None
    after: bool | None
    change: Literal["gone", "back", "unknown", "known", "added", "removed"]


class ScanDiffFloorOut(BaseModel):
    endpoint: str
    before: str | None
    after: str | None
    change: Literal["lowered", "raised", "unknown", "known", "added", "removed"]


class ScanDiffCoverageOut(BaseModel):
    before: float | None
    after: float | None


class ScanDiffOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    schema_: Literal["medsec.scan-diff/v1"] = Field(alias="schema")
    from_: ScanDiffScanOut = Field(alias="from")
    to: ScanDiffScanOut
    changed: bool
    paths: ScanDiffPathsOut
    violations: ScanDiffViolationsOut
    wafs: list[ScanDiffVerdictOut]
    ztna: list[ScanDiffVerdictOut]
    ztna_coverage_percent: ScanDiffCoverageOut
    tls_floors: list[ScanDiffFloorOut]
    warnings: list[str]


# --------------------------------------------------------------------------- schedules


ScheduleName = Annotated[str, Path(pattern=NAME_PATTERN)]


class ScheduleIn(BaseModel):
    """A periodic scan: `every` or `cron`, exactly one (checked with the settings' limits)."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    zones: Annotated[
        str,
        Field(
            pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
            description="The name of a zones file in the collector's settings (`scans.zones`).",
        ),
    ]
    every: Annotated[
        str | None,
        Field(
            max_length=16,
            description="A period: `30s`, `15m`, `24h`, `7d` (at least `scans.min_every_seconds`).",
        ),
    ] = None
    cron: Annotated[
        str | None,
        Field(
            max_length=100,
            description='A cron expression in UTC, five fields (`"0 2 * * *"`) or `@daily` etc.',
        ),
    ] = None


class ScheduleOut(BaseModel):
    name: str
    zones: str
    every: str | None = Field(description="The period (`1d`, `90m`), or null for a cron one.")
    cron: str | None
    paused: bool
    created_by: str
    created_at: datetime
    next_due_at: datetime = Field(description="When it fires next (if not paused).")
    last_due_at: datetime | None
    last_scan_id: str | None = Field(description="The scan its last due time became.")
    last_scan_state: Literal["running", "passed", "findings", "failed"] | None


# --------------------------------------------------------------------------- alerts


AlertsOpen = Annotated[
    bool, Query(alias="open", description="Only alerts not cleared yet (`true`); all by default.")
]
AlertsZones = Annotated[
    str | None,
    Query(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Only alerts of this zones file (`scans.zones` name); one with no alerts, "
        "or no such name, lists none.",
    ),
]


class AlertDeliveryOut(BaseModel):
    event: Literal["raised", "cleared"]
    channel: str = Field(description="`webhook` or `syslog`.")
    state: Literal["pending", "sent", "failed"] = Field(
        description="pending: queued or being retried; sent: the receiver took it; failed: "
        "given up after the channel's `max_attempts`."
    )
    attempts: int = Field(description="Attempts so far.")
    last_error: str | None = Field(description="Why the last attempt failed (none once sent).")
    next_attempt_at: datetime = Field(description="When a pending one is tried (again).")
    sent_at: datetime | None


class AlertOut(BaseModel):
    id: int
    kind: str = Field(description="`violation`, `waf_gone` or `ztna_gone` (docs/alerts.md).")
    zones: str
    key: str = Field(description="The condition; the same while the alert is open.")
    detail: dict[str, Any] = Field(description='What the scan saw; `detail["text"]` in one line.')
    opened_at: datetime
    opened_scan_id: str | None = Field(description="The scan that found the condition.")
    cleared_at: datetime | None = Field(description="Null while the alert is open.")
    cleared_scan_id: str | None = Field(description="The scan that found it gone.")
    deliveries: list[AlertDeliveryOut] = Field(
        description="Each event on each channel, oldest first."
    )
