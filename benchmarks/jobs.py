"""Probe job throughput: queued jobs claimed and completed through two collectors on one
PostgreSQL, beside the same claims made straight against the database (the ceiling).

Run: `.venv/bin/python benchmarks/jobs.py [--jobs 1000] [--workers 10] [--max 8]`. It creates a
fresh database on the PostgreSQL server at 127.0.0.1:5432 (dropped at the end), starts two
`medsec serve` processes (one uvicorn worker each, TLS, two loopback ports) on it, enrols one
probe per worker in the zone `bench`, queues `--jobs` `noop` jobs and starts `--workers` probe
processes at the same instant, half of them on each collector. Each loops as a probe does: claim
(`POST /api/v1/probe/claim`, up to `--max` jobs) → for each job, a signed
`medsec.job-result/v1` envelope posted to `/api/v1/probe/jobs/{id}/result` — until a claim
answers none. httpx over HTTPS, one kept-alive connection per worker.

Then the same jobs count, queued again, is claimed and finished by as many processes calling
`Store.claim_jobs` / `Store.finish_job` straight on the database: no HTTP, TLS, authentication,
signature or audit entry — the ceiling.

It prints, for both, jobs/s (first claim to last result), claim latency p50/p99 (claims that
handed out jobs), result latency, the workers' own CPU per job, and jobs run twice, counted two
ways: job ids the workers ran more than once (their own records) and jobs the database says were
claimed more than once (`attempts > 1`); both must be 0, and every job must end `done`.

Target (issue 18): ≥ 200 jobs/s through the collectors on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402

from checks.envelope import generate_private_key, public_key_pem, seal  # noqa: E402
from collector.store import Store  # noqa: E402
from collector.store.jobs import JobSpec  # noqa: E402

BIN = Path(sys.executable).parent
MEDSEC = [str(BIN / "medsec")]
"""How the collectors are started (an experiment may wrap it)."""
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ZONE = "bench"
LEASE = timedelta(seconds=60)
START_DELAY = 3.0
"""Seconds for every worker process to start and connect before the common start instant."""


@dataclass
class Probe:
    name: str
    token: str
    key: str


@dataclass
class Record:
    """What one worker did: every job it ran, its claims' and results' latencies, when it ended,
    and its own CPU time."""

    ran: list[str] = field(default_factory=list)
    claims: list[float] = field(default_factory=list)
    results: list[float] = field(default_factory=list)
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    ended: float = 0.0
    cpu: float = 0.0


@dataclass
class Figures:
    label: str
    jobs: int
    wall: float
    claims: list[float]
    results: list[float]
    cpu: float
    twice_by_workers: int
    twice_by_attempts: int
    not_done: int
    errors: list[str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- the workers


def api_worker(url: str, ca: str, probe: Probe, start: float, most: int) -> Record:
    """One probe: claim → post each result, until a claim answers none."""
    record = Record()
    with httpx.Client(
        base_url=url,
        verify=ca,
        timeout=30,
        headers={"Authorization": f"Bearer {probe.token}"},
    ) as client:
        client.get("/healthz")  # the TLS connection is up before the clock starts
        time.sleep(max(0.0, start - time.time()))
        cpu = time.process_time()
        while True:
            t = time.perf_counter()
            answer = client.post("/api/v1/probe/claim", json={"max": most, "wait_seconds": 0})
            if answer.status_code != 200:
                record.errors.append(f"claim: {answer.status_code} {answer.text[:200]}")
                break
            jobs = answer.json()["jobs"]
            if not jobs:
                break
            record.claims.append(time.perf_counter() - t)
            for job in jobs:
                record.ran.append(job["id"])  # the noop job "runs" here
                payload = json.dumps(
                    {
                        "schema": "medsec.job-result/v1",
                        "job_id": job["id"],
                        "claim_id": job["claim_id"],
                        "status": "done",
                        "result": {"noop": True},
                        "error": None,
                    }
                ).encode()
                envelope = seal(payload, probe.name, probe.key, "ed25519")
                t = time.perf_counter()
                posted = client.post(f"/api/v1/probe/jobs/{job['id']}/result", content=envelope)
                record.results.append(time.perf_counter() - t)
                if posted.status_code != 200:
                    record.errors.append(f"result: {posted.status_code} {posted.text[:200]}")
                elif posted.json()["duplicate"]:
                    record.duplicates += 1
            record.ended = time.time()
        record.cpu = time.process_time() - cpu
    return record


def db_worker(database: str, name: str, start: float, most: int) -> Record:
    """The same loop straight on the database: `claim_jobs` → `finish_job` per job."""
    record = Record()
    store = Store.open(database)
    try:
        store.has_claimable(ZONE, datetime.now(UTC))  # connected before the clock starts
        time.sleep(max(0.0, start - time.time()))
        cpu = time.process_time()
        while True:
            t = time.perf_counter()
            jobs = store.claim_jobs(ZONE, name, datetime.now(UTC), LEASE, most)
            if not jobs:
                break
            record.claims.append(time.perf_counter() - t)
            for job in jobs:
                record.ran.append(job.id)
                t = time.perf_counter()
                stored = store.finish_job(
                    job.id,
                    str(job.claim_id),
                    name,
                    datetime.now(UTC),
                    result={"noop": True},
                    error=None,
                )
                record.results.append(time.perf_counter() - t)
                record.duplicates += not stored
            record.ended = time.time()
        record.cpu = time.process_time() - cpu
    finally:
        store.close()
    return record


# --------------------------------------------------------------------------- the collectors


def configure(workdir: Path, database: str) -> Path:
    """`medsec init` a collector folder (TLS certificate, settings) on `database`, migrated."""
    subprocess.run(
        [str(BIN / "medsec"), "init", "--dir", str(workdir)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cfg = workdir / "collector.yaml"
    text = "\n".join(
        f"database: {json.dumps(database)}" if line.startswith("database:") else line
        for line in cfg.read_text().splitlines()
    )
    cfg.write_text(text + "\n")
    subprocess.run(
        [str(BIN / "medsec"), "db", "upgrade", "--config", str(cfg)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return cfg


def serve(cfg: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *MEDSEC,
                *("serve", "--config", str(cfg)),
                *("--listen", f"127.0.0.1:{port}", "--workers", "1"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"https://127.0.0.1:{port}"
    ca = str(cfg.parent / "tls" / "cert.pem")
    for _ in range(150):
        try:
            if httpx.get(f"{url}/healthz", verify=ca, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the collector on {url} did not start: {log.read_text()[-2000:]}")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        process = psutil.Process(pid)
        for p in (process, *process.children(recursive=True)):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def backends_cpu(dbname: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving `dbname` (its open connections)."""
    found: dict[int, float] = {}
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if process.info["name"] == "postgres" and f" {dbname} " in cmdline:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            found[process.pid] = times.user + times.system
    return found


