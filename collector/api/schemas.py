"""The API's wire contract: the `/api/v1` paths, the request models and parameters, the response
models, and the one way a store record (`collector.models`) becomes a response model: `to_out`,
which reads each field from the record's attribute of the same name, so a field added to a record
and its response model needs no copying code.
"""

# No `from __future__ import annotations`: FastAPI reads these models' annotations at runtime.
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from checks import envelope as env

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


class EnrollOut(BaseModel):
    agent: str
    api_token: str = Field(description="The agent's API token (`msa_…`); shown once.")
    alg: str


class IngestOut(BaseModel):
    report_id: str
    host_id: str
    duplicate: bool


class ScanOut(BaseModel):
    id: str
    zones: str
    requested_by: str
    state: Literal["running", "passed", "findings", "failed"]
    started_at: datetime
    finished_at: datetime | None
    report_id: str | None = Field(description="The stored report of the scan's results.")
    message: str | None = Field(description="Why a failed scan failed.")


class HostOut(BaseModel):
    id: str
    hostname: str
    agent: str
    last_report_id: str
    last_report_at: datetime
    counts: dict[str, int]


class ReportOut(BaseModel):
    report_id: str
    host_id: str
    agent: str
    generated_at: datetime
    received_at: datetime
    counts: dict[str, int]


class ResultOut(BaseModel):
    report_id: str
    host_id: str
    hostname: str
    check_id: str
    status: str
    target: str | None
    message: str
    generated_at: datetime
    clauses: list[str]
    evidence: dict[str, Any]


class HostDetailOut(BaseModel):
    host: HostOut
    inventory: dict[str, Any]
    results: list[ResultOut]


class AuditOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    source: str
    outcome: str
    prev_hash: str
    hash: str


class AgentOut(BaseModel):
    name: str
    state: Literal["pending", "active", "revoked"]
    alg: str | None
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None


class UserOut(BaseModel):
    name: str
    role: str
    created_at: datetime


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
