"""Compliance reports at a province's scale: 10,000 hosts × 40 results stored, then the
aggregation, each format and a snapshot timed, beside the floor — the same rows read with one
plain SQL query.

Run: `.venv/bin/python benchmarks/report.py [--backends sqlite,postgresql] [--hosts 10000]
[--results 40] [--phases floor,aggregate,json,csv,html,xlsx,pdf,snapshot]`.

The store is filled once per backend through the collector's own ingest (signed reports from 100
agents, 100 hosts each, with realistic inventories: DMI, CPU, disks, NICs, TPM), then each phase
runs in a child process of its own, so its peak RSS is its own (`ru_maxrss` of the child). The
aggregation phase reads the evidence and aggregates GB/T 22239-2019 level 3; the format phases
add the renderer to it (the time printed is the renderer's alone, beside the aggregation's).
The snapshot phase makes a whole signed snapshot (both standards, XLSX and PDF, every host's
envelope). Targets on 2 cores (issue 13): aggregation + JSON ≤ 5 s, XLSX ≤ 20 s, PDF ≤ 60 s,
snapshot ≤ 60 s, peak RSS ≤ 1 GB, aggregation within 4× of the floor (the XLSX and PDF targets are
the renderer's time, beside the aggregation's). PostgreSQL is the server
on 127.0.0.1:5432 (a fresh database is created and dropped); SQLite a file in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from checks.envelope import generate_private_key, public_key_pem, sign  # noqa: E402
from checks.report import parse_report  # noqa: E402
from collector.models import IngestOutcome  # noqa: E402
from collector.settings import (  # noqa: E402
    CollectorSettings,
    SnapshotSettings,
    TlsSettings,
)
from collector.store import Store  # noqa: E402

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
PHASES = ("floor", "aggregate", "json", "csv", "html", "xlsx", "pdf", "snapshot")
TARGETS = {"aggregate": 5.0, "json": 5.0, "xlsx": 20.0, "pdf": 60.0, "snapshot": 60.0}
HOSTS_PER_AGENT = 100
NOW = datetime.now(UTC).replace(microsecond=0)
_CHECKS = (
    ("tpm.present", 1),
    ("tpm.pcr_bank", 1),
    ("tpm.ek_certificate", 1),
    ("tpm.lockout", 1),
    ("host.secure_boot", 1),
    ("disk.encrypted_mounts", 6),
    ("disk.cipher_strength", 6),
    ("disk.swap_encrypted", 1),
    ("disk.key_sealed_by_tpm", 4),
    ("backup.rpo", 4),
    ("backup.offsite", 2),
    ("wipe.capability", 4),
    ("log.retention", 4),
    ("host.firewall_default_deny", 1),
    ("crypto.sm_algorithms", 1),
)


# --------------------------------------------------------------------------- filling the store


def _inventory(n: int) -> dict[str, Any]:
    disks = [
        {
            "name": f"nvme{d}n1",
            "model": "SAMSUNG MZQL23T8HCLS",
            "serial": f"S6{n:07d}{d}",
            "size_bytes": 3_840_755_982_336,
            "rotational": False,
            "transport": "nvme",
        }
        for d in range(4)
    ]
    nics = [
        {
            "name": f"eno{i}",
            "mac": f"3c:ec:ef:{n >> 8 & 255:02x}:{n & 255:02x}:{i:02x}",
            "addresses": [f"198.18.{(n >> 8) % 200}.{n % 250 + 1}/24"] if i == 0 else [],
            "physical": True,
            "speed_mbps": 25000,
        }
        for i in range(2)
    ]
    return {
        "site": f"dc{n % 3 + 1}",
        "hardware": {
            "hostname": f"host-{n:05d}",
            "cpu": {"model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "cores": 64},
            "memory_bytes": 549_755_813_888,
            "disks": disks,
            "nics": nics,
            "dmi": {
                "sys_vendor": "Inspur",
                "product_name": "NF5280M6",
                "product_serial": f"21{n:08d}",
                "product_uuid": str(uuid.UUID(int=n)),
            },
        },
        "tpm": {
            "present": True,
            "manufacturer": "NTZ",
            "manufacturer_name": "Nationz",
            "firmware_version": "7.2.3.1",
            "ek_certificates": [{"sha256": f"{n:064x}", "key_type": "rsa"}],
        },
    }


def _report(n: int, results_per_host: int) -> bytes:
    results = []
    plan = [c for c, times in _CHECKS for _ in range(times)]
    for i in range(results_per_host):
        check_id = plan[i % len(plan)]
        failing = (n + i) % 23 == 0
        results.append(
            {
                "check_id": check_id,
                "status": "fail" if failing else "pass",
                "severity": "high",
                "title": {"en": check_id, "zh": check_id},
                "message": f"{check_id} on target {i}: observed value within the limit",
                "message_zh": f"{check_id} 目标 {i}：观测值在限值内",
                "target": f"/srv/data{i}",
                "evidence": {
                    "target": f"/srv/data{i}",
                    "cipher": "aes-xts-plain64",
                    "bits": 512,
                    "observed": [i, n],
                    "source": "cryptsetup luksDump",
                },
                "clauses": [],
            }
        )
    doc = {
        "schema": "medsec.report/v1",
        "report_id": str(uuid.uuid4()),
        "host": {"id": f"sha256:{n:064x}", "hostname": f"host-{n:05d}"},
        "generated_at": (NOW - timedelta(minutes=n % 30)).isoformat().replace("+00:00", "Z"),
        "agent": {"version": "0.1.0"},
        "inventory": _inventory(n),
        "results": results,
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def fill(url: str, hosts: int, results_per_host: int) -> float:
    """Store `hosts` signed reports through the collector's ingest; seconds taken."""
    store = Store.open(url)
    started = time.perf_counter()
    try:
        store.upgrade()
        key = generate_private_key("ed25519")
        public = public_key_pem(key, "ed25519")
        agents = []
        for a in range((hosts + HOSTS_PER_AGENT - 1) // HOSTS_PER_AGENT):
            name = f"agent-{a:04d}"
            token = store.create_enrollment(name, timedelta(hours=1), NOW)
            agents.append(store.redeem_enrollment(token, name, "ed25519", public, NOW)[0])
        pending: list[Future[IngestOutcome]] = []
        for n in range(hosts):
            body = _report(n, results_per_host)
            agent = agents[n // HOSTS_PER_AGENT]
            pending.append(
                store.submit_ingest(
                    agent, parse_report(body), body, NOW, signature=sign(body, key, "ed25519")
                )
            )
            if len(pending) >= 256:
                for future in pending:
                    future.result()
                pending.clear()
        for future in pending:
            future.result()
        # Ten agents enrolled that never reported: the report lists them as missing.
        for a in range(10):
            token = store.create_enrollment(f"silent-{a}", timedelta(hours=1), NOW)
            store.redeem_enrollment(token, f"silent-{a}", "ed25519", public, NOW)
    finally:
        store.close()
    return time.perf_counter() - started


# --------------------------------------------------------------------------- the phases


def _settings(url: str, folder: Path) -> CollectorSettings:
    return CollectorSettings(
        tls=TlsSettings(cert_file="unused", key_file="unused"),
        database=url,
        snapshots=SnapshotSettings(dir=str(folder / "snapshots"), key_file=str(folder / "key")),
    )


def _floor(url: str) -> tuple[float, int]:
    """One plain SQL query for the rows the aggregation reads, fetched through the driver."""
    sql = (
        "SELECT r.report_pk, r.check_id, r.status, r.target, r.message, r.message_zh, "
        "CAST(r.evidence AS TEXT) FROM results r JOIN hosts h ON r.report_pk = h.last_report_pk"
    )
    started = time.perf_counter()
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute(sql).fetchall()
    else:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            rows = conn.execute(sql).fetchall()
    return time.perf_counter() - started, len(rows)


class _WorkerPeaks:
    """The largest resident set of any process this one starts (the snapshot's renderers),
    sampled every 50 ms: their `ru_maxrss` would count the parent's pages they shared between
    fork and exec."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.05):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.peak_mb = max(self.peak_mb, child.memory_info().rss / 2**20)

    def __enter__(self) -> _WorkerPeaks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run_phase(phase: str, url: str, folder: Path) -> dict[str, Any]:
    """One phase in this process: its figures (seconds) as a JSON-able dict."""
    if phase == "floor":
        seconds, rows = _floor(url)
        return {"seconds": seconds, "rows": rows}
    from collector.compliance.model import Scope
    from collector.compliance.render import render
    from collector.compliance.service import build

    settings = _settings(url, folder)
    store = Store.open(url)
    try:
        if phase == "snapshot":
            from collector.compliance.snapshot_cli import store_snapshot

            with _WorkerPeaks() as workers:
                started = time.perf_counter()
                record = store_snapshot(store, settings, Scope(), "benchmark", datetime.now(UTC))
                seconds = time.perf_counter() - started
            return {"seconds": seconds, "bytes": record.size, "workers_mb": workers.peak_mb}
        started = time.perf_counter()
        document = build(store, settings, ["gbt22239-2019-l3"], Scope(), datetime.now(UTC))
        aggregated = time.perf_counter() - started
        compliance = document["gbt22239-2019-l3"]
        figures: dict[str, Any] = {"aggregate": aggregated, "hosts": compliance.summary.hosts}
        if phase == "json":  # as `medsec report --format json --out FILE` writes it
            from collector.compliance.render.json import write_json

            started = time.perf_counter()
            with (folder / "report.json").open("wb") as out:
                write_json(compliance, out)
            figures["seconds"] = time.perf_counter() - started
            figures["bytes"] = (folder / "report.json").stat().st_size
        elif phase != "aggregate":
            started = time.perf_counter()
            data = render(compliance, phase, "zh")
            figures["seconds"] = time.perf_counter() - started
            figures["bytes"] = len(data)
        else:
            figures["seconds"] = aggregated
        return figures
    finally:
        store.close()


def child(phase: str, url: str, folder: Path) -> dict[str, Any]:
    """Run a phase in a new process; its figures and peak RSS (MB)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", phase, "--url", url, "--folder", str(folder)],
        capture_output=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        return {"failed": done.stderr.decode(errors="replace").strip().splitlines()[-1:]}
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


def _line(phase: str, figures: dict[str, Any], floor: float | None) -> str:
    if "failed" in figures:
        return f"  {phase:<10} failed: {figures['failed']}"
    seconds = figures["seconds"]
    target = TARGETS.get(phase)
    parts = [f"  {phase:<10} {seconds:8.2f} s", f"peak {figures['rss_mb']:6.0f} MB"]
    if phase not in ("floor", "aggregate", "snapshot"):
        parts.append(f"(after aggregation {figures['aggregate']:.2f} s)")
        if phase == "json":
            total = seconds + figures["aggregate"]
            parts.append(f"aggregation + json {total:.2f} s")
    if phase == "aggregate" and floor:
        parts.append(f"{seconds / floor:.1f}× the floor")
    if "workers_mb" in figures:
        parts.append(f"renderer processes peak {figures['workers_mb']:.0f} MB each")
    if "bytes" in figures:
        parts.append(f"{figures['bytes'] / 1e6:.1f} MB out")
    if target is not None:
        # JSON's target counts the aggregation with it; XLSX's and PDF's are the renderer's.
        measured = seconds + figures["aggregate"] if phase == "json" else seconds
        parts.append(f"target ≤ {target:.0f} s: {'met' if measured <= target else 'MISSED'}")
    return "  ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--results", type=int, default=40)
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = run_phase(args.child, args.url, args.folder)
        figures["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return 0
    phases = [p for p in args.phases.split(",") if p]
    print(
        f"compliance reports: {args.hosts} hosts × {args.results} results, "
        f"{os.cpu_count()} cores, phases each in a process of its own"
    )
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix="medsec-report-bench-") as tmp:
            folder = Path(tmp)
            dbname = None
            if backend == "sqlite":
                url = f"sqlite:///{folder / 'collector.db'}"
            else:
                dbname = f"medsec_bench_{secrets.token_hex(4)}"
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'CREATE DATABASE "{dbname}"')
                url = f"{PG_SERVER}/{dbname}"
            try:
                filled = fill(url, args.hosts, args.results)
                print(f"\n{backend}: stored in {filled:.0f} s")
                floor = None
                for phase in phases:
                    figures = child(phase, url, folder)
                    if phase == "floor" and "seconds" in figures:
                        floor = figures["seconds"]
                        print(
                            f"  {'floor':<10} {floor:8.2f} s  peak {figures['rss_mb']:6.0f} MB"
                            f"  ({figures['rows']} rows, one SELECT through the driver)"
                        )
                        continue
                    print(_line(phase, figures, floor), flush=True)
            finally:
                if dbname is not None:
                    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
