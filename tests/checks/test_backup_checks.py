"""`backup.rpo` and `backup.offsite` on recorded facts: statuses, messages, targets and evidence."""

from __future__ import annotations

import pytest

from checks.host import backup
from checks.model import Status
from checks.registry import Registry
from checks.runner import ParameterError, run_check
from tests.checks.cases_backup import (
    BORG,
    RESTIC,
    WRONG_PASSWORD,
    backups,
    pg_primary,
    point,
    status,
)

REGISTRY = Registry.from_modules([backup])


def test_rpo_reports_one_result_per_source_named_by_target():
    facts = backups(
        status("restic-local", "restic", point(5, RESTIC)),
        status("borg-nas", "borg", point(40, BORG)),
        status("restic-dr", "restic", WRONG_PASSWORD, site="dr-site"),
        status("his-pg", "postgres", pg_primary(1, broken=True)),
    )
    results = run_check(REGISTRY.get("backup.rpo"), facts)
    assert [(r.target, r.status) for r in results] == [
        ("restic-local", Status.PASS),
        ("borg-nas", Status.FAIL),
        ("restic-dr", Status.ERROR),
        ("his-pg", Status.FAIL),
    ]


def test_rpo_evidence_has_utc_timestamp_age_and_rpo():
    facts = backups(status("restic-local", "restic", point(5, RESTIC)))
    (result,) = run_check(REGISTRY.get("backup.rpo"), facts)
    evidence = result.evidence
    assert evidence["timestamp"] == "2026-03-02T07:55:00Z"
    assert evidence["age_seconds"] == 300
    assert evidence["rpo_seconds"] == 900
    assert evidence["snapshot_id"].startswith("3f2a1b7c")
    assert evidence["paths"] == ["/srv"]


def test_postgres_evidence_names_the_broken_segment():
    facts = backups(status("his-pg", "postgres", pg_primary(1, broken=True)))
    (result,) = run_check(REGISTRY.get("backup.rpo"), facts)
    assert result.evidence["archiving_broken"] is True
    assert result.evidence["last_failed_wal"] == "000000010000000000000007"
    assert result.evidence["last_failed_time"] == "2026-03-02T07:59:30Z"


def test_site_default_rpo_applies_to_sources_without_their_own():
    facts = backups(
        status("restic-local", "restic", point(20, RESTIC)),
        status("borg-nas", "borg", point(20, BORG), rpo=10),
    )
    results = run_check(REGISTRY.get("backup.rpo"), facts, {"default_rpo_minutes": 30})
    assert [r.status for r in results] == [Status.PASS, Status.FAIL]
    assert results[1].evidence["rpo_seconds"] == 600


def test_rpo_parameter_must_be_a_number():
    with pytest.raises(ParameterError, match="default_rpo_minutes"):
        run_check(REGISTRY.get("backup.rpo"), backups(), {"default_rpo_minutes": "15"})


def test_offsite_copy_older_than_its_rpo_does_not_count():
    # One off-site copy is stale, another fresh: the fresh one is what passes.
    facts = backups(
        status("borg-dr", "borg", point(26 * 60, BORG), site="dr-site"),
        status("restic-cloud", "restic", point(10, RESTIC), site="cloud-bj"),
    )
    (result,) = run_check(REGISTRY.get("backup.offsite"), facts)
    assert result.status is Status.PASS
    assert "restic-cloud" in result.message
    assert result.target == "dc-main"
    assert set(result.evidence["sources"]) == {"borg-dr", "restic-cloud"}


def test_offsite_uses_the_sources_own_rpo():
    facts = backups(status("borg-dr", "borg", point(26 * 60, BORG), site="dr-site", rpo=48 * 60))
    (result,) = run_check(REGISTRY.get("backup.offsite"), facts)
    assert result.status is Status.PASS
