"""Catalog meta-test: the clause mapping and the checks agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.catalog import CatalogError, builtin_catalogs, load_catalog
from checks.device import device_registry
from checks.net import network_registry
from checks.registry import builtin_registry
from tests.checks.all_cases import ALL_CASES, registries
from tests.checks.meta import unmapped, without_cases


def all_check_ids() -> list[str]:
    return builtin_registry().ids() + network_registry().ids() + device_registry().ids()


STANDARDS = Path(__file__).resolve().parents[2] / "checks" / "standards"


@pytest.mark.parametrize("registry", registries(), ids=["host", "network", "device"])
def test_every_check_is_mapped_to_a_clause(registry):
    assert unmapped(registry, builtin_catalogs()) == []


def test_every_mapped_check_exists():
    assert sorted(builtin_catalogs().mapped_check_ids() - set(all_check_ids())) == []


@pytest.mark.parametrize("registry", registries(), ids=["host", "network", "device"])
def test_every_check_has_pass_and_fail_cases(registry):
    assert without_cases(registry, ALL_CASES) == []


def test_catalogs_cover_the_scope():
    by_id = {cat.standard.id: cat for cat in builtin_catalogs()}
    gbt = {c.id for c in by_id["GB/T 22239-2019"].clauses}
    # Every technical family of chapter 8.1 is present, item by item.
    for family in ("8.1.1", "8.1.2", "8.1.3", "8.1.4", "8.1.5"):
        assert any(c.startswith(family + ".") for c in gbt), family
    assert {"8.1.4.6", "8.1.4.9 b", "8.1.3.2 a", "8.1.5.4 d"} <= gbt
    mnds = {c.id for c in by_id["MNDS"].clauses}
    assert {
        "4.3.1",
        "6.1.1",
        "6.1.2",
        "6.2.2",
        "6.2.3",
        "7.2.3.4",
        "7.2.4.1",
        "7.2.4.2",
        "7.2.4.3",
    } <= mnds


def test_tpm_checks_cite_the_clauses_the_issue_names():
    catalogs = builtin_catalogs()
    for check_id in ("tpm.present", "tpm.pcr_bank", "tpm.ek_certificate", "tpm.lockout"):
        clauses = catalogs.clause_ids(check_id)
        assert "GB/T 22239-2019 8.1.4.6" in clauses
        assert "MNDS 6.1.1" in clauses


def test_trusted_verification_is_recorded_as_may():
    gbt = next(c for c in builtin_catalogs() if c.standard.id == "GB/T 22239-2019")
    clause = next(c for c in gbt.clauses if c.id == "8.1.4.6")
    assert clause.obligation == "may"
    assert clause.text_zh.startswith("可")


@pytest.mark.parametrize("name", ["gbt22239-2019-l3.yaml", "mnds.yaml"])
def test_clauses_with_checks_are_automated(name):
    # The loader refuses an automated clause without checks; the converse is this test's.
    catalog = load_catalog(STANDARDS / name)
    for clause in catalog.clauses:
        assert (clause.assessment == "automated") == bool(clause.checks), clause.id


def test_duplicate_clause_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "standard: {id: X, title_zh: x, title_en: x, edition: '1', scope: s, source: s}\n"
        "clauses:\n"
        "  - {id: '1', family: f, control: c, text_zh: t, title_en: t, provenance: V,"
        " assessment: manual}\n"
        "  - {id: '1', family: f, control: c, text_zh: t, title_en: t, provenance: V,"
        " assessment: manual}\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogError, match="listed twice"):
        load_catalog(bad)


def test_unknown_key_in_catalog_is_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "standard: {id: X, title_zh: x, title_en: x, edition: '1', scope: s, source: s,"
        " colour: red}\nclauses: []\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogError, match="colour"):
        load_catalog(bad)


def test_network_checks_stay_out_of_the_agent():
    assert not [c for c in builtin_registry().ids() if c.startswith("net.")]
    assert set(network_registry().ids()) == {
        "net.segmentation",
        "net.internet_isolation",
        "net.border_firewall",
        "net.waf",
        "net.ztna_coverage",
        "net.tls_floor",
    }
