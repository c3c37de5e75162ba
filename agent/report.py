"""The host report (`medsec.report/v1`): identity, inventory and results, joined with clause ids."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checks.catalog import Catalogs
from checks.facts import HardwareFacts, HostFacts
from checks.model import Result, Status, jsonable

SCHEMA = "medsec.report/v1"


@dataclass(frozen=True)
class Report:
    report_id: str
    host_id: str
    hostname: str
    generated_at: datetime
    agent_version: str
    facts: HostFacts
    results: tuple[Result, ...]

    @property
    def worst_exit(self) -> int:
        """0 when nothing failed or errored, else 1 (the agent's exit-code contract)."""
        bad = {Status.FAIL, Status.ERROR}
        return 1 if any(r.status in bad for r in self.results) else 0

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        for r in self.results:
            out[r.status.value] += 1
        return out

    def to_dict(self, catalogs: Catalogs) -> dict[str, Any]:
        results = []
        for r in self.results:
            item = r.to_dict()
            item["clauses"] = catalogs.clause_ids(r.check_id)
            results.append(item)
        return {
            "schema": SCHEMA,
            "report_id": self.report_id,
            "host": {"id": self.host_id, "hostname": self.hostname},
            "generated_at": rfc3339(self.generated_at),
            "agent": {"version": self.agent_version},
            # Facts not asked for (None) are left out; unavailable ones stay, with their reason.
            "inventory": {k: v for k, v in jsonable(self.facts).items() if v is not None},
            "summary": self.counts(),
            "results": results,
        }


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_report(
    facts: HostFacts,
    results: Sequence[Result],
    agent_version: str,
    now: datetime | None = None,
    report_id: str | None = None,
) -> Report:
    hardware = facts.hardware
    if isinstance(hardware, HardwareFacts):
        host_id, hostname = hardware.identity.id, hardware.hostname
    else:
        host_id, hostname = "unknown", "unknown"
    return Report(
        report_id=report_id or str(uuid.uuid4()),
        host_id=host_id,
        hostname=hostname,
        generated_at=now or datetime.now(UTC),
        agent_version=agent_version,
        facts=facts,
        results=tuple(results),
    )
