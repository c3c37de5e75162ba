"""The dashboard's network, scans, snapshots and report pages against a real collector: uvicorn
over TLS on loopback serving `create_app` with the dashboard mounted, on SQLite and on PostgreSQL,
driven by httpx as a browser would be (cookies kept, redirects looked at one by one).

The store holds what a real collector stores: a zones scan's report built by the scanner's own
`results_to_report` from recorded network facts (the lab with the his database's tcp/1433 open
from the office: a policy violation) evaluated by the real network checks, and an SNMP inventory
built by `inventory_report` from recorded device facts. Scans started from the page run the real
scanner process; the scanner is confined (MEDSEC_SCAN_CONFINE) to a loopback range the zones file
lies outside of, so it refuses before sending anything and the scan ends quickly as failed.
"""

from __future__ import annotations

import html
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import openpyxl
import pytest
import uvicorn
from starlette.routing import NoMatchFound

from checks.catalog import builtin_catalogs
from checks.device import device_registry
from checks.facts.devices import DeviceFacts
from checks.net import network_registry
from checks.runner import evaluate
from collector.api import create_app
from collector.compliance.snapshot_verify import verify_snapshot
from collector.inventory_cli import inventory_report, store_inventory
from collector.models import Role, ScanState
from collector.scan.cli import results_to_report
from collector.scans import ScanLauncher, store_scan_report
from collector.settings import CollectorSettings, ScanSettings, SnapshotSettings, TlsSettings
from collector.store import Store
from collector.tls import uvicorn_config
from collector.web import mount
from collector.web.context import WebContext
from tests.checks import cases_device
from tests.checks.cases_net import DB_LEAK
from tests.collector.fixtures_api import Clock, Server, TlsFiles, free_port, make_server_tls

PASSWORD = "correct horse battery staple"  # noqa: S105 — a test user's password
ZONES = """\
zones:
  - {name: internet, cidrs: [127.0.10.0/27], internet: true, vantage: {kind: local}}
  - {name: dmz, cidrs: [127.0.11.0/27], vantage: {kind: local}}
  - {name: his, cidrs: [127.0.12.0/27], critical: true, vantage: {kind: local}}
  - {name: office, cidrs: [127.0.13.0/27], users: true, vantage: {kind: local}}
policy:
  default: deny
  allow:
    - {from: internet, to: dmz, ports: [tcp/80, tcp/443]}
    - {from: office, to: dmz, ports: [tcp/80, tcp/443]}
    - {from: dmz, to: his, ports: [tcp/5432, tcp/8443]}
"""
SCRIPT_NAME = "<script>alert('sw')</script>"
"""A device's sysName: shown as text, never run."""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def _confined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scan started here is refused by the scanner before it sends anything: the zones
    file's loopback ranges lie outside this confinement."""
    monkeypatch.setenv("MEDSEC_SCAN_CONFINE", "127.0.200.0/24")


def start_web(store: Store, tls: TlsFiles, zones: Path) -> Server:
    """The collector with its dashboard, as `medsec serve` runs it; the zones file is listed in
    the settings as `hospital`. Until `create_app` mounts the dashboard itself, it is mounted
    here as create_app is asked to (`collector.web.mount`)."""
    clock = Clock()
    settings = CollectorSettings(
        tls=TlsSettings(cert_file=str(tls.cert), key_file=str(tls.key)),
        database="sqlite:///unused-by-the-app.db",
        listen=f"127.0.0.1:{free_port()}",
        scans=ScanSettings(zones={"hospital": str(zones)}),
        snapshots=SnapshotSettings(
            dir=str(zones.parent / f"snapshots-{uuid.uuid4().hex[:8]}"),
            key_file=str(zones.parent / "snapshot.key"),
        ),
    )
    app = create_app(settings, store, clock=clock)
    try:
        app.url_path_for("web_login")
    except NoMatchFound:
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
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return Server(f"https://127.0.0.1:{settings.port}", store, clock, settings, tls, server, thread)