def enrol_probes(store: Store, count: int) -> list[Probe]:
    now = datetime.now(UTC)
    probes = []
    for i in range(count):
        name = f"bench-probe-{i}"
        key = generate_private_key("ed25519")
        token = store.create_enrollment(name, timedelta(minutes=5), now, probe_zone=ZONE)
        _, api = store.redeem_enrollment(
            token, name, "ed25519", public_key_pem(key, "ed25519"), now
        )
        probes.append(Probe(name, api, key))
    return probes


def queue(store: Store, count: int) -> list[str]:
    now = datetime.now(UTC)
    deadline = now + timedelta(hours=1)
    return store.enqueue_jobs(
        [JobSpec(ZONE, "noop", {"n": n}, deadline) for n in range(count)], now
    )


def figures(
    label: str, store: Store, ids: list[str], records: list[Record], start: float
) -> Figures:
    ran = Counter(job_id for record in records for job_id in record.ran)
    jobs = store.get_jobs(ids)
    return Figures(
        label=label,
        jobs=len(ids),
        wall=max(record.ended for record in records) - start,
        claims=sorted(latency for record in records for latency in record.claims),
        results=sorted(latency for record in records for latency in record.results),
        cpu=sum(record.cpu for record in records),
        twice_by_workers=sum(1 for n in ran.values() if n > 1),
        twice_by_attempts=sum(1 for job in jobs if job.attempts > 1),
        not_done=sum(1 for job in jobs if job.state != "done") + len(set(ids) - set(ran)),
        errors=[error for record in records for error in record.errors],
    )


def sessions(dbname: str) -> int:
    """Connections PostgreSQL has opened to the database so far (each one a new backend
    process: a pool that keeps too few connections opens one per request beyond them)."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        row = admin.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (dbname,)
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass
class Costs:
    """What the run through the collectors cost besides the workers' own CPU."""

    collectors: float = 0.0
    """CPU seconds of both collector processes."""
    database: float = 0.0
    """CPU seconds of the database's backends (those still open at the end: the pools')."""
    connections: int = 0
    """Connections PostgreSQL opened meanwhile."""


