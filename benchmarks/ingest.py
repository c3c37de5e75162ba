"""Ingest throughput of the real collector, beside direct database writes (the ceiling).

Run: `.venv/bin/python benchmarks/ingest.py [--backends sqlite,postgresql] [--agents 1,10,50]
[--seconds 8]`. For each backend it starts `medsec serve` (uvicorn, TLS) on a free loopback port,
enrols agents through the store, and has N concurrent agents post realistic signed ~30 KB
reports (a real agent report from this machine, its results doubled to ~40) for a fixed time.
It prints reports/s and p50/p99 latency, and, in the same run, the same payloads written straight
to the database (psycopg for PostgreSQL, sqlite3 for SQLite) as the ceiling.

Target (issue 4): ≥ 500 reports/s on PostgreSQL, p99 ≤ 100 ms at 10 concurrent agents, within 3×
of the direct-write ceiling. PostgreSQL is the server on 127.0.0.1:5432 (a fresh database is
created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import os
import secrets
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from checks.envelope import generate_private_key, public_key_pem, seal  # noqa: E402
from collector.store import Store  # noqa: E402

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Agent:
    name: str
    token: str
    key: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_report() -> dict[str, object]:
    """A real report of this machine, results doubled to ~40 (~30 KB), as agents send them."""
    cfg = ROOT / "examples" / "agent.yaml"
    out = subprocess.run(
        [str(BIN / "medsec-agent"), "run", "--config", str(cfg), "--format", "json", "--no-push"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report: dict[str, object] = json.loads(out.stdout)
    results = report["results"]
    assert isinstance(results, list)
    report["results"] = results + copy.deepcopy(results)
    return report


def payload(template: dict[str, object], agent: Agent, host_no: int) -> bytes:
    report = dict(template)
    report["report_id"] = str(uuid.uuid4())
    report["host"] = {"id": "sha256:" + secrets.token_hex(32), "hostname": f"bench-{host_no}"}
    report["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    body = json.dumps(report, ensure_ascii=False).encode()
    return seal(body, agent.name, agent.key, "ed25519")


def enrol(store: Store, count: int) -> list[Agent]:
    agents = []
    now = datetime.now(UTC)
    for i in range(count):
        key = generate_private_key("ed25519")
        token = store.create_enrollment(f"bench-agent-{i}", timedelta(minutes=5), now)
        agent, api = store.redeem_enrollment(
            token, f"bench-agent-{i}", "ed25519", public_key_pem(key, "ed25519"), now
        )
        agents.append(Agent(agent.name, api, key))
    return agents


async def drive(
    url: str, ca: str, agents: list[Agent], template: dict[str, object], seconds: float
) -> tuple[int, list[float], float]:
    """Each agent posts reports back to back for `seconds`; returns count, latencies, wall."""
    ctx = ssl.create_default_context(cafile=ca)
    latencies: list[float] = []
    # Sign ahead of time: the agents' CPU is not the collector's, so it must not be timed here.
    prepared = {a.name: [payload(template, a, i) for i in range(400)] for a in agents}
    deadline = time.perf_counter() + seconds

    async def one(agent: Agent) -> None:
        async with httpx.AsyncClient(verify=ctx, timeout=30) as client:
            headers = {"Authorization": f"Bearer {agent.token}", "Content-Type": "application/json"}
            for body in prepared[agent.name]:
                if time.perf_counter() > deadline:
                    return
                t = time.perf_counter()
                r = await client.post(f"{url}/api/v1/reports", content=body, headers=headers)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 201:
                    raise RuntimeError(f"collector answered {r.status_code}: {r.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(one(a) for a in agents))
    return len(latencies), latencies, time.perf_counter() - start


def direct_ceiling(backend: str, url: str, template: dict[str, object], seconds: float) -> float:
    """The same reports written straight to the database, one transaction each: the report row
    (its JSON) and its result rows — what the collector writes, without HTTP, TLS, auth,
    signature checks, validation or the audit log."""
    agent = Agent("ceiling", "-", generate_private_key("ed25519"))
    reports = []
    for i in range(2000):
        envelope = json.loads(payload(template, agent, i))
        body = base64.b64decode(envelope["report"])
        reports.append((json.loads(body), body.decode()))
    create = (
        "CREATE TABLE ceiling_reports (id TEXT PRIMARY KEY, body TEXT)",
        "CREATE TABLE ceiling_results (report_id TEXT, check_id TEXT, status TEXT,"
        " target TEXT, message TEXT, evidence TEXT)",
    )
    conn: Any
    if backend == "postgresql":
        conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
    else:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
    mark = "%s" if backend == "postgresql" else "?"
    n = 0
    try:
        cur = conn.cursor()
        for stmt in create:
            cur.execute(stmt)
        conn.commit()
        start = time.perf_counter()
        for report, body in reports:
            cur.execute(
                f"INSERT INTO ceiling_reports VALUES ({mark}, {mark})", (report["report_id"], body)
            )
            cur.executemany(
                f"INSERT INTO ceiling_results VALUES ({', '.join([mark] * 6)})",
                [
                    (
                        report["report_id"],
                        r["check_id"],
                        r["status"],
                        r["target"],
                        r["message"],
                        json.dumps(r["evidence"]),
                    )
                    for r in report["results"]
                ],
            )
            conn.commit()
            n += 1
            if time.perf_counter() - start > seconds:
                break
        return n / (time.perf_counter() - start)
    finally:
        conn.close()


def serve(workdir: Path, database: str) -> tuple[subprocess.Popen[bytes], str, str]:
    subprocess.run(
        [str(BIN / "medsec"), "init", "--dir", str(workdir)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cfg = workdir / "collector.yaml"
    text = cfg.read_text()
    text = "\n".join(
        f"database: {json.dumps(database)}" if line.startswith("database:") else line
        for line in text.splitlines()
    )
    cfg.write_text(text + "\n")
    subprocess.run(
        [str(BIN / "medsec"), "db", "upgrade", "--config", str(cfg)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "medsec"), "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    ca = str(workdir / "tls" / "cert.pem")
    for _ in range(100):
        try:
            if httpx.get(f"{url}/healthz", verify=ca, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url, ca


def run_backend(
    backend: str, agent_counts: list[int], seconds: float, template: dict[str, object]
) -> list[tuple[str, ...]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="medsec-ingest-") as tmp:
        work = Path(tmp)
        dbname = f"medsec_bench_{secrets.token_hex(4)}"
        if backend == "postgresql":
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{dbname}"')
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
        else:
            url = f"sqlite:///{work / 'bench.db'}"
        try:
            proc, base, ca = serve(work / "collector", url)
            try:
                store = Store.open(url)
                agents = enrol(store, max(agent_counts))
                store.close()
                for n in agent_counts:
                    count, lat, wall = asyncio.run(drive(base, ca, agents[:n], template, seconds))
                    lat.sort()
                    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                    rows.append(
                        (
                            backend,
                            f"{n} agents",
                            f"{count / wall:8.1f}",
                            f"{statistics.median(lat) * 1000:7.1f}",
                            f"{p99 * 1000:7.1f}",
                        )
                    )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
            ceiling_url = url if backend == "postgresql" else f"sqlite:///{work / 'ceiling.db'}"
            rows.append(
                (
                    backend,
                    "direct writes",
                    f"{direct_ceiling(backend, ceiling_url, template, seconds):8.1f}",
                    "-",
                    "-",
                )
            )
        finally:
            if backend == "postgresql":
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--agents", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    template = sample_report()
    size = len(json.dumps(template).encode())
    counts = [int(x) for x in args.agents.split(",")]
    print(f"report: {size / 1024:.1f} KB, {len(template['results'])} results")  # type: ignore[arg-type]
    print(f"{'backend':11} {'load':14} {'reports/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for backend in args.backends.split(","):
        for row in run_backend(backend, counts, args.seconds, template):
            print(f"{row[0]:11} {row[1]:14} {row[2]:>9} {row[3]:>7} {row[4]:>7}")
    print("target: PostgreSQL >= 500 reports/s, p99 <= 100 ms at 10 agents, within 3x of direct")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
