"""`net.ztna_coverage` against the truth, on the lab built for real (the session's `lab`): the
clean lab (the gateway refuses every client without a valid certificate), `ztna-any-cert` (a
certificate from any CA is let through), `ztna-open-path` (`/api/` needs no certificate), and
both at once. The truth comes from this test's own requests — curl from the internet and
office namespaces, with a certificate from a CA openssl makes here, the lab CA's expired one,
and no certificate, on paths of its own (`/`, `/api/`, a random one, one with `..`) — not from
medsec's probes: a client without a valid certificate is let in when his-web's page comes back
to it. medsec's verdict must equal it (fail when anyone got in, pass otherwise), and the
credentials and kinds of path medsec saw get in must be the ones curl saw get in.
Needs root, network namespaces and openssl (skips with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from checks.model import Status
from checks.net import network_registry
from checks.net.ztna_attempts import Verdict, judge_all
from checks.runner import evaluate
from collector.lab import Lab
from collector.lab import topology as t
from collector.scan.runner import scan
from collector.scan.zones import Zones, load_zones
from tests.collector.lab_zones import write_lab_zones

pytestmark = pytest.mark.root
CONFINE = ("198.18.0.0/15",)
HOST = "ztna.hospital.lab"
HIS_PAGE = "Hospital information system"
"""In every page his-web serves: the critical system reached."""
KINDS = ("published", "api", "random", "dotdot")


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    assert tool is not None
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A client certificate and key from a CA openssl makes here (the gateway never saw it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("ztna-stranger")
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "client.key", folder / "client.csr", folder / "client.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2",
             "-subj", "/O=truth test/CN=truth test CA")  # fmt: skip
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr),
             "-subj", "/O=truth test/CN=stranger")  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(crt), "-days", "2")  # fmt: skip
    return crt, key


def _credentials(lab: Lab, stranger: tuple[Path, Path]) -> dict[str, tuple[str, ...]]:
    pki = lab.paths.pki
    return {
        "none": (),
        "untrusted": ("--cert", str(stranger[0]), "--key", str(stranger[1])),
        "expired": ("--cert", str(pki / "client-expired.crt"),
                    "--key", str(pki / "client-expired.key")),
    }  # fmt: skip


def _reached(lab: Lab, zone: str, path: str, credential: tuple[str, ...]) -> bool:
    """Whether his-web's page came back to one GET of `path` from `zone`."""
    address, port = t.GATEWAY
    done = subprocess.run(
        lab.command(
            zone,
            "curl", "-sk", "--path-as-is", "--max-time", "5",
            "--resolve", f"{HOST}:{port}:{address}", *credential,
            f"https://{HOST}:{port}{path}",
        ),
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, (zone, path, credential, done.returncode, done.stderr)
    return HIS_PAGE in done.stdout


def truth(lab: Lab, stranger: tuple[Path, Path]) -> set[tuple[str, str]]:
    """(credential, kind of path) pairs that reached his-web from the internet or office zone;
    the site's own client certificate must reach it on every path."""
    word = f"truth-{secrets.token_hex(3)}"
    paths = dict(zip(KINDS, ("/", "/api/", f"/{word}", f"/{word}/../api/"), strict=True))
    pki = lab.paths.pki
    held = ("--cert", str(pki / "client.crt"), "--key", str(pki / "client.key"))
    reached = set()
    for zone in ("internet", "office"):
        for kind, path in paths.items():
            assert _reached(lab, zone, path, held), (zone, path)
            for name, credential in _credentials(lab, stranger).items():
                if _reached(lab, zone, path, credential):
                    reached.add((name, kind))
    return reached


@pytest.fixture(scope="module")
def zones(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Zones:
    # The gateway does not depend on the port set: the listed ports keep each scan to seconds.
    path: Path = write_lab_zones(lab, tmp_path_factory.mktemp("ztna-zones"))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["scan"]["ports"] = "listed"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_zones(path, confine=CONFINE)


@pytest.mark.parametrize(
    "faults",
    [(), (t.FAULT_ZTNA_ANY_CERT,), (t.FAULT_ZTNA_OPEN_PATH,),
     (t.FAULT_ZTNA_ANY_CERT, t.FAULT_ZTNA_OPEN_PATH)],
    ids=["clean", "any-cert", "open-path", "both"],
)  # fmt: skip
def test_ztna_verdict_equals_the_truth(
    lab: Lab, zones: Zones, stranger: tuple[Path, Path], faults: tuple[str, ...]
) -> None:
    try:
        for fault in faults:
            lab.fault(fault, True)
        reached = truth(lab, stranger)
        facts = asyncio.run(scan(zones, confine=CONFINE))
    finally:
        for fault in faults:
            lab.fault(fault, False)
    [result] = [
        r
        for r in evaluate(network_registry(), facts)
        if r.check_id == "net.ztna_coverage" and r.target == "his-web"
    ]
    assert result.status is (Status.FAIL if reached else Status.PASS), (reached, result.message)
    # The same credentials and kinds of path got in for medsec as for curl.
    assert isinstance(facts.gateways, tuple), facts.gateways
    [gateway] = [g for g in facts.gateways if g.system == "his-web"]
    paths = list(dict.fromkeys(a.path for a in gateway.attempts))
    assert len(paths) == len(KINDS), paths
    kind_of = dict(zip(paths, KINDS, strict=True))
    judged = judge_all(gateway.attempts, gateway.gateway_url)
    assert {j.verdict for j in judged} <= {Verdict.REFUSED, Verdict.LET_IN}, result.message
    let_in = {(j.attempt.credential, kind_of[j.attempt.path]) for j in judged
              if j.verdict is Verdict.LET_IN}  # fmt: skip
    assert let_in == reached, result.message
    if not faults:
        assert len(judged) == 12
        assert "No required SSL certificate was sent" in result.message
    if t.FAULT_ZTNA_OPEN_PATH in faults:
        assert ("none", "api") in reached
        assert ("none", "dotdot") in reached
    if t.FAULT_ZTNA_ANY_CERT in faults:
        assert ("untrusted", "published") in reached
        assert ("expired", "published") not in reached  # nginx still checks the dates