def through_collectors(
    database: str, dbname: str, work: Path, *, jobs: int, workers: int, most: int
) -> tuple[Figures, Costs]:
    spawn = multiprocessing.get_context("spawn")
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    costs = Costs()
    store = Store.open(database)
    try:
        cfg = configure(work / "collector", database)
        for n in range(2):
            proc, url = serve(cfg, work / f"collector-{n}.log")
            procs.append(proc)
            urls.append(url)
        ca = str(cfg.parent / "tls" / "cert.pem")
        probes = enrol_probes(store, workers)
        ids = queue(store, jobs)
        with spawn.Pool(workers) as pool:
            start = time.time() + START_DELAY
            collectors = cpu_seconds([p.pid for p in procs])
            opened = sessions(dbname)
            backends = backends_cpu(dbname)
            records = pool.starmap(
                api_worker,
                [(urls[i % 2], ca, probe, start, most) for i, probe in enumerate(probes)],
            )
            costs.collectors = cpu_seconds([p.pid for p in procs]) - collectors
            costs.connections = sessions(dbname) - opened
            costs.database = sum(
                cpu - backends.get(pid, 0.0) for pid, cpu in backends_cpu(dbname).items()
            )
        return figures("2 collectors", store, ids, records, start), costs
    finally:
        store.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def straight(database: str, jobs: int, workers: int, most: int) -> Figures:
    spawn = multiprocessing.get_context("spawn")
    store = Store.open(database)
    try:
        ids = queue(store, jobs)
        with spawn.Pool(workers) as pool:
            start = time.time() + START_DELAY
            records = pool.starmap(
                db_worker, [(database, f"direct-{i}", start, most) for i in range(workers)]
            )
        return figures("direct to DB", store, ids, records, start)
    finally:
        store.close()


def run(jobs: int, workers: int, most: int) -> tuple[Figures, Figures, Costs]:
    """Both runs on a database of their own, dropped at the end."""
    dbname = f"medsec_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    database = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
    try:
        with tempfile.TemporaryDirectory(prefix="medsec-jobs-") as tmp:
            api, costs = through_collectors(
                database, dbname, Path(tmp), jobs=jobs, workers=workers, most=most
            )
        return api, straight(database, jobs, workers, most), costs
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--max", type=int, default=8, help="jobs asked for per claim (1-100)")
    args = parser.parse_args()
    api, direct, costs = run(args.jobs, args.workers, args.max)
    print(
        f"{args.jobs} noop jobs, {args.workers} probe workers, claims of up to {args.max},"
        f" PostgreSQL, {os.cpu_count()} cores"
    )
    print(
        f"{'':14} {'jobs/s':>7} {'claim p50':>9} {'claim p99':>9} {'result p50':>10}"
        f" {'result p99':>10} {'worker CPU':>10} {'run twice':>9} {'not done':>8}"
    )
    for row in (api, direct):
        print(
            f"{row.label:14} {row.jobs / row.wall:7.0f} {ms(statistics.median(row.claims)):>9}"
            f" {ms(pct(row.claims, 0.99)):>9} {ms(statistics.median(row.results)):>10}"
            f" {ms(pct(row.results, 0.99)):>10} {ms(row.cpu / row.jobs):>10}"
            f" {f'{row.twice_by_workers}/{row.twice_by_attempts}':>9} {row.not_done:>8}"
        )
    print(
        "latencies in ms; worker CPU: the probe workers' own CPU per job in ms (they share the"
        " cores with the collectors and PostgreSQL);"
    )
    print(
        "run twice: job ids run more than once by the workers' own records / jobs claimed more"
        " than once by the database's attempts (both must be 0)"
    )
    print(
        f"through the collectors, CPU per job: collectors {ms(costs.collectors / api.jobs)} ms"
        f" (both processes), PostgreSQL backends {ms(costs.database / api.jobs)} ms;"
        f" PostgreSQL connections opened meanwhile: {costs.connections}"
    )
    failed = api.errors + direct.errors
    for error in failed[:10]:
        print(f"error: {error}")
    rate = api.jobs / api.wall
    twice = api.twice_by_workers + api.twice_by_attempts + direct.twice_by_workers
    twice += direct.twice_by_attempts
    ok = rate >= 200 and twice == 0 and api.not_done == 0 and direct.not_done == 0 and not failed
    verdict = "yes" if ok else "no"
    print(f"target: >= 200 jobs/s through two collectors, none run twice, all done: {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
