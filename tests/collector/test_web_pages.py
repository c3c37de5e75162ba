"""The dashboard's overview, clause, hosts and host pages against a real collector: uvicorn over
TLS on loopback serving `create_app` with the dashboard mounted, on SQLite and on PostgreSQL,
filled with reports made from one real agent run (each stored as another host's), read by an
auditor signed in with a real password, as a browser would (httpx keeping the cookies).

What a user would notice is asserted: the heat map and the clauses it counts, a failing clause's
evidence and the host's disk table, filters, search, sorting and pages that agree with the
hosts stored, the 404 and 400 pages, escaping of HTML sent by a host, both languages.
"""

from __future__ import annotations

import copy
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
import yaml
from starlette.routing import NoMatchFound

from checks.catalog import builtin_catalogs
from checks.envelope import generate_private_key, public_key_pem
from checks.net import network_registry
from checks.report import parse_report
from checks.runner import evaluate
from collector.api import create_app
from collector.compliance.model import Scope
from collector.compliance.snapshot_cli import store_snapshot
from collector.models import Agent, Role
from collector.scan.cli import results_to_report
from collector.scans import ScanLauncher, store_scan_report
from collector.settings import (
    CollectorSettings,
    DashboardSettings,
    ScanSettings,
    SnapshotSettings,
    TlsSettings,
)
from collector.store import Store
from collector.tls import uvicorn_config
from collector.web import mount
from collector.web.context import WebContext
from tests.checks.cases_net import DB_LEAK
from tests.collector.fixtures_api import (
    Clock,
    Server,
    TlsFiles,
    agent_report,
    free_port,
    make_report,
    make_server_tls,
)

PASSWORD = "correct horse battery staple"  # noqa: S105 — a test user's password
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """One real agent run's report, which every host's report is made from."""
    return agent_report()


@pytest.fixture(scope="module")
def zones_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("zones") / "hospital.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "zones": [
                    {"name": "his", "cidrs": ["198.18.2.0/24"], "critical": True},
                    {"name": "office", "cidrs": ["198.18.3.0/24"]},
                ],
                "policy": {"default": "deny", "allow": []},
            }
        ),
        encoding="utf-8",
    )
    return path


