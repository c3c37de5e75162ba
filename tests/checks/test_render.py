"""Renderers are tested against golden files: what a sysadmin or a script reads must not drift.

Regenerate after an intended change with `MEDSEC_UPDATE_GOLDEN=1 pytest tests/agent/test_render.py`
and review the diff.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.report import build_report
from checks.catalog import builtin_catalogs
from checks.facts import HostFacts
from checks.registry import builtin_registry
from checks.render import render_json, render_table
from checks.runner import evaluate
from tests.checks.cases import HW, LOCKOUT_OK, TPM_GOOD

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CHECKS = (
    "host.secure_boot",
    "tpm.ek_certificate",
    "tpm.lockout",
    "tpm.pcr_bank",
    "tpm.present",
)


def report():
    facts = HostFacts(
        hardware=HW, tpm=replace(TPM_GOOD, lockout=replace(LOCKOUT_OK, in_lockout=True, counter=32))
    )
    registry = builtin_registry()
    # A fixed set of checks, so that checks added later do not churn these golden files.
    chosen = [registry.get(i) for i in GOLDEN_CHECKS]
    results = evaluate(chosen, facts)
    return build_report(
        facts,
        results,
        "0.1.0",
        now=datetime(2026, 11, 28, 9, 30, tzinfo=UTC),
        report_id="00000000-0000-4000-8000-000000000001",
    )


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("MEDSEC_UPDATE_GOLDEN"):
        path.write_bytes(data)
    assert data.decode() == path.read_text(encoding="utf-8")


def test_json_report_matches_golden_and_contract():
    data = render_json(report().to_dict(builtin_catalogs()), builtin_catalogs())
    check_golden("report.json", data)
    doc = json.loads(data)
    assert doc["schema"] == "medsec.report/v1"
    assert doc["generated_at"] == "2026-11-28T09:30:00Z"
    assert doc["host"] == {"id": "sha256:" + "0" * 64, "hostname": "his-db-01"}
    lockout = next(r for r in doc["results"] if r["check_id"] == "tpm.lockout")
    assert lockout["status"] == "fail"
    assert "MNDS 6.1.1" in lockout["clauses"]
    assert doc["inventory"]["hardware"]["cpu"] == {"unavailable": "not recorded"}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_table_matches_golden(lang):
    data = render_table(report().to_dict(builtin_catalogs()), builtin_catalogs(), lang)
    check_golden(f"table.{lang}.txt", data)
    assert b"\x1b[" not in data


def test_table_colours_status_only_when_asked():
    data = render_table(report().to_dict(builtin_catalogs()), builtin_catalogs(), color=True)
    assert b"\x1b[31mFAIL" in data
    assert b"\x1b[32mPASS" in data
