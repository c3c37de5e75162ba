"""The web dashboard at a province's scale: 10,000 hosts × 40 results stored, a real collector
(`medsec serve`) serving them, and the server time of the overview, a hosts page and a host detail
page (median and p95 of 20 loads each, over HTTPS on one kept-alive connection, the aggregation
cache warm) beside the time of the aggregation alone in the same run.

Run: `.venv/bin/python benchmarks/dashboard.py [--backends sqlite,postgresql] [--hosts 10000]
[--results 40] [--loads 20]`.

The store is filled as benchmarks/report.py fills it (its `fill`: signed reports from 100 agents
through the collector's own ingest, realistic inventories). The collector then runs as its own
process, exactly as deployed (`medsec serve --config`, one worker), and an auditor signs in
through the login form. The first overview waits for the one aggregation (its time is shown as
"first overview"); the pages are then loaded `--loads` times each. The aggregation alone (both
standards over one read of the store, as the cache makes it) is timed in a process of its own,
as is the cache's freshness check (`Store.evidence_version`, made on every page). Targets on 2
cores (issue 17): overview ≤ 300 ms, hosts page ≤ 200 ms, host detail ≤ 100 ms. PostgreSQL is the
server on 127.0.0.1:5432 (a fresh database, dropped after); SQLite a file in a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
import psycopg  # noqa: E402
import yaml  # noqa: E402

VENV_BIN = Path(sys.executable).parent
TARGETS_MS = {"overview": 300.0, "hosts": 200.0, "host": 100.0}
USER = "bench-auditor"
PASSWORD = secrets.token_urlsafe(18)
"""The auditor's dashboard password, made for this run: never printed."""


class _Once(logging.Handler):
    """The store's warnings while filling, each kind once and in one line (a batch written
    report by report repeats its warning for every batch, each with its SQL)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage().splitlines()[0]
        kind = re.sub(r"\d+", "N", line)[:100]
        if kind not in self.seen:
            self.seen.add(kind)
            print(f"  (store warning, shown once) {line[:200]}", file=sys.stderr)


def _report_benchmark() -> Any:
    """benchmarks/report.py, whose store filling this benchmark reuses."""
    spec = importlib.util.spec_from_file_location(
        "report_benchmark", ROOT / "benchmarks" / "report.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("benchmarks/report.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- the collector


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(folder: Path, url: str) -> Path:
    """`medsec init` in `folder/c` (settings, TLS pair, audit key), pointed at `url`."""
    subprocess.run(
        [str(VENV_BIN / "medsec"), "init", "--dir", str(folder / "c")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    config = folder / "c" / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["database"] = url
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    return config


def add_auditor(url: str) -> None:
    from collector.models import Role
    from collector.store import Store

    store = Store.open(url)
    try:
        store.add_user(USER, Role.AUDITOR, datetime.now(UTC))
        store.set_password(USER, PASSWORD)
    finally:
        store.close()


class Collector:
    """`medsec serve` in a process of its own, on a free loopback port."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca = str(folder / "c" / "tls" / "cert.pem")
        self.log = (folder / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "medsec"),
                "serve",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        with self.client() as client:
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"medsec serve did not start (see {self.log.name})")
                time.sleep(0.1)

    def client(self) -> httpx.Client:
        verify = ssl.create_default_context(cafile=self.ca)
        return httpx.Client(base_url=self.url, verify=verify, timeout=120)

    def rss_mb(self) -> float:
        return float(psutil.Process(self.process.pid).memory_info().rss / 2**20)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def sign_in(client: httpx.Client) -> None:
    """Through the login form, as a browser: its CSRF field, then the cookie it sets."""
    form = client.get("/login")
    form.raise_for_status()
    fields = {"name": USER, "password": PASSWORD}
    found = re.search(r'name="csrf"\s+value="([^"]+)"', form.text)
    if found:
        fields["csrf"] = found.group(1)
    done = client.post("/login", data=fields)
    if done.status_code not in (200, 303) or not client.cookies:
        raise RuntimeError(f"signing in failed: HTTP {done.status_code}")


def load_times(client: httpx.Client, path: str, loads: int) -> list[float]:
    """Milliseconds of each load of `path` (the page must come back 200)."""
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status_code}")
        times.append(elapsed)
    return times


AGGREGATING = re.compile("正在重新汇总|aggregating again")
"""The overview's note that a newer aggregation is being made (templates/overview.html)."""


def warm(client: httpx.Client) -> float:
    """Load the overview until the aggregation behind it is made and current: milliseconds of
    the first load (which waits for the one aggregation)."""
    started = time.perf_counter()
    client.get("/").raise_for_status()
    first = (time.perf_counter() - started) * 1000
    deadline = time.monotonic() + 600
    while AGGREGATING.search(client.get("/").text) and time.monotonic() < deadline:
        time.sleep(0.5)
    return first


def while_aggregating(client: httpx.Client, url: str, hosts: int, report: Any) -> list[float]:
    """One more host reports; the overview is loaded while the collector aggregates again in
    the background (the page shows the older aggregation meanwhile): milliseconds of each load
    made while it did."""
    from checks.envelope import generate_private_key, public_key_pem
    from checks.report import parse_report
    from collector.store import Store

    store = Store.open(url)
    try:
        now = datetime.now(UTC)
        token = store.create_enrollment("bench-late", timedelta(hours=1), now)
        key = public_key_pem(generate_private_key("ed25519"), "ed25519")
        agent = store.redeem_enrollment(token, "bench-late", "ed25519", key, now)[0]
        body = report._report(hosts, 40)
        store.ingest(agent, parse_report(body), body, now)
    finally:
        store.close()
    times: list[float] = []
    seen = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = client.get("/")
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        if AGGREGATING.search(response.text):
            seen = True
            times.append(elapsed)
        elif seen:
            break
    return times