class Web:
    """A running collector with its dashboard. Evidence is stored before a test's first page, so
    the first aggregation (made on that page) already holds it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.store = server.store
        self.clock = server.clock

    def browser(self, name: str = "alice", role: Role = Role.AUDITOR) -> httpx.Client:
        """A client signed in as a new user `name` with `role`."""
        self.store.add_user(name, role, self.clock())
        self.store.set_password(name, PASSWORD)
        client = self.server.client()
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None, form.text
        done = client.post(
            "/login", data={"csrf": token.group(1), "name": name, "password": PASSWORD}
        )
        assert done.status_code == 303, done.text
        return client


@pytest.fixture
def web(store: Store, tls: TlsFiles, zones_file: Path) -> Iterator[Web]:
    clock = Clock()
    settings = CollectorSettings(
        tls=TlsSettings(cert_file=str(tls.cert), key_file=str(tls.key)),
        database="sqlite:///unused-by-the-app.db",
        listen=f"127.0.0.1:{free_port()}",
        dashboard=DashboardSettings(failure_delay_ms=0),
        scans=ScanSettings(zones={"hospital": str(zones_file)}),
        snapshots=SnapshotSettings(
            dir=str(tls.cert.parent / f"snapshots-{uuid.uuid4().hex[:8]}"),
            key_file=str(tls.cert.parent / "snapshot.key"),
        ),
    )
    app = create_app(settings, store, clock=clock)
    try:
        app.url_path_for("web_login")
    except NoMatchFound:  # until create_app mounts the dashboard itself, as it is asked to
        ctx = WebContext(
            settings, store, builtin_catalogs(), clock, ScanLauncher(settings.scans, store, clock)
        )
        mount(app, ctx)
    config = uvicorn_config(
        app, settings.host, settings.port, tls.cert, tls.key, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start in time"
        time.sleep(0.01)
    running = Server(
        f"https://127.0.0.1:{settings.port}", store, clock, settings, tls, server, thread
    )
    try:
        yield Web(running)
    finally:
        running.stop()


# --------------------------------------------------------------------------- evidence


def enrolled(store: Store, name: str, now: datetime) -> Agent:
    """An agent enrolled in the store (reports are stored directly, not sent)."""
    token = store.create_enrollment(name, timedelta(hours=1), now)
    key = public_key_pem(generate_private_key("ed25519"), "ed25519")
    return store.redeem_enrollment(token, name, "ed25519", key, now)[0]


def host_template(
    template: dict[str, Any],
    *,
    site: str | None = None,
    addresses: tuple[str, ...] = (),
    serial: str | None = None,
    disk_serial: str | None = None,
    luks: bool = False,
    message: str | None = None,
) -> dict[str, Any]:
    """The agent's report with this host's site, addresses, serials and an encrypted volume."""
    doc = copy.deepcopy(template)
    inventory = doc["inventory"]
    inventory["site"] = site
    hardware = inventory["hardware"]
    hardware["nics"] = [
        {
            "name": "eth0",
            "mac": "02:00:00:00:00:01",
            "addresses": [f"{a}/24" for a in addresses],
            "physical": True,
            "speed_mbps": None,
        }
    ]
    if serial is not None:
        hardware["dmi"] = {
            "sys_vendor": "Inspur",
            "product_name": "NF5280M6",
            "product_serial": serial,
            "product_uuid": None,
            "board_serial": None,
            "bios_vendor": "AMI",
            "bios_version": "4.1",
            "bios_date": "2024-01-02",
            "placeholders": [],
            "unreadable": [],
        }
    hardware["disks"] = [
        {
            "name": "sda",
            "path": "/dev/sda",
            "model": "SAMSUNG MZ7LH960",
            "serial": disk_serial,
            "size_bytes": 960197124096,
            "medium": "ssd",
            "transport": "sata",
            "removable": False,
        }
    ]
    if luks:
        inventory["disk"]["block_devices"] = [
            {"name": "sda", "kname": "sda", "path": "/dev/sda", "type": "disk",
             "majmin": "8:0", "size_bytes": 960197124096, "fstype": None, "fsver": None,
             "uuid": None, "mountpoints": [], "parents": [], "dm_uuid": None,
             "encryption": None},
            {"name": "sda2", "kname": "sda2", "path": "/dev/sda2", "type": "part",
             "majmin": "8:2", "size_bytes": 900000000000, "fstype": "crypto_LUKS",
             "fsver": "2", "uuid": "1b2c", "mountpoints": [], "parents": ["sda"],
             "dm_uuid": None, "encryption": None},
        ]  # fmt: skip
        inventory["disk"]["volumes"] = [
            {
                "device": "/dev/sda2",
                "kind": "luks2",
                "uuid": "1b2c",
                "mapped_name": "luks-1b2c",
                "mapped_path": "/dev/mapper/luks-1b2c",
                "cipher": {
                    "spec": "aes-xts-plain64",
                    "key_bits": 512,
                    "algorithm": "aes",
                    "mode": "xts",
                    "effective_bits": 256,
                    "integrity": None,
                },
                "keys": {
                    "keyslots": 1,
                    "pbkdf": ["argon2id"],
                    "tokens": ["systemd-tpm2"],
                    "tpm2_token": True,
                    "clevis_tpm2": False,
                    "tpm2_pcrs": [7],
                },
                "segments": [],
                "reencryption": None,
            }
        ]
    if message is not None:
        for result in doc["results"]:
            if result["status"] == "fail":
                result["message"] = message
                result["message_zh"] = message
    return doc


def store_host(
    store: Store,
    agent: Agent,
    template: dict[str, Any],
    host: str,
    now: datetime,
    *,
    generated_at: datetime | None = None,
    statuses: dict[str, str] | None = None,
) -> str:
    """Store `template` as `host`'s report; the host's id."""
    body = make_report(template, host=host, generated_at=generated_at or now, statuses=statuses)
    return store.ingest(agent, parse_report(body), body, now).host_id


def page_text(page: httpx.Response) -> str:
    """The page's visible text, tags removed and entities read."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", page.text, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)))


