"""`net.waf` against the truth, on the lab built for real (the session's `lab`): the clean lab
(ModSecurity + CRS blocking in front of the portal), the WAF switched to detection only
(`waf-detection-only`), and no WAF with an application that filters a few patterns itself
(`app-filter`). The truth comes from this test's own requests — curl from the internet zone's
namespace, with attack strings of its own, each beside a benign twin — not from medsec's
probes: an attack class is blocked by a WAF when the attack is refused by another responder
(Server header) than the one answering its twin. medsec's verdict must equal it: pass when
every class is blocked so, fail otherwise, naming at least the classes curl saw get through.
Needs root and network namespaces (skips with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml

from checks.model import Status
from checks.net import network_registry
from checks.runner import evaluate
from collector.lab import Lab
from collector.lab import topology as t
from collector.scan.runner import scan
from collector.scan.zones import Zones, load_zones
from tests.collector.lab_zones import write_lab_zones

pytestmark = pytest.mark.root
CONFINE = ("198.18.0.0/15",)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0"

# (class, curl arguments of the attack, of its benign twin): strings other than medsec's.
TRUTH: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("sqli", ("--data-urlencode", "user=x' OR 1=1 -- "), ("--data-urlencode", "user=x")),
    ("sqli", ("-G", "--data-urlencode", "n=2 UNION ALL SELECT username, password FROM admin"),
     ("-G", "--data-urlencode", "n=2")),
    ("xss", ("-G", "--data-urlencode", "s=<svg/onload=alert(document.cookie)>"),
     ("-G", "--data-urlencode", "s=svg")),
    ("xss", ("--data-urlencode", "msg=<script>document.location='//x'</script>"),
     ("--data-urlencode", "msg=hi")),
    ("traversal", ("-G", "--data-urlencode", "page=../../../../../etc/shadow"),
     ("-G", "--data-urlencode", "page=index")),
    ("cmdi", ("--data-urlencode", "ip=198.18.0.8;cat /etc/passwd"),
     ("--data-urlencode", "ip=198.18.0.8")),
    ("cmdi", ("-G", "--data-urlencode", "cmd=|/bin/cat /etc/passwd"),
     ("-G", "--data-urlencode", "cmd=date")),
    ("scanner", ("-A", "sqlmap/1.7.2#stable (https://sqlmap.org)"), ("-A", BROWSER)),
    ("protocol", ("-X", "GET", "--data", "a=b"), ("-X", "POST", "--data", "a=b")),
)  # fmt: skip


def _curl(lab: Lab, args: tuple[str, ...]) -> tuple[int, str]:
    """(status, Server header) of one request to the portal from the internet zone."""
    done = subprocess.run(
        lab.command(
            "internet",
            "curl", "-s", "-o", "/dev/null", "--max-time", "5",
            "-H", "Host: portal.hospital.lab", "-A", BROWSER,
            "-w", "%{http_code} %header{server}", *args,
            f"http://{t.PORTAL[0]}:{t.PORTAL[1]}/",
        ),
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )  # fmt: skip
    status, _, server = done.stdout.partition(" ")
    return int(status or 0), server.strip()


def truth(lab: Lab) -> set[str]:
    """The attack classes curl saw get through (not refused by a responder of their own)."""
    through = set()
    for kind, attack, benign in TRUTH:
        (status, server), (twin_status, twin_server) = _curl(lab, attack), _curl(lab, benign)
        assert twin_status == 200, (kind, benign, twin_status)
        if not (status >= 400 and server != twin_server):
            through.add(kind)
    return through


@pytest.fixture(scope="module")
def zones(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Zones:
    # The WAF does not depend on the port set: the listed ports keep each scan to seconds.
    path: Path = write_lab_zones(lab, tmp_path_factory.mktemp("waf-zones"))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["scan"]["ports"] = "listed"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_zones(path, confine=CONFINE)


@pytest.mark.parametrize("fault", [None, t.FAULT_WAF_DETECTION_ONLY, t.FAULT_APP_FILTER])
def test_waf_verdict_equals_the_truth(lab: Lab, zones: Zones, fault: str | None) -> None:
    if fault:
        lab.fault(fault, True)
    try:
        through = truth(lab)
        facts = asyncio.run(scan(zones, confine=CONFINE))
    finally:
        if fault:
            lab.fault(fault, False)
    [result] = [
        r
        for r in evaluate(network_registry(), facts)
        if r.check_id == "net.waf" and r.target == "portal"
    ]
    assert result.status is (Status.FAIL if through else Status.PASS), (through, result.message)
    assert through <= set(result.evidence.get("classes_through", [])), result.message  # type: ignore[arg-type]
    if fault is None:
        assert result.evidence["answered_blocks"] == [t.WAF_SERVER]
    if fault == t.FAULT_APP_FILTER:
        # The application's own refusals (`' OR`, `<script`, `../`) do not make it a WAF.
        assert {"sqli", "xss", "cmdi"} <= through
