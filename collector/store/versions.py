"""The evidence version: one cheap read telling whether anything a compliance aggregation reads
has changed since an earlier read — a new report (an agent's, a scan's or an SNMP inventory's),
an attestation, an agent enrolled or revoked, a scan started or ended, a snapshot taken. The
dashboard's aggregation cache compares it on every page load, so it stays a few index lookups
on small tables whatever the number of hosts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from collector.store.engine import Database
from collector.store.schema import agents, attestations, reports, scans, snapshots


class EvidenceVersion(NamedTuple):
    """Equal versions, equal evidence. Report keys only grow, so the newest key stands for every
    report stored since; pruned reports are never a host's newest and change no aggregation."""

    report: int | None
    attestations: int
    attested_at: datetime | None
    agents: int
    enrolled_at: datetime | None
    revoked_at: datetime | None
    scan_started_at: datetime | None
    scan_finished_at: datetime | None
    snapshot_at: datetime | None


def _newest(column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    return sa.select(sa.func.max(column)).scalar_subquery()


def _count(table: sa.Table) -> sa.ScalarSelect[int]:
    return sa.select(sa.func.count()).select_from(table).scalar_subquery()


_VERSION = sa.select(
    _newest(reports.c.pk),
    _count(attestations),
    _newest(attestations.c.created_at),
    _count(agents),
    _newest(agents.c.enrolled_at),
    _newest(agents.c.revoked_at),
    _newest(scans.c.started_at),
    _newest(scans.c.finished_at),
    _newest(snapshots.c.created_at),
)


class Versions(Database):
    """The version of the evidence compliance is aggregated from."""

    def evidence_version(self) -> EvidenceVersion:
        """One statement. A change racing it shows at the next read: the cache reads the
        version before the evidence, never after, so a version never claims newer evidence
        than was aggregated."""
        with self._tx(write=False) as conn:
            row = conn.execute(_VERSION).one()
        return EvidenceVersion(*row)