def links(page: httpx.Response, prefix: str) -> list[str]:
    return [
        html.unescape(h) for h in re.findall(r'href="(' + re.escape(prefix) + r'[^"]*)"', page.text)
    ]


def host_names(page: httpx.Response) -> list[str]:
    """The host names the hosts table lists, in its order."""
    body = page.text.split('<table class="hosts">', 1)
    if len(body) < 2:
        return []
    rows = body[1].split("</table>", 1)[0]
    return [
        html.unescape(n)
        for n in re.findall(r'<a class="clip" href="/hosts/[^"]+" title="[^"]*">([^<]*)</a>', rows)
    ]


# --------------------------------------------------------------------------- tests


def test_overview_leads_to_a_failing_clause_its_evidence_and_the_host_disks(
    web: Web, template: dict[str, Any]
) -> None:
    now = web.clock()
    agent = enrolled(web.store, "agent-ward-1", now)
    shaped = host_template(
        template, site="dc1", addresses=("198.18.2.10",), serial="SN-HIS-0001", luks=True
    )
    host_id = store_host(web.store, agent, shaped, "his-db-01", now)
    enrolled(web.store, "agent-never", now)  # enrolled, never reported
    browser = web.browser()

    # Signed out, the overview sends the browser to sign in.
    assert web.server.client().get("/").status_code == 303

    page = browser.get("/")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.text.count('<svg class="chart heat"') == 2  # both standards
    text = page_text(page)
    assert "GB/T 22239-2019" in text
    assert "MNDS" in text
    assert "agent-never" in text  # missing agents
    assert "his-db-01" in text  # the worst hosts
    # A heat-map cell of failing clauses leads to the clauses it counts.
    cells = [
        h
        for h in links(page, "/?")
        if "standard=gbt22239-2019-l3" in h and "family=8.1.4+" in h and "status=fail" in h
    ]
    assert len(cells) == 1, links(page, "/?")
    cell = browser.get(cells[0])
    assert cell.status_code == 200
    failing = links(cell, "/clauses/")
    assert failing
    # The trusted-boot clause fails on this host (no TPM): the cell lists it, and its page shows
    # the agent's own message as evidence.
    tpm_clause = "/clauses/gbt22239-2019-l3/8.1.4.6"
    assert tpm_clause in failing
    clause = browser.get(tpm_clause)
    assert clause.status_code == 200, clause.text
    clause_text = page_text(clause)
    assert "his-db-01" in clause_text
    tpm = next(r for r in template["results"] if r["check_id"] == "tpm.present")
    assert tpm["status"] == "fail"
    assert tpm["message_zh"] in clause_text
    # From the clause to the host, and its disk table with cipher and effective key bits.
    host_link = f"/hosts/{quote(host_id)}"
    assert any(h.startswith("/hosts/") for h in links(clause, "/hosts/"))
    host = browser.get(host_link)
    assert host.status_code == 200, host.text
    disks = host.text.split('<table class="disks">', 1)[1].split("</table>", 1)[0]
    disk_text = page_text(httpx.Response(200, text=disks))
    assert "sda" in disk_text
    assert "aes-xts-plain64" in disk_text
    assert re.search(r"\b512\b.*\b256\b", disk_text), disk_text
    host_text = page_text(host)
    assert "SN-HIS-0001" in host_text
    assert "systemd-tpm2 (PCR 7)" in host_text
    assert "journald" in host_text  # log streams
    for result in template["results"]:
        assert result["check_id"] in host_text
    assert "198.18.2.10" in host_text
    assert "his" in host_text


