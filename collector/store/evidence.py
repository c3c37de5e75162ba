"""What compliance reports and auditor snapshots read: each host's newest report now or as of a
past instant, the results of those reports (evidence copied as stored JSON text, never parsed),
enrolled agents that never reported, the signed reports themselves, and the attestations and
snapshots recorded by people."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.models import (
    Attestation,
    EvidenceHost,
    EvidenceRow,
    MissingAgent,
    SnapshotRecord,
)
from collector.store.engine import Database
from collector.store.errors import NotFound
from collector.store.rows import Row
from collector.store.schema import agents, attestations, hosts, reports, snapshots
from collector.store.values import safe_text, storable, utc

SERVICE_AGENTS = ("medsec-scanner", "medsec-snmp", "medsec-agentless")
"""Agents the collector itself uses (zones scans, SNMP inventories, agentless SSH collection):
never "missing", whatever they stored, and never a name an operator may enrol."""
_CHUNK = 900
"""Report keys per IN list: under SQLite's 999 bound parameters."""
_SELECT_RESULTS = (
    "SELECT report_pk, check_id, status, target, message, message_zh,"
    " CAST(evidence AS TEXT) FROM results"
)
_ORDER = "ORDER BY report_pk, pk"
_RAW_CHUNK = 2000
"""Report keys written into one statement as integer literals (no bound parameters)."""
_SNAPSHOT_COLUMNS = (
    snapshots.c.id,
    snapshots.c.created_by,
    snapshots.c.created_at,
    snapshots.c.scope,
    snapshots.c.file_name,
    snapshots.c.sha256,
    snapshots.c.size,
    snapshots.c.key_fingerprint,
    snapshots.c.hosts,
)


def _literal(keys: Sequence[int]) -> str:
    """Report keys as SQL integer literals: formatted from ints, nothing else reaches the text."""
    return ",".join(str(int(key)) for key in keys)


def _newest(as_of: datetime | None) -> sa.Subquery:
    """(host_id, report pk) of each host's newest report: the one the host row points at, or as
    of `as_of` the newest (by generation time) received by then."""
    if as_of is None:
        return sa.select(hosts.c.id.label("host_id"), hosts.c.last_report_pk.label("pk")).subquery()
    ranked = (
        sa.select(
            reports.c.host_id,
            reports.c.pk,
            sa.func.row_number()
            .over(
                partition_by=reports.c.host_id,
                order_by=(reports.c.generated_at.desc(), reports.c.pk.desc()),
            )
            .label("n"),
        )
        .where(reports.c.received_at <= utc(as_of))
        .subquery()
    )
    return sa.select(ranked.c.host_id, ranked.c.pk).where(ranked.c.n == 1).subquery()


def _to_host(row: Row) -> EvidenceHost:
    return EvidenceHost(
        host_id=row.host_id,
        hostname=row.hostname,
        agent=row.agent,
        site=row.site,
        addresses=tuple(row.addresses or ()),
        report_pk=row.pk,
        report_id=row.report_id,
        generated_at=row.generated_at,
        received_at=row.received_at,
    )


def _to_attestation(row: Row) -> Attestation:
    return Attestation(
        id=row.id,
        standard=row.standard,
        clause=row.clause,
        status=row.status,
        note=row.note,
        file_name=row.file_name,
        file_sha256=row.file_sha256,
        created_by=row.created_by,
        created_at=row.created_at,
        valid_until=row.valid_until,
    )


def _to_snapshot(row: Row) -> SnapshotRecord:
    return SnapshotRecord(
        id=row.id,
        created_by=row.created_by,
        created_at=row.created_at,
        scope=dict(row.scope),
        file_name=row.file_name,
        sha256=row.sha256,
        size=row.size,
        key_fingerprint=row.key_fingerprint,
        hosts=row.hosts,
    )


