"""Signed auditor snapshots against a real store (SQLite, and the PostgreSQL server on this
machine) filled by really signed envelopes: two Ed25519 agents and an SM2 one, a host stored
without its signature (as before the collector kept them) and a scan. Each snapshot is checked by
the offline verifier as it is, then altered the ways a forger would: a member's byte, a member
removed or added, a result in snapshot.json re-signed with another key, an envelope's report, a
truncated file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from agent.report import build_report
from checks import envelope as env
from checks.catalog import builtin_catalogs
from checks.facts import (
    CpuInfo,
    Disk,
    DmiInfo,
    HardwareFacts,
    HostFacts,
    HostIdentity,
    Nic,
)
from checks.facts.backup import BackupFacts
from checks.facts.wipe import WipeFacts
from checks.registry import builtin_registry
from checks.runner import evaluate
from collector.compliance.model import Scope
from collector.compliance.service import ComplianceError
from collector.compliance.snapshot import (
    SnapshotAltered,
    SnapshotKey,
    create_snapshot,
    read_snapshot,
    save_snapshot,
)
from collector.compliance.snapshot_verify import (
    TRUST_NOTE,
    SnapshotVerdict,
    fingerprint,
    format_verdict,
    verify_snapshot,
)
from collector.models import Agent
from collector.scans import store_scan_report
from collector.settings import CollectorSettings, SnapshotSettings, TlsSettings
from collector.store import Store
from tests.checks.cases import EK, TPM_ABSENT, TPM_GOOD
from tests.checks.cases_backup import RESTIC, point, status
from tests.checks.cases_logs import AUTH_DEBIAN, logs
from tests.checks.cases_wipe_crypto import ALL_TOOLS, NVME, luks_layout_of, plain_layout

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
RENDER = Path(__file__).resolve().parents[2] / "collector" / "compliance" / "render"


# ----------------------------------------------------------------------------- hosts


@dataclass(frozen=True)
class Machine:
    hostname: str
    alg: env.Alg | None
    """None: stored without its signature, as reports were before the collector kept them."""
    serial: str
    disk_serial: str
    tpm: bool = True
    luks: bool = True


MACHINES = (
    Machine("his-db-01", "ed25519", "SN-HIS-DB-01", "S5GXNF0R100001"),
    Machine("pacs-01", "sm2-sm3", "SN-PACS-01", "S5GXNF0R100002", tpm=False, luks=False),
    Machine("lis-app-01", "ed25519", "SN-LIS-APP-01", "S5GXNF0R100003"),
    Machine("emr-old-01", None, "SN-EMR-OLD-01", "S5GXNF0R100004"),
)


def host_id(machine: Machine) -> str:
    return "sha256:" + hashlib.sha256(machine.serial.encode()).hexdigest()


def facts(machine: Machine, n: int) -> HostFacts:
    hardware = HardwareFacts(
        hostname=machine.hostname,
        os_release={"ID": "kylin", "PRETTY_NAME": "Kylin Linux Advanced Server V10"},
        kernel="4.19.90-52.22.v2207.ky10.x86_64",
        boot_mode="uefi",
        secure_boot=True,
        cpu=CpuInfo(model="Hygon C86 7285 32-core Processor", sockets=2, cores=64, threads=128),
        memory_bytes=256 * 2**30,
        disks=(
            Disk(
                name="nvme0n1",
                path="/dev/nvme0n1",
                model="SAMSUNG MZQL23T8HCLS",
                serial=machine.disk_serial,
                size_bytes=3840 * 10**9,
                medium="nvme",
                transport="nvme",
                removable=False,
            ),
        ),
        nics=(
            Nic("eno1", f"b4:05:5d:00:00:0{n}", (f"198.18.1.{10 + n}/24",), physical=True),
            Nic("lo", None, ("127.0.0.1/8",), physical=False),
        ),
        dmi=DmiInfo(
            sys_vendor="Inspur",
            product_name="NF5280M6",
            product_serial=machine.serial,
            product_uuid=None,
            board_serial=None,
            bios_vendor="American Megatrends Inc.",
            bios_version="06.00.01",
            bios_date="03/15/2025",
        ),
        identity=HostIdentity(id=host_id(machine), source="dmi-serial"),
    )
    return HostFacts(
        hardware=hardware,
        tpm=TPM_GOOD if machine.tpm else TPM_ABSENT,
        disk=luks_layout_of("nvme0n1") if machine.luks else plain_layout("nvme0n1"),
        backups=BackupFacts(
            host_site="dc1", sources=(status("srv", "restic", point(5, RESTIC), site="dc2"),)
        ),
        wipe=WipeFacts(tools=ALL_TOOLS, disks=(NVME,)),
        logs=logs(AUTH_DEBIAN).logs,
    )


def report_bytes(machine: Machine, n: int, generated_at: datetime) -> bytes:
    """The report exactly as the agent renders it, over the real checks' results."""
    found = facts(machine, n)
    results = evaluate(builtin_registry(), found)
    report = build_report(found, results, "0.9.0", generated_at, site="dc1")
    document = report.to_dict(builtin_catalogs())
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


