"""The text renderers — JSON (the contract), CSV and the one-screen summary — over one
aggregation result, compared with golden files (regenerated only with MEDSEC_UPDATE_GOLDEN=1),
and the JSON streamed to a file is the JSON rendered whole."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from collector.compliance.render import render
from collector.compliance.render.json import write_json
from tests.compliance.sample import sample_compliance

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("MEDSEC_UPDATE_GOLDEN") == "1":
        path.write_bytes(data)
    assert data == path.read_bytes(), f"{name} changed; MEDSEC_UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize(
    ("fmt", "lang", "name"),
    [
        ("json", "zh", "report.gbt.json"),
        ("csv", "zh", "report.gbt.zh.csv"),
        ("csv", "en", "report.gbt.en.csv"),
        ("summary", "zh", "summary.gbt.zh.txt"),
        ("summary", "en", "summary.mnds.en.txt"),
    ],
)
def test_text_formats_match_their_golden_files(fmt: str, lang: str, name: str) -> None:
    standard = "mnds" if ".mnds." in name else "gbt22239-2019-l3"
    golden(name, render(sample_compliance(standard), fmt, lang))


def test_the_json_contract() -> None:
    doc = json.loads(render(sample_compliance(), "json"))
    assert doc["schema"] == "medsec.compliance/v1"
    assert set(doc) >= {
        "standard",
        "catalog_edition",
        "generated_at",
        "scope",
        "summary",
        "clauses",
        "hosts",
        "missing",
    }
    clause = next(c for c in doc["clauses"] if c["id"] == "8.1.4.8 b")
    assert set(clause) >= {"id", "family", "control", "status", "conformity", "objects", "evidence"}
    assert set(clause["objects"][0]) >= {"kind", "name", "status", "conformity"}
    item = clause["evidence"][0]
    assert set(item) >= {
        "type",
        "object",
        "check_id",
        "status",
        "message",
        "target",
        "evidence",
        "report_id",
        "received_at",
    }
    attested = next(c for c in doc["clauses"] if c["id"] == "8.1.1.2")
    assert attested["evidence"][0]["type"] == "attestation"
    assert set(doc["summary"]["families"][0]) == {"family", "clauses", "counts"}


def test_streamed_json_is_the_rendered_json(tmp_path: Path) -> None:
    document = sample_compliance(hosts=50)
    with (tmp_path / "r.json").open("wb") as out:
        write_json(document, out)
    assert (tmp_path / "r.json").read_bytes() == render(document, "json")


def test_csv_has_a_row_per_clause_and_object() -> None:
    document = sample_compliance()
    rows = list(csv.reader(io.StringIO(render(document, "csv", "en").decode("utf-8-sig"))))
    expected = sum(max(1, len(c.objects)) for c in document.clauses)
    assert len(rows) - 1 == expected
