"""Compliance through the collector's API on both backends, with reports from a real agent run
sealed and posted by enrolled agents (Ed25519 and SM2): the JSON report joins their newest
results clause by clause, an enrolled agent that never reported is missing, `as_of` reads the
past, attestations are refused on automated or unknown clauses, and every call is audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.models import Role
from collector.settings import SnapshotSettings
from collector.store import Store
from tests.collector.fixtures_api import (
    Server,
    TlsFiles,
    agent_report,
    enrol,
    make_report,
    make_server_tls,
    serving,
)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    doc = agent_report()
    doc["inventory"]["site"] = "dc1"
    return doc


@pytest.fixture
def server(store: Store, server_tls: TlsFiles, tmp_path: Path) -> Iterator[Server]:
    snapshots = SnapshotSettings(dir=str(tmp_path / "snapshots"), key_file=str(tmp_path / "k"))
    with serving(store, server_tls, snapshots=snapshots) as running:
        yield running


def post(server: Server, name: str, template: dict[str, Any], **kwargs: Any) -> str:
    """Enrol `name` (unless done) and post one report of host `name`; its report id."""
    creds = kwargs.pop("creds")
    body = make_report(template, host=name, **kwargs)
    answer = server.client(creds.token).post("/api/v1/reports", content=creds.seal(body))
    assert answer.status_code == 201, answer.text
    return str(json.loads(body)["report_id"])


def test_the_json_report_joins_each_hosts_newest_results(
    server: Server, template: dict[str, Any]
) -> None:
    ed = enrol(server, "his-db-01")
    sm = enrol(server, "pacs-01", "sm2-sm3")
    enrol(server, "lis-db-01")  # enrolled, never reports
    earlier = server.clock()
    old = post(
        server,
        "his-db-01",
        template,
        creds=ed,
        generated_at=earlier,
        statuses={"disk.cipher_strength": "pass"},
    )
    server.clock.advance(timedelta(minutes=20))
    new = post(
        server,
        "his-db-01",
        template,
        creds=ed,
        generated_at=server.clock(),
        statuses={"disk.cipher_strength": "fail"},
    )
    post(server, "pacs-01", template, creds=sm)
    auditor = server.client(server.user(Role.AUDITOR))

    answer = auditor.get("/api/v1/compliance", params={"standard": "gbt22239-2019-l3"})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["schema"] == "medsec.compliance/v1"
    assert doc["standard"] == "gbt22239-2019-l3"
    assert {h["hostname"] for h in doc["hosts"]} == {"his-db-01", "pacs-01"}
    assert [m["agent"] for m in doc["missing"]] == ["lis-db-01"]
    encryption = next(c for c in doc["clauses"] if c["id"] == "8.1.4.8 b")
    assert encryption["status"] == "fail"
    his = next(o for o in encryption["objects"] if o["name"] == "his-db-01")
    assert his["status"] == "fail"
    cipher = [e for e in encryption["evidence"] if e["check_id"] == "disk.cipher_strength"]
    assert {e["report_id"] for e in cipher if e["object"] == his["id"]} == {new}
    assert all(isinstance(e["evidence"], dict) for e in cipher)
    lis = next(o for o in encryption["objects"] if o["name"] == "lis-db-01")
    assert (lis["kind"], lis["status"]) == ("agent", "error")
    assert set(doc["summary"]["clauses"]["by_status"]) >= {"pass", "fail", "manual"}

    # As of before the newer report: the older one is the evidence.
    as_of = (earlier + timedelta(minutes=1)).isoformat()
    past = auditor.get(
        "/api/v1/compliance", params={"standard": "gbt22239-2019-l3", "as_of": as_of}
    ).json()
    assert [h["report_id"] for h in past["hosts"]] == [old]
    assert past["scope"]["as_of"] == as_of

    site = auditor.get("/api/v1/compliance", params={"standard": "mnds", "site": "nowhere"})
    assert site.status_code == 400
    assert site.json()["error"] == "invalid_scope"
    bad = auditor.get("/api/v1/compliance", params={"standard": "iso27001"})
    assert bad.status_code == 422


def test_the_store_keeps_each_reports_signature_for_the_snapshot(
    server: Server, template: dict[str, Any], store_url: str
) -> None:
    creds = enrol(server, "his-db-01", "sm2-sm3")
    report_id = post(server, "his-db-01", template, creds=creds)
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT alg, signature, signer_key FROM reports WHERE report_id = :r"),
                {"r": report_id},
            ).one()
            site = conn.execute(sa.text("SELECT site FROM hosts")).scalar_one()
            zh = conn.execute(
                sa.text("SELECT count(*) FROM results WHERE message_zh IS NOT NULL")
            ).scalar_one()
    finally:
        engine.dispose()
    assert row.alg == "sm2-sm3"
    assert row.signature
    assert "BEGIN PUBLIC KEY" in row.signer_key
    assert site == "dc1"
    assert zh > 0  # the Chinese messages are kept for zh reports


def test_attestations_on_manual_clauses_only(server: Server) -> None:
    auditor_token = server.user(Role.AUDITOR, "auditor-li")
    auditor = server.client(auditor_token)
    made = auditor.post(
        "/api/v1/attestations",
        json={
            "standard": "gbt22239-2019-l3",
            "clause": "8.1.1.2",
            "status": "pass",
            "note": "门禁系统验收报告 2026-11",
            "valid_days": 30,
            "file_name": "access-control.pdf",
            "file_sha256": "ab" * 32,
        },
    )
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == "auditor-li"
    doc = auditor.get("/api/v1/compliance", params={"standard": "gbt22239-2019-l3"}).json()
    clause = next(c for c in doc["clauses"] if c["id"] == "8.1.1.2")
    assert (clause["status"], clause["conformity"]) == ("pass", "符合")
    assert clause["evidence"][0]["attestation"]["kind"] == "attestation"
    assert clause["evidence"][0]["attestation"]["file_sha256"] == "ab" * 32

    server.clock.advance(timedelta(days=31))  # expired: manual again
    doc = auditor.get("/api/v1/compliance", params={"standard": "gbt22239-2019-l3"}).json()
    assert next(c for c in doc["clauses"] if c["id"] == "8.1.1.2")["status"] == "manual"

    automated = auditor.post(
        "/api/v1/attestations",
        json={"standard": "mnds", "clause": "6.1.1", "status": "pass", "note": "trust me"},
    )
    assert automated.status_code == 400
    assert automated.json()["error"] == "clause_automated"
    unknown = auditor.post(
        "/api/v1/attestations",
        json={"standard": "mnds", "clause": "9.9.9", "status": "pass", "note": "x"},
    )
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_clause")
    anonymous = server.client().post("/api/v1/attestations", json={})
    assert anonymous.status_code == 401
    listed = auditor.get("/api/v1/attestations").json()
    assert [a["clause"] for a in listed] == ["8.1.1.2"]
    actions = [e.action for e in server.store.audit_entries(100, 0).items]
    assert "POST /api/v1/attestations" in actions


def test_snapshots_are_made_listed_downloaded_intact_and_audited(
    server: Server, template: dict[str, Any]
) -> None:
    from collector.compliance.snapshot_verify import verify_snapshot

    creds = enrol(server, "his-db-01")
    post(server, "his-db-01", template, creds=creds)
    auditor = server.client(server.user(Role.AUDITOR, "auditor-wang"))
    made = auditor.post("/api/v1/snapshots", json={"site": "dc1"}, timeout=300)
    assert made.status_code == 201, made.text
    record = made.json()
    assert (record["hosts"], record["created_by"]) == (1, "auditor-wang")
    assert record["scope"]["site"] == "dc1"
    assert [s["id"] for s in auditor.get("/api/v1/snapshots").json()] == [record["id"]]

    download = auditor.get(f"/api/v1/snapshots/{record['id']}")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    verdict = verify_snapshot(download.content, record["key_fingerprint"])
    assert verdict.exit_code == 0, [f.reasons for f in verdict.findings]
    assert verdict.envelopes_verified == 1

    for body in ({"site": 5}, {"zone": ""}, {"as_of": "x" * 65}, {"hosts": "all"}, [], "x"):
        refused = auditor.post("/api/v1/snapshots", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"] == "invalid_request"
    late = auditor.post("/api/v1/snapshots", json={"as_of": "2999-01-01T00:00:00Z"})
    assert (late.status_code, late.json()["error"]) == (400, "invalid_scope")
    for never in ("0001-01-01T00:00:00+01:00", "2026-01-01T00:00:00+15:00"):  # once a 500
        made = auditor.post("/api/v1/snapshots", json={"as_of": never})
        assert (made.status_code, made.json()["error"]) == (400, "invalid_scope")
        read = auditor.get("/api/v1/compliance", params={"standard": "mnds", "as_of": never})
        assert read.status_code == 400, read.text
    nothing = auditor.post("/api/v1/snapshots", json={"host": "nobody"})
    assert (nothing.status_code, nothing.json()["error"]) == (400, "invalid_scope")
    assert server.client(creds.token).get("/api/v1/snapshots").status_code == 403  # an agent
    assert auditor.get(f"/api/v1/snapshots/{'0' * 8}-0000-4000-8000-{'0' * 12}").status_code == 404

    # A kept snapshot altered on disk is never served as if it were the signed one.
    (kept,) = Path(server.settings.snapshots.dir).glob(f"*{record['id']}.zip")
    kept.chmod(0o640)
    data = bytearray(kept.read_bytes())
    data[len(data) // 2] ^= 0xFF
    kept.write_bytes(bytes(data))
    altered = auditor.get(f"/api/v1/snapshots/{record['id']}")
    assert (altered.status_code, altered.json()["error"]) == (500, "snapshot_altered")

    audited = [(e.actor, e.action) for e in server.store.audit_entries(100, 0).items]
    assert ("auditor-wang", "POST /api/v1/snapshots") in audited
    assert ("auditor-wang", f"GET /api/v1/snapshots/{record['id']}") in audited