def store_network(store: Store, zones: Path, clock: Clock) -> None:
    """A zones scan of `zones` and an SNMP inventory, stored as the scanner and `medsec
    inventory snmp --store` store them."""
    catalogs = builtin_catalogs()
    results = evaluate(network_registry(), DB_LEAK)
    scan = results_to_report(
        DB_LEAK, results, catalogs, zones_file=str(zones), scanner="collector-01", now=clock()
    )
    store_scan_report(store, json.dumps(scan).encode("utf-8"), clock())
    router = replace(
        cases_device.ROUTER_NS,
        address="198.18.4.2",
        classification=cases_device.ROUTER,
        sys_name=SCRIPT_NAME,
        sys_object_id="1.3.6.1.4.1.9.1.1",
    )
    devices = DeviceFacts(
        (cases_device.ROUTER_NS, router),
        cases_device.BORDERS,
        targets_file="/etc/medsec/snmp-targets.yaml",
    )
    inventory = inventory_report(
        devices,
        evaluate(device_registry(), devices),
        catalogs,
        zones_file=None,
        collector="collector-01",
        now=clock(),
    )
    store_inventory(store, inventory, clock())


@pytest.fixture
def web(store: Store, tls: TlsFiles, tmp_path: Path) -> Iterator[Server]:
    zones = tmp_path / "zones.yaml"
    zones.write_text(ZONES, encoding="utf-8")
    server = start_web(store, tls, zones)
    store_network(store, zones, server.clock)
    try:
        yield server
    finally:
        server.stop()


def browser(server: Server, role: Role, locale: str = "en") -> httpx.Client:
    """A client signed in to the dashboard as a new user of `role` (English unless asked)."""
    name = f"{role.value}-{uuid.uuid4().hex[:6]}"
    server.store.add_user(name, role, server.clock())
    server.store.set_password(name, PASSWORD)
    server.store.set_locale(name, locale)
    client = server.client()
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text
    done = client.post("/login", data={"csrf": token.group(1), "name": name, "password": PASSWORD})
    assert done.status_code == 303, done.text
    return client


def csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def cell(page: str, pair: str) -> tuple[str, str]:
    """(verdict class, text) of the matrix cell of `pair` (`office->his`)."""
    found = re.search(
        rf'<td class="mx (mx-[a-z]+)" data-pair="{re.escape(pair)}"[^>]*>(.*?)</td>',
        page,
        re.S,
    )
    assert found is not None, pair
    return found.group(1), " ".join(re.sub(r"<[^>]+>", " ", found.group(2)).split())


def rows(page: str, attribute: str) -> dict[str, str]:
    """Table rows carrying `data-<attribute>`, by its value, as their text."""
    found = {}
    for match in re.finditer(rf'<tr [^>]*\bdata-{attribute}="([^"]*)"[^>]*>(.*?)</tr>', page, re.S):
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(2))).split())
        found[html.unescape(match.group(1))] = text
    return found


# --------------------------------------------------------------------------- the network page


def test_the_matrix_shows_the_policy_verdict_of_every_zone_pair(web: Server) -> None:
    page = browser(web, Role.AUDITOR).get("/network")
    assert page.status_code == 200
    text = page.text
    assert "<h3>hospital" in text  # the zones file by its name in the settings
    # The office reaches the his database on tcp/1433, which the policy does not allow.
    assert cell(text, "office->his") == ("mx-violation", "violation tcp/1433")
    # Open ports the policy allows, and pairs with nothing open.
    assert cell(text, "internet->dmz") == ("mx-allowed", "allowed tcp/443, tcp/80")
    assert cell(text, "dmz->his") == ("mx-allowed", "allowed tcp/5432, tcp/8443")
    assert cell(text, "internet->his") == ("mx-filtered", "filtered")
    assert cell(text, "his->internet") == ("mx-filtered", "filtered")
    cells = re.findall(r'data-verdict="([a-z]+)"', text)
    assert len(cells) == 12  # four zones, every ordered pair
    assert cells.count("violation") == 1
    # Coloured as such: the stylesheet gives each verdict its own background.
    assert re.search(r"\.mx-violation \{ background: var\(--fail\)", text)
    assert re.search(r"\.mx-allowed \{ background: var\(--pass\)", text)
    # Past `reports.scan_stale_after_minutes` the scan is marked stale, as the reports count it.
    assert 'class="badge stale"' not in text
    web.clock.advance(timedelta(minutes=web.settings.reports.scan_stale_after_minutes + 1))
    later = browser(web, Role.AUDITOR).get("/network")  # the earlier login has ended by then
    assert 'class="badge stale"' in later.text