@dataclass
class Enrolled:
    agent: Agent
    private_pem: str


def enrol(store: Store, machine: Machine) -> Enrolled:
    alg = machine.alg or "ed25519"
    private_pem = env.generate_private_key(alg)
    token = store.create_enrollment(
        machine.hostname, timedelta(minutes=15), NOW - timedelta(days=1)
    )
    agent, _ = store.redeem_enrollment(
        token, machine.hostname, alg, env.public_key_pem(private_pem, alg), NOW - timedelta(days=1)
    )
    return Enrolled(agent, private_pem)


def send(store: Store, machine: Machine, who: Enrolled, data: bytes, received: datetime) -> None:
    """As the API does: open the sealed envelope, verify it, store the report with it."""
    if machine.alg is None:
        store.ingest(who.agent, env.parse_report(data), data, received)
        return
    sealed = env.seal(data, machine.hostname, who.private_pem, machine.alg)
    _, signed, signature = env.open_envelope(sealed)
    assert who.agent.public_key_pem is not None
    env.verify(signed, signature, who.agent.public_key_pem, machine.alg)
    store.ingest(who.agent, env.parse_report(signed), signed, received, signature=signature)


def scan_report(generated_at: datetime) -> bytes:
    result = {
        "check_id": "net.segmentation",
        "status": "fail",
        "severity": "high",
        "title": {"en": "Zones are segmented", "zh": "区域隔离"},
        "message": "guest->his: 5432/tcp open",
        "target": "guest->his",
        "evidence": {"open": ["198.18.2.10:5432"]},
    }
    return json.dumps(
        {
            "schema": "medsec.report/v1",
            "report_id": "5ca90000-0000-4000-8000-000000000001",
            "host": {"id": "scan:" + "5c" * 16, "hostname": "collector-01"},
            "generated_at": generated_at.isoformat(),
            "agent": {"version": "medsec-scan 0.9.0"},
            "inventory": {"network": {"zones_file": "/etc/medsec/zones.yaml"}},
            "results": [result],
        }
    ).encode()


REPLACED_DISK = "S5GXNF0R1999999"
"""his-db-01's disk after a swap: reported two minutes before NOW."""


def fill(store: Store) -> None:
    """The hosts' reports received ten minutes before NOW, his-db-01's newer one (with its disk
    replaced) one minute before, and a scan."""
    for n, machine in enumerate(MACHINES, start=1):
        who = enrol(store, machine)
        data = report_bytes(machine, n, NOW - timedelta(minutes=10))
        send(store, machine, who, data, NOW - timedelta(minutes=9))
        if n == 1:
            newer = replace(machine, disk_serial=REPLACED_DISK)
            data = report_bytes(newer, n, NOW - timedelta(minutes=2))
            send(store, machine, who, data, NOW - timedelta(minutes=1))
    store_scan_report(store, scan_report(NOW - timedelta(hours=1)), NOW - timedelta(hours=1))


def settings_for(url: str, folder: Path, crypto: str = "ed25519") -> CollectorSettings:
    return CollectorSettings(
        tls=TlsSettings(cert_file=str(folder / "tls.crt"), key_file=str(folder / "tls.key")),
        database=url,
        snapshots=SnapshotSettings(
            dir=str(folder / "snapshots"),
            key_file=str(folder / f"snapshot-{crypto}.key"),
            crypto=crypto,  # type: ignore[arg-type]
        ),
    )