def _fill(web: Web, template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """55 hosts over two sites and two zones, some failing, some stale; what each is."""
    now = web.clock()
    agent = enrolled(web.store, "agent-fleet", now)
    truth: dict[str, dict[str, Any]] = {}
    passing = {r["check_id"]: "pass" for r in template["results"]}
    for n in range(55):
        name = f"host-{n:03d}"
        site = "dc1" if n % 2 else "dc2"
        address = f"198.18.{2 if n % 3 else 3}.{n + 1}"
        fails = n % 5 != 0
        stale = n % 11 == 0
        shaped = host_template(
            template,
            site=site,
            addresses=(address,),
            serial=f"SRV{n:05d}",
            disk_serial=f"DSK-{n:04d}-X",
        )
        when = now - timedelta(days=2) if stale else now - timedelta(minutes=n)
        store_host(
            web.store,
            agent,
            shaped,
            name,
            now,
            generated_at=when,
            statuses=None if fails else passing,
        )
        truth[name] = {
            "site": site,
            "zone": "his" if n % 3 else "office",
            "fails": fails,
            "stale": stale,
            "when": when,
        }
    return truth


def test_overview_ztna_scans_and_the_change_since_the_newest_snapshot(
    web: Web, template: dict[str, Any], zones_file: Path
) -> None:
    now = web.clock()
    agent = enrolled(web.store, "agent-ward-2", now)
    shaped = host_template(template, site="dc1", addresses=("198.18.2.11",))
    store_host(web.store, agent, shaped, "his-db-02", now - timedelta(minutes=5))
    # A zones scan, stored as the scanner stores it (recorded facts, the real network checks).
    scan = results_to_report(
        DB_LEAK,
        evaluate(network_registry(), DB_LEAK),
        builtin_catalogs(),
        zones_file=str(zones_file),
        scanner="collector-01",
        now=now,
    )
    store_scan_report(web.store, json.dumps(scan).encode("utf-8"), now)
    # The snapshot, then the host passes every check: the trusted-boot clause now passes.
    snapshot = store_snapshot(web.store, web.server.settings, Scope(), "auditor-1", now)
    passing = {r["check_id"]: "pass" for r in template["results"]}
    store_host(web.store, agent, shaped, "his-db-02", now, statuses=passing)
    browser = web.browser()

    page = browser.get("/")
    assert page.status_code == 200, page.text
    ztna = page_text(page).split("ZTNA", 1)[1]
    assert "his-web" in ztna
    assert "100%" in ztna
    changes = page.text.split('id="changes"', 1)[1]
    assert snapshot.id[:8] in changes
    row = re.search(r"8\.1\.4\.6</a></td>(.*?)</tr>", changes, re.S)
    assert row is not None, changes[:3000]
    assert re.findall(r'badge st-(\w+)"', row.group(1)) == ["fail", "pass"]
    # The clause page: every object listed with its status, filtered by status on request.
    clause = browser.get("/clauses/gbt22239-2019-l3/8.1.4.6")
    assert "his-db-02" in page_text(clause)
    assert "his-db-02" not in page_text(
        browser.get("/clauses/gbt22239-2019-l3/8.1.4.6", params={"status": "fail"})
    )


def test_hosts_filters_search_sort_and_pages_agree_with_the_store(
    web: Web, template: dict[str, Any]
) -> None:
    truth = _fill(web, template)
    browser = web.browser()

    first = browser.get("/hosts")
    assert first.status_code == 200, first.text
    names = host_names(first)
    assert names == sorted(truth)[:50]
    assert "55" in page_text(first)
    second = browser.get("/hosts", params={"page": "2"})
    assert host_names(second) == sorted(truth)[50:]

    def listed(**query: str) -> list[str]:
        found: list[str] = []
        for page in range(1, 4):
            got = browser.get("/hosts", params={**query, "page": str(page)})
            assert got.status_code == 200, got.text
            found += host_names(got)
        return found

    assert listed(site="dc1") == sorted(n for n, t in truth.items() if t["site"] == "dc1")
    assert listed(zone="office") == sorted(n for n, t in truth.items() if t["zone"] == "office")
    assert listed(status="fail") == sorted(n for n, t in truth.items() if t["fails"])
    assert listed(status="pass") == sorted(n for n, t in truth.items() if not t["fails"])
    assert listed(status="stale") == sorted(n for n, t in truth.items() if t["stale"])
    assert listed(zone="his", site="dc2", status="pass") == sorted(
        n for n, t in truth.items() if t["zone"] == "his" and t["site"] == "dc2" and not t["fails"]
    )
    failing_check = next(r["check_id"] for r in template["results"] if r["status"] == "fail")
    assert listed(check=failing_check, status="fail") == sorted(
        n for n, t in truth.items() if t["fails"]
    )
    # Search: a name, an address, a system serial, a disk serial; any case; wildcards literal.
    assert listed(q="HOST-01") == [f"host-{n:03d}" for n in range(10, 20)]
    assert listed(q="198.18.3.4") == sorted(
        n
        for n, t in truth.items()
        if t["zone"] == "office" and "198.18.3.4" in f"198.18.3.{int(n[5:]) + 1}"
    )
    assert listed(q="srv00042") == ["host-042"]
    assert listed(q="dsk-0007") == ["host-007"]
    assert listed(q="host_0") == []  # '_' is a character here, not a wildcard
    assert listed(q="%") == []
    # Sorting: newest report first; most failures first (then by name).
    newest = listed(sort="-last")
    assert newest == sorted(truth, key=lambda n: (-truth[n]["when"].timestamp(), n))
    by_fail = listed(sort="-fail")
    assert set(by_fail[: sum(t["fails"] for t in truth.values())]) == {
        n for n, t in truth.items() if t["fails"]
    }


def test_unknown_pages_are_404_and_bad_filters_400(web: Web, template: dict[str, Any]) -> None:
    browser = web.browser(role=Role.OPERATOR)
    for path in (
        "/hosts/sha256:nothing",
        "/clauses/gbt22239-2019-l3/9.9.9",
        "/clauses/iso27001/8.1.4.8%20b",
    ):
        page = browser.get(path)
        assert page.status_code == 404, path
        assert "text/html" in page.headers["content-type"]
        assert "找不到" in page.text
        assert "Traceback" not in page.text
    for query in (
        {"status": "bogus"},
        {"zone": "nowhere"},
        {"sort": "size"},
        {"page": "0"},
        {"page": "x"},
        {"check": "disk.nothing"},
        {"q": "x" * 201},
    ):
        page = browser.get("/hosts", params=query)
        assert page.status_code == 400, query
        assert "text/html" in page.headers["content-type"]
    assert browser.get("/", params={"status": "nope"}).status_code == 400
    assert browser.get("/clauses/mnds/4.1", params={"page": "-1"}).status_code == 400


def test_a_browser_asking_for_a_path_nothing_serves_gets_the_404_page(web: Web) -> None:
    """A browser (it asks for HTML) gets the dashboard's page; an API client, or any path under
    /api/, still gets the JSON error body the API's clients parse."""
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    client = web.server.client()
    page = client.get("/scans/a/b", headers=html)
    assert page.status_code == 404
    assert "text/html" in page.headers["content-type"]
    assert "找不到" in page.text
    for path, headers in (("/scans/a/b", {}), ("/api/v1/nothing", html)):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "not_found", path


def test_html_from_a_host_is_escaped_everywhere(web: Web, template: dict[str, Any]) -> None:
    now = web.clock()
    agent = enrolled(web.store, "agent-x", now)
    shaped = host_template(template, site=SCRIPT, serial=SCRIPT, message=f"bad {SCRIPT} value")
    host_id = store_host(web.store, agent, shaped, SCRIPT, now)
    browser = web.browser()
    pages = [
        browser.get("/"),
        browser.get("/hosts"),
        browser.get("/hosts", params={"q": SCRIPT}),
        browser.get(f"/hosts/{quote(host_id)}"),
    ]
    overview = pages[0]
    pages += [browser.get(h) for h in links(overview, "/clauses/")[:3]]
    for page in pages:
        assert page.status_code == 200, page.url
        assert "<script>alert" not in page.text, page.url
    assert all("&lt;script&gt;alert(1)&lt;/script&gt;" in p.text for p in pages[1:4])
    assert "bad &lt;script&gt;" in pages[3].text  # the message


def test_a_host_page_shows_what_its_agent_could_not_gather(
    web: Web, template: dict[str, Any]
) -> None:
    """An inventory from another agent version, or with facts that could not be gathered, is
    shown for what it holds: each missing part says why, and the page never fails."""
    now = web.clock()
    doc = host_template(template)
    inventory = doc["inventory"]
    inventory["tpm"] = {"unavailable": "tpm2-pytss is not installed"}
    inventory["hardware"]["disks"] = {"unavailable": "/sys/block is not readable"}
    inventory["hardware"]["cpu"] = "not a mapping"
    inventory["disk"] = ["not", "a", "mapping"]
    inventory["backups"]["sources"] = [
        {"source": {"name": "pg-wal", "kind": "postgres", "rpo_minutes": 5},
         "reading": {"unavailable": "psql: connection refused"}},
        {"source": {"name": "restic-nas", "kind": "restic", "site": "dc2"},
         "reading": {"newest": "2026-01-01T00:00:00Z", "age_seconds": 600.0,
                     "detail": {"snapshot_count": 3}}},
    ]  # fmt: skip
    del inventory["logs"]
    del inventory["wipe"]
    host_id = store_host(web.store, enrolled(web.store, "agent-old", now), doc, "lis-app-03", now)
    browser = web.browser()
    page = browser.get(f"/hosts/{quote(host_id)}")
    assert page.status_code == 200, page.text
    text = page_text(page)
    assert "未能采集：tpm2-pytss is not installed" in text
    assert "未能采集：/sys/block is not readable" in text
    assert "格式不符（disk）" in text
    assert "报告中没有此项（logs）" in text
    assert "报告中没有此项（wipe）" in text
    backups = page.text.split('id="backups"', 1)[1].split("</section>", 1)[0]
    assert "psql: connection refused" in html.unescape(backups)
    assert "10 分钟" in page_text(httpx.Response(200, text=backups))  # 600 s old, RPO 15 min
    assert "st-pass" in backups  # within its RPO
    # A search reads every host's disk serials: a disk list that is not a list is no match.
    assert host_names(browser.get("/hosts", params={"q": "LIS-app"})) == ["lis-app-03"]
    assert host_names(browser.get("/hosts", params={"q": "sys/block"})) == []


def test_chinese_by_default_english_by_the_switch(web: Web, template: dict[str, Any]) -> None:
    now = web.clock()
    store_host(
        web.store, enrolled(web.store, "agent-l", now), host_template(template), "his-app-02", now
    )
    browser = web.browser()
    zh = browser.get("/hosts")
    assert 'lang="zh-CN"' in zh.text
    assert "主机" in page_text(zh)
    token = re.search(r'name="csrf" value="([^"]+)"', zh.text)
    assert token is not None
    switched = browser.post(
        "/ui/locale", data={"csrf": token.group(1), "locale": "en", "next": "/hosts"}
    )
    assert (switched.status_code, switched.headers["location"]) == (303, "/hosts")
    for path in ("/", "/hosts"):
        en = browser.get(path)
        assert 'lang="en"' in en.text
        assert "合规总览" not in en.text
        assert "主机" not in page_text(en)
    overview = page_text(browser.get("/"))
    assert "Compliance overview" in overview
    assert "clause heat map" in overview
    host = browser.get(links(browser.get("/hosts"), "/hosts/sha256")[0])
    assert "Disks and encryption" in page_text(host)