def a_host(url: str, hosts: int) -> str:
    """The id of the host in the middle of the listing (by hostname)."""
    from collector.store import Store

    store = Store.open(url)
    try:
        return store.list_hosts(1, hosts // 2).items[0].id
    finally:
        store.close()


# --------------------------------------------------------------------------- alone


def alone(url: str, folder: Path) -> dict[str, float]:
    """In this process: the aggregation the cache makes (both standards, one read of the store)
    and the freshness check it makes on every page, in seconds and milliseconds."""
    from checks.catalog import builtin_catalogs
    from collector.compliance.model import Scope
    from collector.scans import ScanLauncher
    from collector.settings import load_settings
    from collector.store import Store
    from collector.web.cache import aggregate
    from collector.web.context import WebContext

    settings = load_settings(folder / "c" / "collector.yaml")
    store = Store.open(url)
    try:

        def clock() -> datetime:
            return datetime.now(UTC)

        ctx = WebContext(
            settings, store, builtin_catalogs(), clock, ScanLauncher(settings.scans, store, clock)
        )
        checks = []
        for _ in range(100):
            started = time.perf_counter()
            store.evidence_version()
            checks.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        documents = aggregate(ctx, Scope(), clock())
        seconds = time.perf_counter() - started
        hosts = next(iter(documents.values())).summary.hosts
    finally:
        store.close()
    return {
        "aggregate_s": seconds,
        "hosts": hosts,
        "version_ms_median": statistics.median(checks),
        "version_ms_p95": _p95(checks),
    }


def child_alone(url: str, folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--url", url, "--folder", str(folder)],
        capture_output=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        return {"failed": done.stderr.decode(errors="replace").strip().splitlines()[-1:]}
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


# --------------------------------------------------------------------------- figures


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _row(name: str, times: list[float], target: float | None) -> str:
    median, p95 = statistics.median(times), _p95(times)
    verdict = "" if target is None else f"≤ {target:.0f} ms: {'met' if p95 <= target else 'MISSED'}"
    return f"  {name:<22} {median:9.1f} {p95:9.1f}   {verdict}"


def run_backend(backend: str, args: argparse.Namespace, report: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="medsec-dashboard-bench-") as tmp:
        folder = Path(tmp)
        dbname = None
        if backend == "sqlite":
            url = f"sqlite:///{folder / 'collector.db'}"
        else:
            dbname = f"medsec_bench_{secrets.token_hex(4)}"
            with psycopg.connect(report.PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{dbname}"')
            url = f"{report.PG_SERVER}/{dbname}"
        collector: Collector | None = None
        try:
            filled = report.fill(url, args.hosts, args.results)
            print(f"\n{backend}: {args.hosts} hosts stored in {filled:.0f} s", flush=True)
            config = configure(folder, url)
            add_auditor(url)
            host_id = a_host(url, args.hosts)
            figures = child_alone(url, folder)
            collector = Collector(config, folder)
            idle_mb = collector.rss_mb()
            with collector.client() as client:
                sign_in(client)
                first = warm(client)
                warmed = time.monotonic()
                pages = {
                    "overview": load_times(client, "/", args.loads),
                    "hosts": load_times(client, "/hosts?page=7", args.loads),
                    "host": load_times(client, f"/hosts/{host_id}", args.loads),
                    "hosts (search)": load_times(client, "/hosts?q=host-0421", args.loads),
                    "hosts (failing, sorted)": load_times(
                        client, "/hosts?status=fail&sort=-fail&page=3", args.loads
                    ),
                }
                # An aggregation is made again no sooner than 9× its duration after the last
                # (collector/web/cache.py): wait that out, then make the evidence change.
                time.sleep(max(0.0, warmed + 10 * first / 1000 - time.monotonic()))
                during = while_aggregating(client, url, args.hosts, report)
            served_mb = collector.rss_mb()
            print(f"  {'page':<22} {'median':>9} {'p95':>9}   target (p95), ms")
            for name, times in pages.items():
                print(_row(name, times, TARGETS_MS.get(name)))
            if during:
                print(_row("overview, aggregating", during, None) + f"({len(during)} loads)")
            print(f"  first overview (waits for the aggregation): {first / 1000:.2f} s")
            if "failed" in figures:
                print(f"  aggregation alone: failed: {figures['failed']}")
            else:
                print(
                    f"  aggregation alone (both standards, {figures['hosts']} hosts): "
                    f"{figures['aggregate_s']:.2f} s; freshness check per page: median "
                    f"{figures['version_ms_median']:.2f} ms, p95 {figures['version_ms_p95']:.2f} ms"
                )
            print(
                f"  collector RSS: {idle_mb:.0f} MB started, {served_mb:.0f} MB with the cache warm"
            )
        finally:
            if collector is not None:
                collector.stop()
            if dbname is not None:
                with psycopg.connect(report.PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--results", type=int, default=40)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(alone(args.url, args.folder)))
        return 0
    print(
        f"dashboard: {args.hosts} hosts × {args.results} results, {os.cpu_count()} cores, "
        f"{args.loads} loads of each page after the first"
    )
    store_log = logging.getLogger("medsec.collector.store")
    store_log.addHandler(_Once())
    store_log.propagate = False
    report = _report_benchmark()
    for backend in args.backends.split(","):
        run_backend(backend, args, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
