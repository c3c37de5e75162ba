"""Ingest throughput of the real collector, beside direct database writes (the ceiling).

Run: `.venv/bin/python benchmarks/ingest.py [--backends sqlite,postgresql] [--agents 1,10,50]
[--seconds 8]`. For each backend it starts `medsec serve` (uvicorn, TLS) on a free loopback port,
enrols agents through the store, and has N concurrent agents post realistic signed ~30 KB
reports (a real agent report from this machine, its results doubled to ~40) for a fixed time.
Each agent stands for 20 hosts that report again and again (1000 hosts at 50 agents), so, as in
a province's steady state, a report mostly updates a host the collector knows already.
It prints reports/s and p50/p99 latency, and, in the same run, the same payloads written straight
to the database (psycopg for PostgreSQL, sqlite3 for SQLite) as the ceiling, twice: one commit
per report, serially, and committing every 32 reports — the collector groups concurrent reports
into one transaction (one fsync per batch), so the database's best case is the fair ceiling.

The agents are a minimal asyncio HTTP/1.1 keep-alive client (one TLS connection per agent,
requests built and signed before the clock starts), not httpx: real agents run on other machines,
but here the load generator shares the machine's 2 cores with the collector and PostgreSQL, and
httpx spent about as much CPU per request (~4-5 ms) as the collector, so the benchmark mostly
measured httpx. The load generator must take as little of the shared cores as possible; each run
prints the CPU it used per report (process time / reports) so that can be checked.

Target (issue 4): ≥ 500 reports/s on PostgreSQL, p99 ≤ 100 ms at 10 concurrent agents, within 3×
of the direct-write ceiling (the better of the two). PostgreSQL is the server on 127.0.0.1:5432
(a fresh database is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import math
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
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from checks.envelope import generate_private_key, public_key_pem, seal  # noqa: E402
from collector.store import Store  # noqa: E402

BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REPORTS_PATH = "/api/v1/reports"
BATCH = 32  # reports per transaction in the grouped direct-write ceiling
HOSTS_PER_AGENT = 20  # 50 agents: 1000 hosts


@dataclass
class Row:
    backend: str
    load: str
    rate: float
    p50: float | None = None  # seconds
    p99: float | None = None  # seconds
    client_cpu: float | None = None  # load generator's CPU seconds per report
    agents: int | None = None  # None: a direct-write row


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


def payload(template: dict[str, object], agent: Agent, n: int) -> bytes:
    """The agent's `n`-th report. Each agent stands for HOSTS_PER_AGENT hosts that report again
    and again, as a province's hosts do: after the first round every report updates its host."""
    host = f"{agent.name}-host-{n % HOSTS_PER_AGENT}"
    report = dict(template)
    report["report_id"] = str(uuid.uuid4())
    report["host"] = {"id": "sha256:" + hashlib.sha256(host.encode()).hexdigest(), "hostname": host}
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


