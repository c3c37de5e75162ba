"""The agent's host report: the gathered facts and evaluated results of one run, and the
`medsec.report/v1` document built from them by the one contract in `checks.report`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checks import report as contract
from checks.catalog import Catalogs
from checks.facts import HardwareFacts, HostFacts
from checks.model import Result, jsonable


@dataclass(frozen=True)
class Report:
    report_id: str
    host_id: str
    hostname: str
    generated_at: datetime
    agent_version: str
    facts: HostFacts
    results: tuple[Result, ...]
    site: str | None = None
    """The agent's configured site, carried in the inventory: compliance reports filter by it."""

    @property
    def worst_exit(self) -> int:
        """0 when nothing failed or errored, else 1 (the agent's exit-code contract)."""
        return contract.exit_code(r.status for r in self.results)

    def counts(self) -> dict[str, int]:
        return contract.counts(r.status for r in self.results)

    def to_dict(self, catalogs: Catalogs) -> dict[str, Any]:
        return contract.build_report(
            host_id=self.host_id,
            hostname=self.hostname,
            producer=self.agent_version,
            inventory=self.inventory(),
            results=self.results,
            catalogs=catalogs,
            generated_at=self.generated_at,
            report_id=self.report_id,
        )

    def inventory(self) -> dict[str, Any]:
        # Facts not asked for (None) are left out; unavailable ones stay, with their reason.
        found = {k: v for k, v in jsonable(self.facts).items() if v is not None}
        if self.site is not None:
            found["site"] = self.site
        return found


def build_report(
    facts: HostFacts,
    results: Sequence[Result],
    agent_version: str,
    now: datetime | None = None,
    report_id: str | None = None,
    *,
    site: str | None = None,
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
        site=site,
    )
