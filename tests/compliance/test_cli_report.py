"""`medsec report` and `medsec attest` on a collector made by `medsec init`, holding reports
signed and stored as the API stores them: the files they write, the changes since an earlier
report, and bad input — one line, exit 2, nothing half-written."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from checks.envelope import generate_private_key, parse_report, public_key_pem, sign
from collector.cli import main
from collector.settings import load_settings
from collector.store import Store

NOW = datetime.now(UTC).replace(microsecond=0)


def _report(host: str, statuses: dict[str, str], generated_at: datetime) -> bytes:
    results = [
        {
            "check_id": check_id,
            "status": status,
            "severity": "high",
            "title": {"en": check_id, "zh": check_id},
            "message": f"{check_id}: {status}",
            "message_zh": f"{check_id}：{status}",
            "target": None,
            "evidence": {"seen": status},
            "clauses": [],
        }
        for check_id, status in statuses.items()
    ]
    doc = {
        "schema": "medsec.report/v1",
        "report_id": str(uuid.uuid4()),
        "host": {
            "id": "machine-id:" + hashlib.sha256(host.encode()).hexdigest()[:32],
            "hostname": host,
        },
        "generated_at": generated_at.isoformat(),
        "agent": {"version": "0.1.0"},
        "inventory": {"site": "dc1"},
        "results": results,
    }
    return json.dumps(doc).encode()


@pytest.fixture
def collector(tmp_path: Path) -> Path:
    """A collector folder from `medsec init` holding one host's signed report."""
    assert main(["init", "--dir", str(tmp_path / "c")]) == 0
    config = tmp_path / "c" / "collector.yaml"
    store_report(config, "his-db-01", {"disk.cipher_strength": "pass", "tpm.present": "pass"})
    return config


def store_report(config: Path, host: str, statuses: dict[str, str]) -> None:
    store = Store.open(load_settings(config).database)
    try:
        key = generate_private_key("ed25519")
        token = store.create_enrollment(host, timedelta(hours=1), NOW)
        agent, _ = store.redeem_enrollment(
            token, host, "ed25519", public_key_pem(key, "ed25519"), NOW
        )
        body = _report(host, statuses, datetime.now(UTC))
        store.ingest(
            agent, parse_report(body), body, datetime.now(UTC), signature=sign(body, key, "ed25519")
        )
    finally:
        store.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refuses the command line before main runs it
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_files_in_every_text_format(
    collector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mnds.json"
    code, _, err = run(
        capsys,
        "report",
        "--standard",
        "mnds",
        "--format",
        "json",
        "--out",
        str(out),
        "--config",
        str(collector),
    )
    assert code == 0, err
    assert err.startswith(f"wrote {out} (mnds, json)")
    doc: dict[str, Any] = json.loads(out.read_text())
    assert (doc["schema"], doc["standard"], doc["standard_id"]) == (
        "medsec.compliance/v1",
        "mnds",
        "MNDS",
    )
    assert set(doc) >= {"catalog_edition", "generated_at", "scope", "summary", "clauses"}
    storage = next(c for c in doc["clauses"] if c["id"] == "4.3.1")
    assert storage["status"] == "pass"  # disk.cipher_strength passed, the only disk result
    assert storage["objects"][0]["name"] == "his-db-01"
    assert storage["evidence"][0]["evidence"] == {"seen": "pass"}

    table = tmp_path / "gbt.csv"
    code, _, err = run(
        capsys,
        "report",
        "--standard",
        "gbt22239-2019-l3",
        "--format",
        "csv",
        "--out",
        str(table),
        "--lang",
        "en",
        "--config",
        str(collector),
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(table.read_text(encoding="utf-8-sig"))))
    tpm = [r for r in rows if r["clause"] == "8.1.4.6"]
    assert [(r["object"], r["object status"]) for r in tpm] == [("his-db-01", "pass")]

    code, screen, _ = run(capsys, "report", "--standard", "mnds", "--config", str(collector))
    assert code == 0
    assert "数字医疗网络数据安全管理规范" in screen
    assert "主机 1" in screen