def test_waf_ztna_and_devices_by_role(web: Server) -> None:
    page = browser(web, Role.AUDITOR).get("/network")
    text = page.text
    waf = rows(text, "target")
    assert waf["portal"].startswith("portal dmz pass portal: ordinary request 200 OK")
    assert "blocked" in waf["portal"]
    assert waf["booking"].startswith("booking dmz not applicable")
    assert waf["his-web"].startswith("his-web pass his-web: dark from every user")
    assert waf["coverage"].startswith("coverage 100.0% pass ZTNA coverage 100%")
    # Devices grouped by role, firewall first; the router's sysName is text, not markup.
    roles = re.findall(r'<h3 data-role="([a-z]+)">', text)
    assert roles == ["firewall", "router"]
    devices = rows(text, "device")
    assert devices["198.18.4.1"].startswith("198.18.4.1 border-fw-01 SonicWall")
    assert devices["198.18.4.1"].endswith("0.90 pass")
    assert devices["198.18.4.2"].startswith(f"198.18.4.2 {SCRIPT_NAME} Cisco")
    assert SCRIPT_NAME not in text
    assert "&lt;script&gt;alert(&#39;sw&#39;)&lt;/script&gt;" in text


def test_the_page_speaks_chinese_by_default(web: Server) -> None:
    text = browser(web, Role.AUDITOR, locale="zh").get("/network").text
    assert cell(text, "office->his") == ("mx-violation", "违反策略 tcp/1433")
    assert "防火墙" in text
    assert "ZTNA 覆盖率 100%" in text


# --------------------------------------------------------------------------- scans


def test_an_auditor_has_no_start_button_and_is_refused_the_post(web: Server) -> None:
    client = browser(web, Role.AUDITOR)
    page = client.get("/network")
    assert 'id="start-scan"' not in page.text
    assert 'action="/scans"' not in page.text
    refused = client.post("/scans", data={"csrf": csrf(page), "zones": "hospital"})
    assert refused.status_code == 403
    assert "This needs the operator role." in refused.text
    assert web.store.list_scans(10, 0, web.clock()).total == 0
    # Signed out, the POST is refused outright; a GET goes to the sign-in form.
    outsider = web.client()
    assert outsider.post("/scans", data={"zones": "hospital"}).status_code == 401
    redirected = outsider.get("/network")
    assert (redirected.status_code, redirected.headers["location"]) == (
        303,
        "/login?next=/network",
    )


def test_an_operator_starts_a_scan_and_watches_it(web: Server) -> None:
    client = browser(web, Role.OPERATOR)
    page = client.get("/network")
    assert 'id="start-scan"' in page.text
    assert '<option value="hospital">hospital</option>' in page.text
    token = csrf(page)
    # Bad values: the form again with the problem, nothing started.
    unknown = client.post("/scans", data={"csrf": token, "zones": "/etc/passwd"})
    assert unknown.status_code == 400
    assert 'role="alert">the settings name no zones file' in unknown.text
    assert 'id="start-scan"' in unknown.text
    assert client.post("/scans", data={"zones": "hospital"}).status_code == 403  # no token
    assert web.store.list_scans(10, 0, web.clock()).total == 0

    started = client.post("/scans", data={"csrf": token, "zones": "hospital"})
    assert started.status_code == 303
    location = started.headers["location"]
    scan_id = location.removeprefix("/scans/")
    run = web.store.get_scan(scan_id, web.clock())
    assert run is not None
    assert run.requested_by.startswith("operator-")
    assert run.zones == "hospital"
    # Watched: the page reloads itself while the scan runs, and stops once it has ended.
    deadline = time.monotonic() + 30
    while True:
        watched = client.get(location)
        assert watched.status_code == 200
        state = re.search(r'data-state="([a-z]+)"', watched.text)
        assert state is not None
        refreshes = '<meta http-equiv="refresh" content="3">' in watched.text
        if state.group(1) != ScanState.RUNNING.value:
            break
        assert refreshes
        assert time.monotonic() < deadline, "the scan never ended"
        time.sleep(0.3)
    assert state.group(1) == ScanState.FAILED.value
    assert not refreshes
    assert "outside the confinement 127.0.200.0/24: refused" in html.unescape(watched.text)
    listed = rows(client.get("/network").text, "scan")
    assert "hospital" in listed[scan_id]
    assert "failed" in listed[scan_id]