@dataclass(frozen=True)
class World:
    store: Store
    settings: CollectorSettings
    folder: Path
    snapshot: bytes
    key: SnapshotKey

    def make(self, **changes: Any) -> bytes:
        options: dict[str, Any] = {
            "scope": Scope(),
            "now": NOW,
            "created_by": "auditor-li",
            "formats": ("json",),
        }
        options.update(changes)
        data, _ = create_snapshot(self.store, self.settings, **options)
        return data


def open_sqlite(folder: Path) -> Store:
    store = Store.open(f"sqlite:///{folder / 'collector.db'}")
    store.upgrade()
    return store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A SQLite store filled once, and its snapshot (JSON reports only: fast)."""
    folder = tmp_path_factory.mktemp("snapshot")
    store = open_sqlite(folder)
    try:
        fill(store)
        settings = settings_for(f"sqlite:///{folder / 'collector.db'}", folder)
        key = SnapshotKey.load_or_create(settings.snapshots.key_file, "ed25519")
        data, _ = create_snapshot(
            store, settings, scope=Scope(), now=NOW, created_by="auditor-li", formats=("json",)
        )
        yield World(store, settings, folder, data, key)
    finally:
        store.close()


# ----------------------------------------------------------------------------- zip surgery


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(contents: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return out.getvalue()


def resign(contents: dict[str, bytes], key: SnapshotKey) -> bytes:
    """What a forger holding `key` makes: every hash recomputed, the manifest naming and signed
    by `key`, its public key as signer.pem."""
    contents = dict(contents)
    contents["signer.pem"] = key.public_pem.encode()
    manifest = json.loads(contents["manifest.json"])
    manifest["key"] = {"alg": key.alg, "fingerprint": key.fingerprint}
    manifest["files"] = [
        {"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
        for n, d in contents.items()
        if n not in ("manifest.json", "manifest.sig")
    ]
    snapshot = json.loads(contents["snapshot.json"])
    if snapshot["key"]["fingerprint"] != key.fingerprint:
        snapshot["key"] = manifest["key"]
        contents["snapshot.json"] = json.dumps(snapshot, ensure_ascii=False).encode()
        for entry in manifest["files"]:
            if entry["name"] == "snapshot.json":
                entry["sha256"] = hashlib.sha256(contents["snapshot.json"]).hexdigest()
                entry["size"] = len(contents["snapshot.json"])
    contents["manifest.json"] = json.dumps(manifest).encode()
    contents["manifest.sig"] = base64.b64encode(key.sign(contents["manifest.json"]))
    return rezip(contents)


def snapshot_json(data: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(members(data)["snapshot.json"])
    return loaded


def host_entry(data: bytes, hostname: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        h for h in snapshot_json(data)["hosts"] if h["hostname"] == hostname
    )
    return found


def reasons(verdict: SnapshotVerdict, member: str) -> str:
    return " | ".join(r for f in verdict.findings if f.member == member for r in f.reasons)


# ----------------------------------------------------------------------------- intact


def test_a_snapshot_of_signed_reports_verifies_intact(world: World) -> None:
    verdict = verify_snapshot(world.snapshot)
    assert verdict.findings == ()
    assert verdict.exit_code == 0
    assert verdict.fingerprint == world.key.fingerprint
    assert verdict.alg == "ed25519"
    # his-db-01, lis-app-01 (Ed25519) and pacs-01 (SM2): their agents' signatures verified.
    assert (verdict.hosts, verdict.envelopes_verified, verdict.scans) == (4, 3, 1)
    assert len(verdict.unsigned) == 1
    assert verdict.unsigned[0].startswith("emr-old-01 ")
    assert "before the collector kept the envelopes" in verdict.unsigned[0]
    assert verdict.trust_note == TRUST_NOTE
    text = format_verdict(verdict)
    assert world.key.fingerprint in text
    assert TRUST_NOTE in text
    assert "intact" in text.splitlines()[-2]


def test_the_expected_key_replaces_the_trust_note(world: World) -> None:
    typed = world.key.fingerprint.removeprefix("SHA256:").upper()
    verdict = verify_snapshot(world.snapshot, expect_key=typed)
    assert verdict.exit_code == 0
    assert verdict.trust_note is None
    assert TRUST_NOTE not in format_verdict(verdict)
    assert f"expected key {world.key.fingerprint}" in format_verdict(verdict)


def test_members_are_in_a_fixed_order_dated_at_creation(world: World) -> None:
    with zipfile.ZipFile(io.BytesIO(world.snapshot)) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    entries = snapshot_json(world.snapshot)["hosts"]
    envelopes = [f"envelopes/{h['report_id']}.json" for h in entries if h["signed"]]
    assert names == [
        *envelopes,
        "reports/gbt22239-2019-l3.json",
        "reports/mnds.json",
        "snapshot.json",
        "signer.pem",
        "manifest.json",
        "manifest.sig",
    ]
    assert {i.date_time for i in infos} == {(2026, 12, 1, 8, 0, 0)}
    manifest = json.loads(members(world.snapshot)["manifest.json"])
    assert [f["name"] for f in manifest["files"]] == names[:-2]


def test_each_host_carries_the_hardware_and_results_its_agent_signed(world: World) -> None:
    snapshot = snapshot_json(world.snapshot)
    assert snapshot["schema"] == "medsec.snapshot/v1"
    assert snapshot["created_by"] == "auditor-li"
    assert snapshot["key"]["fingerprint"] == world.key.fingerprint
    assert [h["hostname"] for h in snapshot["hosts"]] == sorted(
        m.hostname for m in MACHINES
    )  # the reports' order: by hostname
    db = host_entry(world.snapshot, "his-db-01")
    assert db["id"] == host_id(MACHINES[0])
    hardware = db["hardware"]
    assert hardware["system"]["vendor"] == "Inspur"
    assert hardware["system"]["serial"] == "SN-HIS-DB-01"
    assert hardware["cpu"]["model"].startswith("Hygon")
    assert hardware["memory_bytes"] == 256 * 2**30
    (disk,) = hardware["disks"]
    assert (disk["model"], disk["serial"], disk["medium"]) == (
        "SAMSUNG MZQL23T8HCLS",
        REPLACED_DISK,  # the newest report's
        "nvme",
    )
    assert disk["encryption"][0]["device"] == "/dev/nvme0n12"  # the fixture names it so
    assert disk["encryption"][0]["kind"] == "luks2"
    assert disk["encryption"][0]["cipher"] == {"spec": "aes-xts-plain64", "effective_bits": 256}
    assert hardware["tpm"]["manufacturer"] == "NTZ"
    assert hardware["tpm"]["firmware_version"] == "7.2.3.1"
    assert hardware["tpm"]["ek_certificates"][0]["sha256"] == EK.sha256
    assert [n["name"] for n in hardware["nics"]] == ["eno1", "lo"]
    assert hardware["nics"][0]["addresses"] == ["198.18.1.11/24"]
    pacs = host_entry(world.snapshot, "pacs-01")
    assert pacs["alg"] == "sm2-sm3"
    assert pacs["hardware"]["tpm"]["present"] is False
    assert pacs["hardware"]["disks"][0]["encryption"] == []

    domains = {r["check_id"].split(".")[0] for r in db["results"]}
    assert domains == {"tpm", "disk", "backup", "wipe", "log"}
    by_check = {r["check_id"]: r for r in db["results"]}
    catalogs = builtin_catalogs()
    assert by_check["tpm.present"]["status"] == "pass"
    assert by_check["tpm.present"]["clauses"] == catalogs.clause_ids("tpm.present")
    assert "GB/T 22239-2019 8.1.4.6" in by_check["tpm.present"]["clauses"]
    assert {r["check_id"]: r["status"] for r in pacs["results"]}["tpm.present"] == "fail"
    assert "host.secure_boot" not in by_check  # not one of the snapshot's domains
    assert by_check["tpm.ek_certificate"]["evidence"]  # the check's evidence, as recorded


def test_scans_and_both_standards_are_referenced(world: World) -> None:
    snapshot = snapshot_json(world.snapshot)
    (scan,) = snapshot["scans"]
    assert scan["report_id"] == "5ca90000-0000-4000-8000-000000000001"
    assert scan["signed"] is False
    assert "ran itself" in scan["unsigned_reason"]
    assert set(snapshot["standards"]) == {"gbt22239-2019-l3", "mnds"}
    for key, summary in snapshot["standards"].items():
        assert summary["reports"] == [f"reports/{key}.json"]
        assert summary["summary"]["hosts"] == 4
        report = json.loads(members(world.snapshot)[f"reports/{key}.json"])
        assert report["standard"] == key
        assert report["summary"] == summary["summary"]
    unsigned = host_entry(world.snapshot, "emr-old-01")
    assert unsigned["signed"] is False
    assert unsigned["envelope"] is None
    assert "before the collector kept" in unsigned["unsigned_reason"]
    assert unsigned["hardware"]["system"]["serial"] == "SN-EMR-OLD-01"


def test_as_of_takes_the_hardware_of_the_report_of_that_instant(world: World) -> None:
    earlier = world.make(scope=Scope(as_of="2026-12-01T07:55:00Z"))
    assert verify_snapshot(earlier).exit_code == 0
    db = host_entry(earlier, "his-db-01")
    assert db["hardware"]["disks"][0]["serial"] == "S5GXNF0R100001"
    assert snapshot_json(earlier)["evaluated_at"] == "2026-12-01T07:55:00Z"
    (inventory,) = [i for _, i in world.store.host_inventories([db["id"]])]
    assert inventory["hardware"]["disks"][0]["serial"] == REPLACED_DISK  # the host's newest


def test_the_host_filter_narrows_the_hosts(world: World) -> None:
    only = world.make(scope=Scope(host="pacs-01"))
    assert [h["hostname"] for h in snapshot_json(only)["hosts"]] == ["pacs-01"]
    assert snapshot_json(only)["scans"] == []
    assert verify_snapshot(only).exit_code == 0


def test_bad_input_is_one_line(world: World) -> None:
    with pytest.raises(ComplianceError, match="is in the future"):
        world.make(scope=Scope(as_of="2027-01-01T00:00:00Z"))
    with pytest.raises(ComplianceError, match="no time zone"):
        world.make(scope=Scope(as_of="2026-11-01T00:00:00"))
    with pytest.raises(ComplianceError, match="docx"):
        world.make(formats=("json", "docx"))
    with pytest.raises(ValueError, match="no host matches --host nowhere"):
        world.make(scope=Scope(host="nowhere"))


def test_saving_keeps_a_read_only_zip_and_its_record(world: World, tmp_path: Path) -> None:
    settings = msgspec.structs.replace(
        world.settings,
        snapshots=msgspec.structs.replace(world.settings.snapshots, dir=str(tmp_path / "kept")),
    )
    data, record = create_snapshot(
        world.store, settings, scope=Scope(), now=NOW, created_by="auditor-li", formats=("json",)
    )
    path = save_snapshot(world.store, settings, data, record)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o440
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert (record.hosts, record.key_fingerprint) == (4, world.key.fingerprint)
    assert world.store.get_snapshot(record.id) == record
    assert verify_snapshot(path).exit_code == 0
    assert read_snapshot(settings, record) == data
    path.chmod(0o640)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SnapshotAltered, match="SHA-256 differs"):
        read_snapshot(settings, record)
    with pytest.raises(ComplianceError, match="never rewritten"):
        save_snapshot(world.store, settings, data, record)


# ----------------------------------------------------------------------------- altered


def test_one_byte_of_a_report_member_is_named(world: World) -> None:
    contents = members(world.snapshot)
    report = bytearray(contents["reports/mnds.json"])
    report[100] ^= 0x01
    contents["reports/mnds.json"] = bytes(report)
    verdict = verify_snapshot(rezip(contents))
    assert verdict.exit_code == 1
    assert [(f.kind, f.member) for f in verdict.findings] == [("altered", "reports/mnds.json")]
    assert "SHA-256" in reasons(verdict, "reports/mnds.json")
    assert "ALTERED  reports/mnds.json" in format_verdict(verdict)


def test_a_byte_flipped_in_the_zip_itself_is_named(world: World) -> None:
    with zipfile.ZipFile(io.BytesIO(world.snapshot)) as archive:
        info = archive.getinfo("reports/gbt22239-2019-l3.json")
    data = bytearray(world.snapshot)
    # Past the local header and its name, into the member's compressed data.
    data[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF
    verdict = verify_snapshot(bytes(data))
    assert verdict.exit_code == 1
    assert verdict.named("altered") == ["reports/gbt22239-2019-l3.json"]


def test_a_removed_member_is_missing_and_an_extra_one_added(world: World) -> None:
    contents = members(world.snapshot)
    del contents["reports/gbt22239-2019-l3.json"]
    contents["reports/mnds-fixed.json"] = b"{}"
    verdict = verify_snapshot(rezip(contents))
    assert verdict.exit_code == 1
    assert verdict.named("missing") == ["reports/gbt22239-2019-l3.json"]
    assert verdict.named("added") == ["reports/mnds-fixed.json"]
    assert verdict.named("altered") == []


@pytest.mark.parametrize("removed", ["signer.pem", "manifest.sig", "snapshot.json", "envelope"])
def test_each_removed_member_is_named_missing(world: World, removed: str) -> None:
    contents = members(world.snapshot)
    if removed == "envelope":
        removed = host_entry(world.snapshot, "pacs-01")["envelope"]
    del contents[removed]
    verdict = verify_snapshot(rezip(contents))
    assert verdict.exit_code == 1
    assert verdict.named("missing") == [removed]


def test_a_second_member_of_the_same_name_is_added(world: World) -> None:
    out = io.BytesIO(world.snapshot)
    with zipfile.ZipFile(out, "a") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("snapshot.json", b"{}")
    verdict = verify_snapshot(out.getvalue())
    assert verdict.exit_code == 1
    assert "snapshot.json" in verdict.named("added")


def test_a_result_changed_and_re_signed_with_another_key_is_caught_twice(
    world: World, tmp_path: Path
) -> None:
    contents = members(world.snapshot)
    snapshot = json.loads(contents["snapshot.json"])
    pacs = next(h for h in snapshot["hosts"] if h["hostname"] == "pacs-01")
    changed = next(r for r in pacs["results"] if r["check_id"] == "tpm.present")
    assert changed["status"] == "fail"
    changed["status"] = "pass"
    contents["snapshot.json"] = json.dumps(snapshot, ensure_ascii=False).encode()
    forger = SnapshotKey.load_or_create(tmp_path / "forger.key", "ed25519")
    forged = resign(contents, forger)

    expecting = verify_snapshot(forged, expect_key=world.key.fingerprint)
    assert expecting.exit_code == 1
    assert f"not the expected key {world.key.fingerprint}" in reasons(expecting, "signer.pem")
    # The manifest itself verifies (the forger signed it), the agent's signature does not lie.
    assert "manifest.sig" not in [f.member for f in expecting.findings]
    found = reasons(expecting, "snapshot.json")
    assert "host pacs-01" in found
    assert 'tpm.present: status "pass" where the signed report says "fail"' in found

    unexpecting = verify_snapshot(forged)
    assert unexpecting.exit_code == 1  # the envelope cross-check alone
    assert [f.member for f in unexpecting.findings] == ["snapshot.json"]
    assert unexpecting.fingerprint == forger.fingerprint
    assert TRUST_NOTE in format_verdict(unexpecting)


def test_hardware_changed_in_snapshot_json_is_named(world: World, tmp_path: Path) -> None:
    contents = members(world.snapshot)
    snapshot = json.loads(contents["snapshot.json"])
    lis = next(h for h in snapshot["hosts"] if h["hostname"] == "lis-app-01")
    lis["hardware"]["system"]["serial"] = "SN-SOMETHING-ELSE"
    contents["snapshot.json"] = json.dumps(snapshot, ensure_ascii=False).encode()
    forged = resign(contents, SnapshotKey.load_or_create(tmp_path / "f.key", "ed25519"))
    verdict = verify_snapshot(forged)
    assert verdict.exit_code == 1
    assert "host lis-app-01 (sha256:" in reasons(verdict, "snapshot.json")
    assert (
        'hardware: system.serial "SN-SOMETHING-ELSE" where the signed report says '
        '"SN-LIS-APP-01"' in reasons(verdict, "snapshot.json")
    )


def test_an_envelopes_report_bytes_altered_names_that_host(world: World, tmp_path: Path) -> None:
    contents = members(world.snapshot)
    db = host_entry(world.snapshot, "his-db-01")
    member = db["envelope"]
    envelope = json.loads(contents[member])
    report = base64.b64decode(envelope["report"]).replace(
        REPLACED_DISK.encode(), b"S5GXNF0R1000000"
    )
    envelope["report"] = base64.b64encode(report).decode()
    contents[member] = json.dumps(envelope).encode()

    plain = verify_snapshot(rezip(contents))
    assert plain.exit_code == 1
    assert [f.member for f in plain.findings] == [member]
    assert "manifest.json says" in reasons(plain, member)
    assert "host his-db-01" in reasons(plain, member)
    assert "signature does not verify" in reasons(plain, member)

    # Re-signing the manifest does not help: only the agent's key signs its report.
    forged = verify_snapshot(resign(contents, SnapshotKey.load_or_create(tmp_path / "k", "sm")))
    assert [f.member for f in forged.findings] == [member]
    assert forged.envelopes_verified == 2


def test_a_manifest_edited_without_the_key_fails_its_signature(world: World) -> None:
    contents = members(world.snapshot)
    contents["reports/mnds.json"] = b"{}\n"
    manifest = json.loads(contents["manifest.json"])
    for entry in manifest["files"]:
        if entry["name"] == "reports/mnds.json":
            entry["sha256"], entry["size"] = hashlib.sha256(b"{}\n").hexdigest(), 3
    contents["manifest.json"] = json.dumps(manifest).encode()
    verdict = verify_snapshot(rezip(contents))
    assert verdict.exit_code == 1
    assert verdict.named("altered") == ["manifest.sig"]
    assert "does not verify with signer.pem" in reasons(verdict, "manifest.sig")


# ----------------------------------------------------------------------------- unreadable


def test_a_truncated_zip_is_unreadable(world: World, tmp_path: Path) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(world.snapshot[: len(world.snapshot) // 2])
    verdict = verify_snapshot(cut)
    assert verdict.exit_code == 2
    assert not verdict.readable
    assert format_verdict(verdict).startswith("unreadable: not a zip file, or truncated")


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"%PDF-1.7 not a snapshot", "not a zip file"),
        (b"", "not a zip file"),
        (rezip({"snapshot.json": b"{}"}), "no manifest.json"),
    ],
)
def test_what_is_not_a_snapshot_is_unreadable(data: bytes, said: str) -> None:
    verdict = verify_snapshot(data)
    assert verdict.exit_code == 2
    assert verdict.problem is not None
    assert said in verdict.problem


def test_a_file_that_cannot_be_read_is_unreadable(tmp_path: Path) -> None:
    verdict = verify_snapshot(tmp_path / "absent.zip")
    assert verdict.exit_code == 2
    assert "cannot read" in format_verdict(verdict)


# ----------------------------------------------------------------------------- keys


def test_crypto_sm_signs_with_sm2_over_sm3(world: World) -> None:
    settings = settings_for(world.settings.database, world.folder, crypto="sm")
    data, record = create_snapshot(
        world.store, settings, scope=Scope(), now=NOW, created_by="auditor-li", formats=("json",)
    )
    manifest = json.loads(members(data)["manifest.json"])
    assert manifest["key"]["alg"] == "sm2-sm3"
    pem = members(data)["signer.pem"].decode()
    assert env.valid_public_key(pem, "sm2-sm3")
    assert record.key_fingerprint == fingerprint(pem) == manifest["key"]["fingerprint"]
    verdict = verify_snapshot(data, expect_key=record.key_fingerprint)
    assert verdict.exit_code == 0
    assert verdict.alg == "sm2-sm3"
    # The SM2 signature is checked, not only present.
    contents = members(data)
    signature = bytearray(base64.b64decode(contents["manifest.sig"]))
    signature[-3] ^= 0x01
    contents["manifest.sig"] = base64.b64encode(bytes(signature))
    assert verify_snapshot(rezip(contents)).named("altered") == ["manifest.sig"]


def test_the_key_is_made_0600_on_first_use_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "snapshot.key"
    made = SnapshotKey.load_or_create(path, "ed25519")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert made.fingerprint.startswith("SHA256:")
    assert len(made.fingerprint) == 7 + 64
    again = SnapshotKey.load_or_create(path, "ed25519")
    assert again.fingerprint == made.fingerprint
    assert "PRIVATE" not in repr(again)
    env.verify(b"data", again.sign(b"data"), made.public_pem, "ed25519")
    assert [p.name for p in path.parent.iterdir()] == ["snapshot.key"]  # no temporary left


def test_a_key_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.key"
    SnapshotKey.load_or_create(path, "ed25519")
    path.chmod(0o644)
    with pytest.raises(ComplianceError) as caught:
        SnapshotKey.load_or_create(path, "ed25519")
    message = str(caught.value)
    assert str(path) in message
    assert "0644" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("content", "crypto"),
    [
        (None, "sm"),  # an Ed25519 key where SM2 is configured
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "ed25519"),
        (b"", "ed25519"),
    ],
)
def test_a_key_of_the_wrong_kind_is_refused(
    tmp_path: Path, content: bytes | None, crypto: str
) -> None:
    path = tmp_path / "snapshot.key"
    if content is None:
        SnapshotKey.load_or_create(path, "ed25519")
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, content)
        os.close(fd)
    with pytest.raises(ComplianceError, match=r"not an? (SM2|Ed25519) private key") as caught:
        SnapshotKey.load_or_create(path, crypto)
    assert str(path) in str(caught.value)


def test_fingerprint_is_of_the_der_public_key() -> None:
    from cryptography.hazmat.primitives import serialization

    pem = env.public_key_pem(env.generate_private_key("ed25519"), "ed25519")
    der = serialization.load_pem_public_key(pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert fingerprint(pem) == "SHA256:" + hashlib.sha256(der).hexdigest()


# ----------------------------------------------------------------------------- the auditor's laptop


def test_the_verifier_needs_neither_database_nor_settings(world: World, tmp_path: Path) -> None:
    path = tmp_path / "snapshot.zip"
    path.write_bytes(world.snapshot)
    program = (
        "import sys\n"
        "from collector.compliance.snapshot_verify import verify_snapshot, format_verdict\n"
        f"verdict = verify_snapshot({str(path)!r})\n"
        "print(format_verdict(verdict))\n"
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('collector', 'sqlalchemy', 'psycopg', 'alembic', 'xlsxwriter', 'weasyprint'))\n"
        "print(ours)\n"
        "sys.exit(verdict.exit_code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(
        [
            "collector",
            "collector.compliance",
            "collector.compliance.snapshot_format",
            "collector.compliance.snapshot_verify",
        ]
    )


# ----------------------------------------------------------------------------- every format


@pytest.mark.skipif(
    not (RENDER / "pdf.py").exists() or not (RENDER / "xlsx.py").exists(),
    reason="the XLSX and PDF renderers are not there yet",
)
def test_xlsx_and_pdf_reports_are_members_and_one_pdf_byte_is_named(world: World) -> None:
    data = world.make(formats=("json", "xlsx", "pdf"))
    contents = members(data)
    for key in ("gbt22239-2019-l3", "mnds"):
        assert contents[f"reports/{key}.pdf"].startswith(b"%PDF-")
        assert contents[f"reports/{key}.xlsx"].startswith(b"PK")
    assert verify_snapshot(data).exit_code == 0
    pdf = bytearray(contents["reports/mnds.pdf"])
    pdf[len(pdf) // 2] ^= 0x01
    contents["reports/mnds.pdf"] = bytes(pdf)
    verdict = verify_snapshot(rezip(contents))
    assert verdict.exit_code == 1
    assert verdict.named("altered") == ["reports/mnds.pdf"]


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_store() -> Iterator[Store]:
    name = f"medsec_snap_{secrets.token_hex(4)}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"the PostgreSQL server at 127.0.0.1:5432 is not reachable: {exc}")
    store = Store.open(f"{PG_SERVER}/{name}")
    try:
        store.upgrade()
        yield store
    finally:
        store.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def comparable(data: bytes) -> list[dict[str, Any]]:
    """The hosts of a snapshot without what differs between stores (report ids are random)."""
    drop: Callable[[dict[str, Any]], dict[str, Any]] = lambda h: {  # noqa: E731
        k: v for k, v in h.items() if k not in ("report_id", "envelope", "signer_key_fingerprint")
    }
    return [drop(h) for h in snapshot_json(data)["hosts"]]


def test_postgresql_gives_the_same_snapshot(world: World, pg_store: Store, tmp_path: Path) -> None:
    fill(pg_store)
    settings = settings_for("postgresql+psycopg://unused", world.folder)
    data, _ = create_snapshot(
        pg_store, settings, scope=Scope(), now=NOW, created_by="auditor-li", formats=("json",)
    )
    verdict = verify_snapshot(data)
    assert verdict.exit_code == 0, format_verdict(verdict)
    assert verdict.envelopes_verified == 3
    assert comparable(data) == comparable(world.snapshot)