def test_changes_since_an_earlier_report(
    collector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tmp_path / "before.json"
    assert (
        run(
            capsys,
            "report",
            "--standard",
            "mnds",
            "--format",
            "json",
            "--out",
            str(before),
            "--config",
            str(collector),
        )[0]
        == 0
    )
    store_report(collector, "pacs-01", {"disk.cipher_strength": "fail"})
    code, screen, err = run(
        capsys,
        "report",
        "--standard",
        "mnds",
        "--since",
        str(before),
        "--lang",
        "en",
        "--config",
        str(collector),
    )
    assert code == 0, err
    assert "changes since" in screen
    assert "4.3.1: pass → fail" in screen
    after = tmp_path / "after.json"
    run(
        capsys,
        "report",
        "--standard",
        "mnds",
        "--format",
        "json",
        "--out",
        str(after),
        "--since",
        str(before),
        "--config",
        str(collector),
    )
    changes = json.loads(after.read_text())["changes"]
    assert {"clause": "4.3.1", "object": None, "before": "pass", "after": "fail"} in changes
    assert any(c["object"] and c["before"] is None and c["after"] == "fail" for c in changes)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--standard", "iso27001"], "invalid choice: 'iso27001'"),
        (["--standard", "mnds", "--as-of", "yesterday"], "--as-of: 'yesterday' is not a time"),
        (["--standard", "mnds", "--as-of", "2999-01-01T00:00:00Z"], "is in the future"),
        # Year 1 east of UTC has no UTC instant: an OverflowError once answered with a traceback.
        (["--standard", "mnds", "--as-of", "0001-01-01T00:00:00+01:00"], "no instant in UTC"),
        (["--standard", "mnds", "--as-of", "2026-01-01T00:00:00+15:00"], "beyond ±14:00"),
        (["--standard", "mnds", "--host", "nobody"], "no host matches --host nobody"),
        (["--standard", "mnds", "--zone", "his"], "no zone named 'his'"),
        (["--standard", "mnds", "--since", "/nonexistent.json"], "--since: cannot read"),
    ],
)
def test_bad_report_requests_are_one_line_and_exit_2(
    collector: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    out = tmp_path / "kept.json"
    out.write_text("an earlier report")
    code, _, err = run(
        capsys, "report", *argv, "--format", "json", "--out", str(out), "--config", str(collector)
    )
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert out.read_text() == "an earlier report"  # untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kept")] == []


def test_binary_formats_need_a_file(collector: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "report", "--standard", "mnds", "--format", "pdf", "--config", str(collector)
    )
    assert (code, out) == (2, "")
    assert err.strip() == "medsec: --format pdf needs --out FILE"


def test_an_unwritable_output_leaves_nothing(
    collector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "report",
        "--standard",
        "mnds",
        "--format",
        "json",
        "--out",
        str(tmp_path / "missing" / "r.json"),
        "--config",
        str(collector),
    )
    assert code == 2
    assert (
        err.strip()
        == f"medsec: cannot write {tmp_path / 'missing' / 'r.json'}: No such file or directory"
    )


def test_attest_a_manual_clause_with_its_document(
    collector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(capsys, "users", "add", "auditor-li", "--role", "auditor", "--config", str(collector))[
            0
        ]
        == 0
    )
    document = tmp_path / "degaussing-certificate.pdf"
    document.write_bytes(b"%PDF-1.4 certificate of degaussing\n")
    code, out, err = run(
        capsys,
        "attest",
        "7.2.2.2",
        "--standard",
        "mnds",
        "--status",
        "pass",
        "--note",
        "消磁证书 2026-11，见附件",
        "--file",
        str(document),
        "--valid-days",
        "90",
        "--as",
        "auditor-li",
        "--config",
        str(collector),
    )
    assert code == 0, err
    digest = hashlib.sha256(document.read_bytes()).hexdigest()
    assert digest in out
    report = tmp_path / "mnds.json"
    run(
        capsys,
        "report",
        "--standard",
        "mnds",
        "--format",
        "json",
        "--out",
        str(report),
        "--config",
        str(collector),
    )
    clause = next(c for c in json.loads(report.read_text())["clauses"] if c["id"] == "7.2.2.2")
    assert clause["status"] == "pass"
    attestation = clause["evidence"][0]["attestation"]
    assert (attestation["by"], attestation["file_sha256"]) == ("auditor-li", digest)

    code, _, err = run(
        capsys,
        "attest",
        "6.1.1",
        "--standard",
        "mnds",
        "--status",
        "pass",
        "--note",
        "x",
        "--as",
        "auditor-li",
        "--config",
        str(collector),
    )
    assert code == 2
    assert "MNDS 6.1.1 is automated" in err
    code, _, err = run(
        capsys,
        "attest",
        "7.2.2.2",
        "--standard",
        "mnds",
        "--status",
        "pass",
        "--note",
        "x",
        "--as",
        "nobody",
        "--config",
        str(collector),
    )
    assert (code, err.strip()) == (2, "medsec: --as: no user named 'nobody'")
    store = Store.open(load_settings(collector).database)
    try:
        actions = [e.action for e in store.audit_entries(100, 0).items]
    finally:
        store.close()
    assert any(a.startswith("cli attest mnds '7.2.2.2' pass --as auditor-li") for a in actions)


def test_snapshot_create_verify_and_changes_since_it(
    collector: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zip_path = tmp_path / "snapshot.zip"
    code, out, err = run(
        capsys, "snapshot", "create", "--out", str(zip_path), "--config", str(collector)
    )
    assert code == 0, err
    fingerprint = out.strip().splitlines()[-1].split()[-1]
    assert fingerprint.startswith("SHA256:")
    code, out, _ = run(capsys, "snapshot", "verify", str(zip_path), "--expect-key", fingerprint)
    assert code == 0, out
    assert "hosts: 1, 1 with a verified signed report" in out
    other = "SHA256:" + "0" * 64
    code, out, _ = run(capsys, "snapshot", "verify", str(zip_path), "--expect-key", other)
    assert code == 1

    store_report(collector, "pacs-01", {"tpm.present": "fail"})
    code, screen, err = run(
        capsys,
        "report",
        "--standard",
        "mnds",
        "--since",
        str(zip_path),
        "--lang",
        "en",
        "--config",
        str(collector),
    )
    assert code == 0, err
    assert "6.1.1: pass → fail" in screen

    code, _, err = run(
        capsys,
        "snapshot",
        "create",
        "--out",
        str(tmp_path / "x.zip"),
        "--site",
        "nowhere",
        "--config",
        str(collector),
    )
    assert (code, err.strip()) == (2, "medsec: no host matches --site nowhere")
    assert not (tmp_path / "x.zip").exists()
