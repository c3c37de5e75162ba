"""Every check's recorded cases, gathered from the per-domain case modules."""

from __future__ import annotations

from checks.facts import HostFacts
from checks.model import Status
from tests.checks import (
    cases,
    cases_backup,
    cases_disk,
    cases_logs_firewall,
    cases_wipe_crypto,
)

Case = tuple[str, HostFacts, Status, str]

ALL_CASES: dict[str, list[Case]] = {}
for _module in (cases, cases_backup, cases_disk, cases_logs_firewall, cases_wipe_crypto):
    for _check_id, _cases in _module.CASES.items():
        ALL_CASES.setdefault(_check_id, []).extend(_cases)
