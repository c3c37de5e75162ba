"""The compliance answer for one standard: `Compliance`, the document every renderer (JSON, CSV,
XLSX, HTML, PDF) and the snapshot are made from. Its JSON form (`medsec.compliance/v1`) is a
contract other tools read; the field names here are that contract.

Statuses of a clause and of an object (a host, a zone pair, a web app, a critical system, a
TLS service, a network device of an SNMP inventory, or a person's attestation): `pass`,
`fail`, `error`, `not_applicable`, `manual`, `not_covered` (an automatable clause with no
evidence yet). Beside them, the assessors' own vocabulary (`conformity`): 符合, 部分符合,
不符合, 不适用, or None when nothing was decided.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA = "medsec.compliance/v1"

Status = Literal["pass", "fail", "error", "not_applicable", "manual", "not_covered"]
STATUSES: tuple[Status, ...] = (
    "pass",
    "fail",
    "error",
    "not_applicable",
    "manual",
    "not_covered",
)
Conformity = Literal["符合", "部分符合", "不符合", "不适用"]
CONFORMITIES: tuple[Conformity, ...] = ("符合", "部分符合", "不符合", "不适用")
ObjectKind = Literal[
    "host",
    "agent",
    "zone_pair",
    "web_app",
    "critical_system",
    "service",
    "device",
    "scan",
    "hosts",
    "network",
    "attestation",
]


class _Out(msgspec.Struct, frozen=True, gc=False):
    """Output records: immutable, and left out of the garbage collector's scans (there are
    hundreds of thousands of them at 10,000 hosts, and they hold no cycles)."""


class Scope(_Out, frozen=True, gc=False):
    """The filters a report was made with (None: not filtered)."""

    site: str | None = None
    zone: str | None = None
    host: str | None = None
    as_of: str | None = None
    """RFC 3339: the newest evidence received by then, judged at that instant."""


class AttestationOut(_Out, frozen=True, gc=False):
    """A person's statement on a manual clause, marked as such wherever it is shown."""

    id: str
    status: Literal["pass", "fail", "not_applicable"]
    note: str
    by: str
    at: str
    valid_until: str | None
    file_name: str | None
    file_sha256: str | None
    kind: Literal["attestation"] = "attestation"
    """Always 'attestation': a person's statement, not automated evidence."""


class EvidenceItem(_Out, frozen=True, gc=False, tag="result", tag_field="type"):
    """One stored result behind an object's verdict, as the check recorded it (`"type":
    "result"`, telling it from an attestation)."""

    object: str
    """The object's id (`ObjectVerdict.id`)."""
    check_id: str
    status: str
    message: str
    message_zh: str | None
    target: str | None
    evidence: msgspec.Raw
    """The check's evidence, the stored JSON copied as is."""
    report_id: str
    received_at: str


class AttestationEvidence(_Out, frozen=True, gc=False, tag="attestation", tag_field="type"):
    """A person's statement standing as a clause's evidence (`"type": "attestation"`)."""

    object: str
    attestation: AttestationOut


class ObjectVerdict(_Out, frozen=True, gc=False):
    kind: ObjectKind
    id: str
    """Host id for hosts; the target for network objects; the agent's name for missing ones."""
    name: str
    status: Status
    conformity: Conformity | None
    reason: str | None = None
    """Why, when the status is not the results' own: stale, missing, no result."""
    reason_zh: str | None = None
    """The same in Chinese."""


class Counts(_Out, frozen=True, gc=False):
    by_status: dict[str, int]
    by_conformity: dict[str, int]
    rate: float | None
    """Conformity rate in percent: (符合 + ½ 部分符合) / (符合 + 部分符合 + 不符合); None when no
    clause was decided."""


class FamilyCounts(_Out, frozen=True, gc=False):
    family: str
    clauses: int
    counts: Counts


class Grade(_Out, frozen=True, gc=False):
    """An indicative assessment grade, never an assessor's conclusion."""

    grade: Literal["优", "良", "中", "差"] | None
    score: float | None
    rule: str
    rule_zh: str
    undecided: int
    """Clauses (manual, error, not covered) the score leaves out."""


class Summary(_Out, frozen=True, gc=False):
    clauses: Counts
    families: list[FamilyCounts]
    grade: Grade
    hosts: int
    stale_hosts: int
    missing_agents: int
    scans: int


class ClauseVerdict(_Out, frozen=True, gc=False):
    id: str
    """The clause id as the standard numbers it, e.g. '8.1.4.9 b'."""
    qualified: str
    """With the standard's prefix, as results name it: 'GB/T 22239-2019 8.1.4.9 b'."""
    family: str
    control: str
    text_zh: str
    title_en: str
    provenance: str
    assessment: Literal["automated", "manual"]
    obligation: str
    checks: tuple[str, ...]
    note: str | None
    status: Status
    conformity: Conformity | None
    objects: list[ObjectVerdict]
    evidence: list[EvidenceItem | AttestationEvidence]


class HostEntry(_Out, frozen=True, gc=False):
    """A host (or scan) whose newest report was read, and how old it was."""

    id: str
    hostname: str
    agent: str
    site: str | None
    zones: tuple[str, ...]
    addresses: tuple[str, ...]
    report_id: str
    generated_at: str
    received_at: str
    stale: bool


class MissingEntry(_Out, frozen=True, gc=False):
    agent: str
    enrolled_at: str


class Edition(_Out, frozen=True, gc=False):
    edition: str
    sha256: str


class Change(_Out, frozen=True, gc=False):
    """A clause, or one object of it, whose status differs from a previous report's."""

    clause: str
    object: str | None
    before: str | None
    after: str | None


class Compliance(_Out, frozen=True, gc=False):
    schema: str
    standard: str
    """The catalog's key: 'gbt22239-2019-l3' or 'mnds'."""
    standard_id: str
    """The prefix of clause ids: 'GB/T 22239-2019' or 'MNDS'."""
    title_zh: str
    title_en: str
    catalog_edition: Edition
    generated_at: str
    evaluated_at: str
    """The instant verdicts were judged at: `scope.as_of`, or when the report was made."""
    scope: Scope
    summary: Summary
    clauses: list[ClauseVerdict]
    hosts: list[HostEntry]
    missing: list[MissingEntry]
    changes: list[Change] | None = None
    """Set when the report was compared with an earlier one (`--since`)."""
    since: str | None = None
    """What `changes` compares with: the earlier report's generation time."""
