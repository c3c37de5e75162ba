"""Soak: a province's fleet of agents reporting on their timer to one collector on PostgreSQL.

Run: `.venv/bin/python benchmarks/soak.py [--agents 10000] [--minutes 10] [--cycle-seconds 300]
[--workers 1,2] [--interval-seconds 60]`; a smoke run: `--agents 500 --minutes 1
--cycle-seconds 30`.

For each entry of `--workers` (default: one collector process, then two; each on a database of
its own) it creates a fresh PostgreSQL database on the server at 127.0.0.1:5432, starts the real
`medsec serve` (TLS, `--workers N`) on a free loopback port, enrols the agents straight through
the store (the fast path of `benchmarks/ingest.py`: no HTTP enrolment, 10,000 of those would
measure enrolment instead of reporting), and lets every agent send a signed ~40 KB report (a real
report of this machine) once per cycle for the given minutes. Each agent has a random phase in
the cycle, as the agents' timers drift apart (`OnUnitActiveSec=5min`, `RandomizedDelaySec=30s`),
and each report is sent as a real agent run sends it: a new TLS connection, one POST, close.
Each agent is one host; its first report creates the host, the later ones update it. All agents
connect from 127.0.0.1, so they share the collector's per-address connection limit; a fleet
comes from many addresses.

Per interval of the run it prints the reports sent, accepted (201), valid reports rejected (4xx)
and errors (5xx or 429, refused or cut connections, no answer within 30 s), p50/p99/max latency
(from the TCP connect to the whole answer, TLS handshake included, as an agent waits), the
resident memory of the collector's processes (the serve process and its workers, with psutil),
the database's size (`pg_database_size`) and the machine's load average. Then one summary with
the phases side by side, each with its first interval beside its last as the baseline, and a
check that every accepted report is in the database exactly once. It exits 1 when a report was
rejected, failed or not stored.

The load generator shares the machine with the collector and PostgreSQL: it signs each report
just before sending it (outside the latency), prints its own CPU per report and how late it
started a send against the schedule (a late send would hide the collector's slowness).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg

# Run as a script: this folder is on sys.path, and ingest.py puts the project root there.
from ingest import PG_ADMIN, Agent, enrol, exchange, payload, request_bytes, sample_report, serve

from checks.envelope import generate_private_key
from collector.store import Store

AGENT_CYCLE_SECONDS = 300  # the agent's timer: every 5 minutes
REQUEST_TIMEOUT = 30.0  # an agent's whole exchange; slower counts as an error
SAMPLE_SECONDS = 5.0  # how often the collector's memory is sampled
_STATUS = re.compile(r"collector answered (\d{3})")


@dataclass
class Interval:
    """What happened to the reports scheduled in one interval, and the collector at its end."""

    index: int
    sent: int = 0
    ok: int = 0
    rejected: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    rss_mb: float | None = None  # the collector's processes together, at the interval's end
    rss_peak_mb: float = 0.0  # the largest total sampled during the interval
    procs: int = 0
    db_bytes: int | None = None  # at the interval's end
    loadavg: float | None = None  # the machine's 1-minute load average at the interval's end

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies, q)


@dataclass
class Phase:
    workers: int
    agents: int
    intervals: list[Interval]
    enrol_seconds: float
    db_start: int  # bytes, after migration and enrolment, before the first report
    stored: int  # reports in the database at the end
    client_cpu: float  # the load generator's CPU seconds over the run
    max_lag: float  # the latest a send started against its schedule, seconds
    failures: list[str]  # the first few rejections and errors, as the collector said them

    def total(self, name: str) -> int:
        return sum(getattr(i, name) for i in self.intervals)

    @property
    def latencies(self) -> list[float]:
        return [x for i in self.intervals for x in i.latencies]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def collector_rss(proc: subprocess.Popen[bytes]) -> tuple[float, int]:
    """Resident memory of `medsec serve` and every process under it (its workers), MB, and how
    many processes that was."""
    total, count = 0, 0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(proc.pid)
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
                count += 1
    return total / 2**20, count


def db_size(dbname: str) -> int:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (dbname,)).fetchone()
    assert row is not None
    return int(row[0])


def stored_reports(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        row = conn.execute("SELECT count(*) FROM reports").fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Plan:
    """What every phase runs: how many agents, for how long, how often each reports."""

    agents: int
    seconds: float
    cycle: float
    interval: float
    template: dict[str, object]

    def schedule(self, agents: list[Agent]) -> list[tuple[float, Agent]]:
        """Every send of the run, in time order: each agent at a random phase of the cycle, then
        once per cycle (seeded, so runs compare)."""
        rng = random.Random(15)  # noqa: S311 — timing, not secrets
        sends = []
        for agent in agents:
            t = rng.uniform(0, self.cycle)
            while t < self.seconds:
                sends.append((t, agent))
                t += self.cycle
        sends.sort(key=lambda s: s[0])
        return sends


class Load:
    """One phase's agents against one running collector, and what they saw."""

    def __init__(self, plan: Plan, proc: subprocess.Popen[bytes], url: str, ca: str, db: str):
        self.plan = plan
        self.proc = proc
        self.dbname = db
        self.ctx = ssl.create_default_context(cafile=ca)
        parts = urlsplit(url)
        self.netloc = parts.netloc
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.intervals = [Interval(i) for i in range(math.ceil(plan.seconds / plan.interval))]
        self.failures: list[str] = []
        self.max_lag = 0.0
        self.cpu = 0.0
        self.start = 0.0

    def _elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.start

    async def run(self, agents: list[Agent]) -> None:
        tasks: set[asyncio.Task[None]] = set()
        done = asyncio.Event()
        cpu = time.process_time()
        self.start = asyncio.get_running_loop().time()
        sampler = asyncio.create_task(self.sample(done))
        for at, agent in self.plan.schedule(agents):
            delay = at - self._elapsed()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.send(agent, at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*tasks)
        # Let the clock reach the run's end, so the last interval covers its whole length.
        await asyncio.sleep(max(0.0, self.plan.seconds - self._elapsed()))
        done.set()
        await sampler
        self.cpu = time.process_time() - cpu

    async def send(self, agent: Agent, at: float) -> None:
        """One agent run's delivery: sign, connect (TLS), POST, read the answer, close."""
        bucket = self.intervals[int(at // self.plan.interval)]
        body = payload(self.plan.template, agent, 0)  # n=0: the agent is always the same host
        request = request_bytes(self.netloc, agent.token, body)
        bucket.sent += 1
        self.max_lag = max(self.max_lag, self._elapsed() - at)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.ctx, server_hostname=self.host
                )
                try:
                    await exchange(reader, writer, request)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except RuntimeError as e:  # an answer other than 201
            status = _STATUS.match(str(e))
            if status and status.group(1).startswith("4") and status.group(1) != "429":
                bucket.rejected += 1
            else:
                bucket.errors += 1
            self._note(f"{agent.name}: {e}")
        except (OSError, EOFError, TimeoutError, ValueError) as e:  # refused, cut, no answer
            bucket.errors += 1
            self._note(f"{agent.name}: {type(e).__name__}: {e}")
        else:
            bucket.ok += 1
            bucket.latencies.append(time.perf_counter() - started)

    def _note(self, failure: str) -> None:
        if len(self.failures) < 5:
            self.failures.append(failure)

    async def sample(self, done: asyncio.Event) -> None:
        """The collector's memory every few seconds; memory and database size as each interval
        ends (the last one when the last answer has come)."""
        recorded, last = 0, len(self.intervals) - 1
        while recorded <= last:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), SAMPLE_SECONDS)
            now = int(self._elapsed() // self.plan.interval)
            rss, procs = collector_rss(self.proc)
            current = self.intervals[min(now, last)]
            current.rss_peak_mb = max(current.rss_peak_mb, rss)
            ended = last + 1 if done.is_set() else min(now, last)
            if recorded < ended:
                size = await asyncio.to_thread(db_size, self.dbname)
                for i in self.intervals[recorded:ended]:
                    i.rss_mb, i.procs, i.db_bytes = rss, procs, size
                    i.loadavg = os.getloadavg()[0]
                    i.rss_peak_mb = max(i.rss_peak_mb, rss)
                recorded = ended


def run_phase(plan: Plan, workers: int) -> Phase:
    """A fresh database and collector with `workers` processes, the agents enrolled, the load
    run; the database is dropped at the end whatever happens."""
    dbname = f"medsec_soak_{secrets.token_hex(4)}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{dbname}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        with tempfile.TemporaryDirectory(prefix="medsec-soak-") as tmp:
            proc, base, ca = serve(Path(tmp) / "collector", url, workers)
            try:
                if proc.poll() is not None:
                    raise SystemExit(f"medsec serve exited with {proc.returncode} at start")
                started = time.perf_counter()
                store = Store.open(url)
                try:
                    agents = enrol(store, plan.agents)
                finally:
                    store.close()
                enrol_seconds = time.perf_counter() - started
                db_start = db_size(dbname)
                load = Load(plan, proc, base, ca, dbname)
                asyncio.run(load.run(agents))
                if proc.poll() is not None:
                    load.failures.append(f"medsec serve exited with {proc.returncode} in the run")
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            stored = stored_reports(url)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return Phase(
        workers,
        plan.agents,
        load.intervals,
        enrol_seconds,
        db_start,
        stored,
        load.cpu,
        load.max_lag,
        load.failures,
    )


# --------------------------------------------------------------------------- output


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_intervals(phase: Phase, interval: float) -> None:
    print(f"\n{phase.workers} collector process(es): {phase.agents} agents")
    print(
        f"{'min':>5} {'sent':>6} {'201':>6} {'4xx':>4} {'err':>4} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'max ms':>7} {'RSS MB':>7} {'peak':>7} {'procs':>5} {'DB MB':>8} {'+DB MB':>7}"
        f" {'load':>5}"
    )
    previous = phase.db_start
    for i in phase.intervals:
        grown = None if i.db_bytes is None else (i.db_bytes - previous) / 2**20
        previous = i.db_bytes if i.db_bytes is not None else previous
        end = (i.index + 1) * interval / 60
        print(
            f"{end:5.1f} {i.sent:6} {i.ok:6} {i.rejected:4} {i.errors:4}"
            f" {ms(i.percentile(0.5)):>7} {ms(i.percentile(0.99)):>7}"
            f" {ms(max(i.latencies, default=None)):>7} {mb(i.rss_mb):>7} {mb(i.rss_peak_mb):>7}"
            f" {i.procs:5} {mb(None if i.db_bytes is None else i.db_bytes / 2**20):>8}"
            f" {mb(grown):>7} {mb(i.loadavg):>5}"
        )


def summary_rows(phase: Phase) -> list[tuple[str, str]]:
    first, last = phase.intervals[0], phase.intervals[-1]
    sent, ok = phase.total("sent"), phase.total("ok")
    end = last.db_bytes or phase.db_start
    per_report = (end - phase.db_start) / ok if ok else 0.0
    lat = phase.latencies
    return [
        ("reports sent", f"{sent}"),
        ("accepted (201)", f"{ok}"),
        ("valid reports rejected", f"{phase.total('rejected')}"),
        ("errors", f"{phase.total('errors')}"),
        ("stored in the database", f"{phase.stored}"),
        ("p50 / p99 ms, whole run", f"{ms(percentile(lat, 0.5))} / {ms(percentile(lat, 0.99))}"),
        (
            "p50 / p99 ms, first interval",
            f"{ms(first.percentile(0.5))} / {ms(first.percentile(0.99))}",
        ),
        (
            "p50 / p99 ms, last interval",
            f"{ms(last.percentile(0.5))} / {ms(last.percentile(0.99))}",
        ),
        ("RSS MB, first → last interval", f"{mb(first.rss_mb)} → {mb(last.rss_mb)}"),
        ("RSS MB, peak", mb(max(i.rss_peak_mb for i in phase.intervals))),
        ("DB MB, start → end", f"{phase.db_start / 2**20:.1f} → {end / 2**20:.1f}"),
        ("DB growth KB per report", f"{per_report / 1024:.1f}"),
        (
            f"DB GB/day, {phase.agents} agents/5 min",
            f"{per_report * phase.agents * 86_400 / AGENT_CYCLE_SECONDS / 1e9:.1f}",
        ),
        ("enrolment via the store, s", f"{phase.enrol_seconds:.1f}"),
        ("load generator CPU ms/report", f"{phase.client_cpu / max(sent, 1) * 1000:.2f}"),
        ("latest send behind schedule, ms", f"{phase.max_lag * 1000:.0f}"),
        ("machine load average, highest", mb(max((i.loadavg or 0.0) for i in phase.intervals))),
    ]


def print_summary(phases: list[Phase]) -> None:
    print("\nsummary" + " " * 27 + "".join(f"{f'{p.workers} process(es)':>18}" for p in phases))
    columns = [summary_rows(p) for p in phases]
    for n, (label, _) in enumerate(columns[0]):
        print(f"{label:34}" + "".join(f"{col[n][1]:>18}" for col in columns))


def verdicts(phase: Phase) -> list[str]:
    ok = phase.total("ok")
    lines = []
    if phase.total("rejected") or phase.total("errors"):
        lines.append(
            f"{phase.workers} process(es): {phase.total('rejected')} valid report(s) rejected,"
            f" {phase.total('errors')} error(s)"
        )
    if phase.stored != ok:
        lines.append(
            f"{phase.workers} process(es): {ok} reports accepted but {phase.stored} stored"
        )
    lines += [f"  {f}" for f in phase.failures] if lines else []
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--cycle-seconds",
        type=float,
        default=AGENT_CYCLE_SECONDS,
        help="each agent reports once per cycle (the agent's timer: 300)",
    )
    parser.add_argument(
        "--workers", default="1,2", help="collector processes, one phase per entry (1,2)"
    )
    parser.add_argument("--interval-seconds", type=float, default=60.0)
    args = parser.parse_args()
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: expected numbers separated by commas, got {args.workers!r}")
    if args.agents < 1 or args.minutes <= 0 or args.cycle_seconds <= 0 or min(workers) < 1:
        parser.error("--agents, --minutes, --cycle-seconds and --workers must be positive")
    if args.interval_seconds <= 0:
        parser.error("--interval-seconds must be positive")
    seconds = args.minutes * 60
    rate = args.agents / args.cycle_seconds
    template = sample_report()
    size = len(payload(template, Agent("size", "-", generate_private_key("ed25519")), 0))
    print(
        f"{args.agents} agents, one signed report ({size / 1024:.1f} KB sealed) each per"
        f" {args.cycle_seconds:g} s for {args.minutes:g} min: {rate:.1f} reports/s on average;"
        f" collector on PostgreSQL 127.0.0.1:5432, processes: {args.workers}"
    )
    if args.cycle_seconds < AGENT_CYCLE_SECONDS:
        print(
            f"cycle compressed: {args.cycle_seconds:g} s instead of the agent's"
            f" {AGENT_CYCLE_SECONDS} s, {AGENT_CYCLE_SECONDS / args.cycle_seconds:.1f}x the rate"
            f" of a real fleet of {args.agents} agents"
        )
    else:
        print(f"cycle: {args.cycle_seconds:g} s, as the agent's timer (not compressed)")
    print("command: .venv/bin/python benchmarks/soak.py " + " ".join(sys.argv[1:]))
    print(
        "agents are enrolled straight through the store (fast path), not over HTTP;"
        " latency: TCP connect to the whole answer, TLS handshake included"
    )
    plan = Plan(args.agents, seconds, args.cycle_seconds, args.interval_seconds, template)
    phases = []
    for w in workers:
        phase = run_phase(plan, w)
        print_intervals(phase, args.interval_seconds)
        sys.stdout.flush()  # a run is long: each table as soon as it is ready
        phases.append(phase)
    print_summary(phases)
    failed = [line for p in phases for line in verdicts(p)]
    for line in failed:
        print(line)
    if not failed:
        print("no errors, no valid report rejected, every accepted report stored once")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    sys.exit(main())