def test_unknown_scans_are_a_404_page(web: Server) -> None:
    client = browser(web, Role.AUDITOR)
    for scan_id in (str(uuid.uuid4()), "not-a-scan", "<b>x"):
        page = client.get(f"/scans/{scan_id}")
        assert page.status_code == 404, scan_id
        assert page.headers["content-type"].startswith("text/html")
        assert "There is no scan" in page.text
        assert "<b>x" not in page.text


# --------------------------------------------------------------------------- snapshots, reports


# Making a snapshot renders both standards' PDFs (5-30 s on a busy 2-core machine): made on
# SQLite only. The store's snapshot records are tested on both backends by
# tests/compliance/test_compliance_api.py; what this page adds does not depend on the database.
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_auditor_makes_a_snapshot_and_downloads_it_intact(web: Server) -> None:
    client = browser(web, Role.AUDITOR)
    page = client.get("/snapshots")
    assert page.status_code == 200
    assert "No snapshot has been made." in page.text
    token = csrf(page)
    # Bad values: the form again with the problem and what was typed, nothing made.
    for fields, said in (
        ({"as_of": "yesterday"}, "is not a time"),
        ({"host": "no-such-host"}, "no host matches"),
        ({"site": "x" * 301}, "site: longer than 300 characters"),
    ):
        refused = client.post("/snapshots", data={"csrf": token, **fields})
        assert refused.status_code == 400, fields
        assert said in html.unescape(refused.text), fields
        assert 'id="create-snapshot"' in refused.text
    assert client.post("/snapshots", data={}).status_code == 403  # no token
    assert web.store.list_snapshots() == []

    made = client.post("/snapshots", data={"csrf": token})
    assert made.status_code == 303
    snapshot_id = made.headers["location"].removeprefix("/snapshots?made=")
    listed = rows(client.get(made.headers["location"]).text, "snapshot")
    assert list(listed) == [snapshot_id]
    kept = web.store.get_snapshot(snapshot_id)
    download = client.get(f"/snapshots/{snapshot_id}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert kept.file_name in download.headers["content-disposition"]
    verdict = verify_snapshot(download.content)
    assert verdict.intact, verdict.findings
    assert verdict.snapshot_id == snapshot_id
    assert verdict.scans >= 1  # the stored zones scan and inventory are in it

    missing = client.get(f"/snapshots/{uuid.uuid4()}/download")
    assert missing.status_code == 404
    assert "There is no snapshot" in missing.text
    assert client.get("/snapshots/x/download").status_code == 404


def test_reports_download_in_each_format(web: Server) -> None:
    client = browser(web, Role.AUDITOR)
    xlsx = client.get("/reports/gbt22239-2019-l3.xlsx")
    assert xlsx.status_code == 200
    assert xlsx.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert re.search(r'attachment; filename="medsec-gbt22239-2019-l3-\d{8}T\d{6}Z\.xlsx"',
                     xlsx.headers["content-disposition"])  # fmt: skip
    workbook = openpyxl.load_workbook(io.BytesIO(xlsx.content), read_only=True)
    assert len(workbook.sheetnames) > 2
    workbook.close()

    document = client.get("/reports/mnds.json")
    assert document.status_code == 200
    assert document.headers["content-type"] == "application/json"
    parsed = json.loads(document.content)
    assert (parsed["schema"], parsed["standard"]) == ("medsec.compliance/v1", "mnds")
    assert parsed["clauses"]

    for name in ("mnds.docx", "iso27001.pdf", "mnds", "gbt22239-2019-l3.xlsx.exe"):
        missing = client.get(f"/reports/{name}")
        assert missing.status_code == 404, name
        assert "There is no report" in html.unescape(missing.text), name


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # WeasyPrint: seconds a PDF
def test_the_pdf_report_is_a_pdf(web: Server) -> None:
    pdf = browser(web, Role.AUDITOR).get("/reports/mnds.pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    assert pdf.content.rstrip().endswith(b"%%EOF")