class Evidence(Database):
    """Reads for the compliance aggregation and snapshots; attestations and snapshot records."""

    def evidence_hosts(self, as_of: datetime | None = None) -> list[EvidenceHost]:
        """Every host and scan with its newest report (as of `as_of`), by hostname. Site,
        addresses and hostname are the host's current ones."""
        newest = _newest(as_of)
        query = (
            sa.select(
                hosts.c.id.label("host_id"),
                hosts.c.hostname,
                agents.c.name.label("agent"),
                hosts.c.site,
                hosts.c.addresses,
                reports.c.pk,
                reports.c.report_id,
                reports.c.generated_at,
                reports.c.received_at,
            )
            .select_from(
                newest.join(hosts, hosts.c.id == newest.c.host_id)
                .join(reports, reports.c.pk == newest.c.pk)
                .join(agents, agents.c.id == reports.c.agent_id)
            )
            .order_by(hosts.c.hostname, hosts.c.id)
        )
        with self._tx(write=False, snapshot=True) as conn:
            return [_to_host(row) for row in conn.execute(query)]

    def evidence_results(self, report_pks: Sequence[int]) -> Iterator[EvidenceRow]:
        """The results of these reports, in report order, each report's in its own order.

        Read through the driver's cursor, a few thousand reports per statement: at 10,000 hosts
        this is 400,000 rows, and the ORM's per-row processing would cost more than the read."""
        ordered = sorted(set(report_pks))
        statements: list[tuple[str, tuple[list[int], ...]]]
        if self._dialect == "postgresql":  # one statement, the keys as one array parameter
            statements = [(f"{_SELECT_RESULTS} WHERE report_pk = ANY(%s) {_ORDER}", (ordered,))]
        else:  # SQLite binds at most 999 parameters: integer literals, a few thousand at a time
            statements = [
                (f"{_SELECT_RESULTS} WHERE report_pk IN ({_literal(part)}) {_ORDER}", ())
                for part in (
                    ordered[start : start + _RAW_CHUNK]
                    for start in range(0, len(ordered), _RAW_CHUNK)
                )
            ]
        for sql, params in statements:
            with self._tx(write=False) as conn:
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.execute(sql, params)
                    while rows := cursor.fetchmany(10_000):
                        yield from rows
                finally:
                    cursor.close()

    def evidence_reports(
        self, report_pks: Sequence[int]
    ) -> Iterator[tuple[int, str, str | None, str | None, str | None]]:
        """(pk, body, alg, signature, signer_key) of these reports: the exact bytes an agent
        signed, with the signature and key (None for scans and reports stored before)."""
        query = sa.select(
            reports.c.pk,
            reports.c.body,
            reports.c.alg,
            reports.c.signature,
            reports.c.signer_key,
        ).order_by(reports.c.pk)
        ordered = sorted(set(report_pks))
        for start in range(0, len(ordered), _CHUNK):
            with self._tx(write=False) as conn:
                keys = ordered[start : start + _CHUNK]
                for row in conn.execute(query.where(reports.c.pk.in_(keys))):
                    yield row.pk, row.body, row.alg, row.signature, row.signer_key

    def host_inventories(self, host_ids: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(host id, newest inventory) of these hosts."""
        ordered = sorted(set(host_ids))
        for start in range(0, len(ordered), _CHUNK):
            with self._tx(write=False) as conn:
                keys = ordered[start : start + _CHUNK]
                for host_id, inventory in conn.execute(
                    sa.select(hosts.c.id, hosts.c.inventory).where(hosts.c.id.in_(keys))
                ):
                    yield host_id, dict(inventory)

    def missing_agents(self, as_of: datetime | None = None) -> list[MissingAgent]:
        """Active agents (enrolled by `as_of`) with no report stored (received by `as_of`)."""
        reported = sa.select(reports.c.agent_id)
        enrolled: sa.ColumnElement[bool] = agents.c.enrolled_at.is_not(None)
        if as_of is not None:
            reported = reported.where(reports.c.received_at <= utc(as_of))
            enrolled = sa.and_(enrolled, agents.c.enrolled_at <= utc(as_of))
        query = (
            sa.select(agents.c.name, agents.c.enrolled_at)
            .where(
                enrolled,
                agents.c.revoked_at.is_(None),
                agents.c.name.not_in(SERVICE_AGENTS),
                ~sa.exists(reported.where(reports.c.agent_id == agents.c.id)),
            )
            .order_by(agents.c.name)
        )
        with self._tx(write=False) as conn:
            return [MissingAgent(row.name, row.enrolled_at) for row in conn.execute(query)]

    # -- attestations ------------------------------------------------------------------------

    def add_attestation(
        self,
        standard: str,
        clause: str,
        *,
        status: str,
        note: str,
        created_by: str,
        now: datetime,
        valid_until: datetime | None = None,
        file_name: str | None = None,
        file_sha256: str | None = None,
    ) -> Attestation:
        """Record a person's judgement on a clause (the caller checked the clause is manual)."""
        made = Attestation(
            id=str(uuid.uuid4()),
            standard=safe_text(standard),
            clause=safe_text(clause),
            status=status,  # type: ignore[arg-type]  # the caller validated it
            note=safe_text(note),
            file_name=None if file_name is None else safe_text(file_name),
            file_sha256=file_sha256,
            created_by=safe_text(created_by),
            created_at=utc(now),
            valid_until=None if valid_until is None else utc(valid_until),
        )
        with self._tx(write=True) as conn:
            conn.execute(sa.insert(attestations).values(**dataclasses.asdict(made)))
        return made

    def list_attestations(self, standard: str | None = None) -> list[Attestation]:
        """Every attestation (of one standard), oldest first: the newest valid one counts."""
        query = sa.select(attestations).order_by(attestations.c.created_at, attestations.c.id)
        if standard is not None:
            if not storable(standard):
                return []
            query = query.where(attestations.c.standard == standard)
        with self._tx(write=False) as conn:
            return [_to_attestation(row) for row in conn.execute(query)]

    # -- snapshots ---------------------------------------------------------------------------

    def add_snapshot(self, record: SnapshotRecord) -> None:
        with self._tx(write=True) as conn:
            conn.execute(
                sa.insert(snapshots).values(
                    id=record.id,
                    created_by=safe_text(record.created_by),
                    created_at=utc(record.created_at),
                    scope=record.scope,
                    file_name=record.file_name,
                    sha256=record.sha256,
                    size=record.size,
                    key_fingerprint=record.key_fingerprint,
                    hosts=record.hosts,
                )
            )

    def list_snapshots(self) -> list[SnapshotRecord]:
        """Snapshots, newest first."""
        query = sa.select(*_SNAPSHOT_COLUMNS).order_by(
            snapshots.c.created_at.desc(), snapshots.c.id
        )
        with self._tx(write=False) as conn:
            return [_to_snapshot(row) for row in conn.execute(query)]

    def get_snapshot(self, snapshot_id: str) -> SnapshotRecord:
        """`NotFound` unless a snapshot has this id."""
        if not storable(snapshot_id):
            raise NotFound(f"no snapshot {snapshot_id!r}")
        with self._tx(write=False) as conn:
            row = conn.execute(
                sa.select(*_SNAPSHOT_COLUMNS).where(snapshots.c.id == snapshot_id)
            ).first()
        if row is None:
            raise NotFound(f"no snapshot {snapshot_id!r}")
        return _to_snapshot(row)