def request_bytes(host: str, token: str, body: bytes) -> bytes:
    """The whole HTTP/1.1 request an agent sends for one report, built before the clock starts."""
    head = (
        f"POST {REPORTS_PATH} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    """Send one request on a kept-alive connection and read its whole answer: the status line and
    headers up to the blank line, then exactly Content-Length bytes (the collector always sends
    it). Anything but a 201 that keeps the connection open is an error."""
    writer.write(request)
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length: int | None = None
    close = False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = "close" in value.lower()
    if length is None:
        raise RuntimeError(f"collector answered {status} without Content-Length: {head[1:]}")
    body = await reader.readexactly(length)
    if status != 201 or close:
        why = " (Connection: close)" if close else ""
        raise RuntimeError(
            f"collector answered {status}{why}: {body[:200].decode('utf-8', 'replace')}"
        )


async def drive(
    url: str, ca: str, agents: list[Agent], template: dict[str, object], seconds: float
) -> tuple[int, list[float], float, float]:
    """Each agent posts reports back to back for `seconds` on its own kept-alive TLS connection;
    returns count, latencies, wall and the load generator's own CPU seconds over that time.

    Not httpx: the load generator shares the 2 cores with the collector and the database (real
    agents run on other machines), so it must take as little CPU as possible. Signing, the request
    bytes and the TLS handshakes all happen before the clock starts."""
    ctx = ssl.create_default_context(cafile=ca)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    latencies: list[float] = []
    # Sign ahead of time: the agents' CPU is not the collector's, so it must not be timed here.
    # Enough that even a lone agent cannot run out (~300 reports/s in all, at least 400 each).
    per_agent = max(400, math.ceil(seconds * 300 / len(agents)))
    prepared = {
        a.name: [
            request_bytes(parts.netloc, a.token, payload(template, a, i)) for i in range(per_agent)
        ]
        for a in agents
    }
    conns = await asyncio.gather(
        *(asyncio.open_connection(host, port, ssl=ctx, server_hostname=host) for _ in agents)
    )
    ran_out: list[str] = []

    async def one(agent: Agent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(seconds + 30):
                for request in prepared[agent.name]:
                    if time.perf_counter() > deadline:
                        return
                    t = time.perf_counter()
                    await exchange(reader, writer, request)
                    latencies.append(time.perf_counter() - t)
                ran_out.append(agent.name)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(one(a, r, w) for a, (r, w) in zip(agents, conns, strict=True)))
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if ran_out:
        print(
            f"warning: {len(ran_out)} agent(s) ran out of prepared reports early", file=sys.stderr
        )
    return len(latencies), latencies, wall, cpu


def direct_ceiling(
    backend: str, url: str, template: dict[str, object], seconds: float
) -> dict[int, float]:
    """The same reports written straight to the database: the report row (its JSON) and its result
    rows — what the collector writes, without HTTP, TLS, auth, signature checks, validation or the
    audit log. Written serially on one connection, once committing each report (one fsync per
    report) and once committing every BATCH reports (the collector's group commit at its best);
    returns reports/s by reports per transaction."""
    agent = Agent("ceiling", "-", generate_private_key("ed25519"))
    reports = []
    for i in range(2000):
        envelope = json.loads(payload(template, agent, i))
        raw = base64.b64decode(envelope["report"])
        reports.append((json.loads(raw), raw.decode()))
    create = (
        "DROP TABLE IF EXISTS ceiling_reports",
        "DROP TABLE IF EXISTS ceiling_results",
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
    rates: dict[int, float] = {}
    try:
        cur = conn.cursor()
        for per_tx in (1, BATCH):
            for stmt in create:
                cur.execute(stmt)
            conn.commit()
            n = 0
            start = time.perf_counter()
            for report, body in reports:
                cur.execute(
                    f"INSERT INTO ceiling_reports VALUES ({mark}, {mark})",
                    (report["report_id"], body),
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
                n += 1
                if n % per_tx == 0:
                    conn.commit()
                    if time.perf_counter() - start > seconds:
                        break
            else:
                conn.commit()  # the last, partial batch
            rates[per_tx] = n / (time.perf_counter() - start)
        return rates
    finally:
        conn.close()


def serve(workdir: Path, database: str, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
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
        [
            *(str(BIN / "medsec"), "serve", "--config", str(cfg)),
            *("--listen", f"127.0.0.1:{port}", "--workers", str(workers)),
        ],
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
    backend: str,
    agent_counts: list[int],
    seconds: float,
    template: dict[str, object],
    workers: int,
) -> list[Row]:
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
            proc, base, ca = serve(work / "collector", url, workers)
            try:
                store = Store.open(url)
                agents = enrol(store, max(agent_counts))
                store.close()
                for n in agent_counts:
                    count, lat, wall, cpu = asyncio.run(
                        drive(base, ca, agents[:n], template, seconds)
                    )
                    lat.sort()
                    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
                    rows.append(
                        Row(
                            backend,
                            f"{n} agents, {workers}w",
                            count / wall,
                            statistics.median(lat),
                            p99,
                            cpu / count,
                            n,
                        )
                    )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
            ceiling_url = url if backend == "postgresql" else f"sqlite:///{work / 'ceiling.db'}"
            for per_tx, rate in direct_ceiling(backend, ceiling_url, template, seconds).items():
                rows.append(Row(backend, f"direct, {per_tx}/tx", rate))
        finally:
            if backend == "postgresql":
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return rows


def ms(seconds: float | None, digits: int = 1) -> str:
    return f"{seconds * 1000:.{digits}f}" if seconds is not None else "-"


def verdict(backend: str, rows: list[Row]) -> str:
    """The collector at 10 agents (or the most agents run) against the best direct-write rate."""
    ceiling = max(r.rate for r in rows if r.agents is None)
    runs = {r.agents: r for r in rows if r.agents is not None}
    n = 10 if 10 in runs else max(runs)
    ratio = runs[n].rate / ceiling
    within = "yes" if ratio >= 1 / 3 else "no"
    return (
        f"{backend}: {n} agents at {ratio:.2f}x of the best direct-write rate (within 3x: {within})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--agents", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--workers",
        type=int,
        help="collector worker processes (default: 1 on SQLite, as a hospital runs it; one per"
        " core on PostgreSQL, as a province runs it)",
    )
    args = parser.parse_args()
    template = sample_report()
    size = len(json.dumps(template).encode())
    counts = [int(x) for x in args.agents.split(",")]
    results = len(template["results"])  # type: ignore[arg-type]
    print(f"report: {size / 1024:.1f} KB, {results} results")
    print(
        f"{'backend':11} {'load':14} {'reports/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'client CPU ms/report':>20}"
    )
    verdicts = []
    for backend in args.backends.split(","):
        workers = args.workers or (1 if backend == "sqlite" else os.cpu_count() or 1)
        rows = run_backend(backend, counts, args.seconds, template, workers)
        for row in rows:
            print(
                f"{row.backend:11} {row.load:14} {row.rate:9.1f} {ms(row.p50):>7}"
                f" {ms(row.p99):>7} {ms(row.client_cpu, 2):>20}"
            )
        verdicts.append(verdict(backend, rows))
    print(
        "client CPU: the load generator's own CPU per report (it shares the cores with the server)"
    )
    print(
        "target: PostgreSQL >= 500 reports/s, p99 <= 100 ms at 10 agents,"
        " within 3x of the best direct write"
    )
    for line in verdicts:
        print(line)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
