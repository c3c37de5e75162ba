"""Rows to models: the columns the store selects for agents, users and scans, and the functions
that turn a fetched row into the model the API and the CLI get."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.models import (
    Agent,
    AuditEntry,
    HostSummary,
    ResultRow,
    Role,
    ScanRun,
    ScanState,
    SignatureAlg,
    User,
)
from collector.store.schema import agents, scans, users

Row = sa.Row[*tuple[Any, ...]]  # a row of any shape; fields are read by name

AGENT_COLUMNS = (
    agents.c.id,
    agents.c.name,
    agents.c.alg,
    agents.c.public_key_pem,
    agents.c.enrolled_at,
    agents.c.revoked_at,
    agents.c.last_seen_at,
    agents.c.probe_zone,
)
USER_COLUMNS = (users.c.id, users.c.name, users.c.role, users.c.created_at)
SCAN_COLUMNS = (
    scans.c.id,
    scans.c.zones,
    scans.c.requested_by,
    scans.c.state,
    scans.c.started_at,
    scans.c.deadline,
    scans.c.finished_at,
    scans.c.report_id,
    scans.c.message,
    scans.c.schedule_id,
    scans.c.due_at,
)
LOST_SCAN = "lost: the collector stopped while the scan ran"


def to_agent(row: Row) -> Agent:
    return Agent(
        id=row.id,
        name=row.name,
        alg=SignatureAlg(row.alg) if row.alg else None,
        public_key_pem=row.public_key_pem,
        enrolled_at=row.enrolled_at,
        revoked_at=row.revoked_at,
        last_seen_at=row.last_seen_at,
        probe_zone=row.probe_zone,
    )


def to_user(row: Row) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role), created_at=row.created_at)


def to_audit_entry(row: Row) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        role=row.role,
        action=row.action,
        source=row.source,
        outcome=row.outcome,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def to_scan(row: Row, now: datetime) -> ScanRun:
    lost = row.state == ScanState.RUNNING.value and row.deadline < now
    return ScanRun(
        id=row.id,
        zones=row.zones,
        requested_by=row.requested_by,
        state=ScanState.FAILED if lost else ScanState(row.state),
        started_at=row.started_at,
        finished_at=row.deadline if lost else row.finished_at,
        report_id=row.report_id,
        message=LOST_SCAN if lost else row.message,
        schedule_id=row.schedule_id,
        due_at=row.due_at,
    )


def to_host_summary(row: Row) -> HostSummary:
    return HostSummary(
        id=row.id,
        hostname=row.hostname,
        agent=row.agent,
        last_report_id=row.report_id,
        last_report_at=row.last_report_at,
        counts=dict(row.counts),
    )


def to_result_row(row: Row) -> ResultRow:
    return ResultRow(
        report_id=row.report_id,
        host_id=row.host_id,
        hostname=row.hostname,
        check_id=row.check_id,
        status=row.status,
        target=row.target,
        message=row.message,
        generated_at=row.generated_at,
        clauses=tuple(row.clauses),
        evidence=dict(row.evidence),
    )
