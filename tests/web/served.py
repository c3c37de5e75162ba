"""A real collector for the browser tests, set up as an operator sets one up: `medsec init`, users
with dashboard passwords (`medsec users add`, `medsec users passwd` reading standard input; these
administration commands run in the test's process, through the CLI's own `main`), `medsec serve`
in a process of its own; filled by a real agent run pushing to it (`medsec-agent
enroll` then `run`), a fleet of hosts whose reports are made from that run's report and pushed
over HTTPS with an enrolled agent's signature, and — where the lab can be built — a scan of the
lab stored by `medsec scan --store` and an SNMP inventory of the lab's router stored by `medsec
inventory snmp --store` from inside the lab's management zone.

Passwords are made per run and reach the commands on standard input only, never argv.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import uuid
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from checks import envelope as env
from collector.lab import Lab
from tests.collector.fixtures_api import make_report
from tests.collector.lab_zones import write_lab_zones

VENV_BIN = Path(sys.executable).parent
MEDSEC = str(VENV_BIN / "medsec")
AGENT = str(VENV_BIN / "medsec-agent")
CONFINE = "198.18.0.0/15"
LOCKOUT_MINUTES = 7
"""Not the default (15): the lockout test proves the configured time is the one applied."""
SCRIPT_HOST = "<script>window.__medsec_pwned=1</script>pacs-03"
SCRIPT_MESSAGE = '<script>window.__medsec_pwned=2</script><b>bold</b> & "quoted"'
LONG_HOST = "radiology-archive-gateway-with-an-unusually-long-hostname-01.dc2.hospital.example.cn"
FLEET: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("his-db-01", "dc1", {}),
    ("his-db-02", "dc1", {"disk.cipher_strength": "pass", "disk.encrypted_mounts": "pass"}),
    ("his-app-01", "dc1", {}),
    ("his-app-02", "dc1", {"backup.rpo": "pass"}),
    ("emr-01", "dc1", {"host.firewall_default_deny": "pass"}),
    ("emr-02", "dc2", {}),
    ("pacs-01", "dc2", {"disk.cipher_strength": "pass"}),
    ("pacs-02", "dc2", {}),
    ("lis-01", "dc2", {"log.retention": "pass"}),
    ("ris-01", "dc2", {}),
    (LONG_HOST, "dc2", {}),
    (SCRIPT_HOST, "dc2", {}),
)
STALE = ("old-imaging-01",)
"""Hosts whose newest report is three hours old: stale on every clause."""
SILENT = ("ward-kiosk-07",)
"""Agents enrolled that never reported: missing on the overview."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*argv: str, stdin: str | None = None, timeout: float = 180, **kw: Any) -> str:
    """Run a command; its standard output (it must succeed)."""
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False, **kw
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} … exit {done.returncode}: {done.stderr[-2000:]}")
    return str(done.stdout)


def inline(*argv: str, stdin: str | None = None) -> str:
    """`medsec ARGV` in this process; its standard output (it must succeed). `stdin` is what the
    command reads as standard input (not a terminal)."""
    from collector.cli import main

    out, err = io.StringIO(), io.StringIO()
    mask = os.umask(0o022)
    os.umask(mask)
    given = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8")
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
    finally:
        sys.stdin = given
        os.umask(mask)  # main() narrows it for the collector's files
    if code != 0:
        raise RuntimeError(f"medsec {' '.join(argv[:2])} … exit {code}: {err.getvalue()[-2000:]}")
    return out.getvalue()


@dataclass
class User:
    name: str
    role: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)


@dataclass
class Collector:
    folder: Path
    config: Path
    url: str
    ca: Path
    users: dict[str, User]
    process: subprocess.Popen[bytes] | None = None
    lab_zones: Path | None = None
    """The lab's zones file the settings list as `lab`, when the lab could be built."""
    hosts: list[str] = field(default_factory=list)
    """Hostnames of every host stored, the agent's own first."""
    api_token: str = field(default="", repr=False)
    """An auditor's API token, for checks made beside the browser."""

    @property
    def db(self) -> str:
        settings = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        return str(settings["database"])

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=60)

    def medsec(self, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
        return run(MEDSEC, *args, "--config", str(self.config), stdin=stdin, timeout=timeout)

    def admin(self, *args: str, stdin: str | None = None) -> str:
        """A `medsec` administration command run in this process (`collector.cli.main`): the
        same command without an interpreter's start-up, a second each on a busy machine."""
        return inline(*args, "--config", str(self.config), stdin=stdin)

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        log = (self.folder / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [MEDSEC, "serve", "--config", str(self.config), "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        with self.client() as client:
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.folder / "serve.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"medsec serve did not start: {tail}")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def set_up(folder: Path, lab_zones: Path | None) -> Collector:
    """`medsec init`, the settings the tests need, and the users with their passwords."""
    inline("init", "--dir", str(folder / "c"))
    config = folder / "c" / "collector.yaml"
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["dashboard"]["lockout_minutes"] = LOCKOUT_MINUTES
    settings["dashboard"]["failure_delay_ms"] = 200
    if lab_zones is not None:
        settings["scans"]["zones"] = {"lab": str(lab_zones)}
        settings["scans"]["timeout_seconds"] = 300
    config.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
    port = free_port()
    collector = Collector(
        folder=folder,
        config=config,
        url=f"https://127.0.0.1:{port}",
        ca=folder / "c" / "tls" / "cert.pem",
        users={},
        lab_zones=lab_zones,
    )
    for name, role in (
        ("audit-li", "auditor"),
        ("ops-wang", "operator"),
        ("audit-zhao", "auditor"),  # locked out by the lockout test
        ("viewer-chen", "auditor"),  # switches languages for the screenshots
        ("audit-sun", "auditor"),  # signs out
    ):
        user = collector.users[name] = User(name, role)
        collector.admin("users", "add", name, "--role", role)
        collector.admin("users", "passwd", name, stdin=user.password + "\n")
    added = collector.admin("users", "add", "api-reader", "--role", "auditor")
    collector.api_token = added.strip().splitlines()[-1]
    return collector


# --------------------------------------------------------------------------- evidence


def run_real_agent(collector: Collector) -> str:
    """This machine's agent enrolled with the collector and run once, pushing its report; the
    hostname it reported."""
    folder = collector.folder / "agent"
    folder.mkdir(mode=0o700)
    config = folder / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": "dc1",
                "collector": {
                    "url": collector.url,
                    "ca_file": str(collector.ca),
                    "credential_file": str(folder / "agent.cred"),
                },
                "spool_dir": str(folder / "spool"),
            }
        ),
        encoding="utf-8",
    )
    name = f"agent-{socket.gethostname()}"
    token = collector.admin("agents", "enroll", name).strip().splitlines()[-1]
    run(
        AGENT,
        "enroll",
        "--config",
        str(config),
        "--collector",
        collector.url,
        "--token",
        "-",
        "--ca-file",
        str(collector.ca),
        "--name",
        name,
        stdin=token + "\n",
    )
    done = subprocess.run(
        [AGENT, "run", "--config", str(config), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if done.returncode not in (0, 1):  # 1: findings, as on any machine without a TPM
        raise RuntimeError(f"medsec-agent run: exit {done.returncode}: {done.stderr[-2000:]}")
    hostname = str(json.loads(done.stdout)["host"]["hostname"])
    with collector.client(collector.api_token) as client:
        listed = client.get("/api/v1/hosts").json()["items"]
    if hostname not in {h["hostname"] for h in listed}:
        raise RuntimeError(f"medsec-agent run did not reach the collector: {done.stderr[-2000:]}")
    return hostname


@dataclass(frozen=True)
class Fleet:
    name: str
    token: str
    key: str


def enrol_fleet(collector: Collector, name: str) -> Fleet:
    """An agent enrolled over the API with a token from `medsec agents enroll`."""
    token = collector.admin("agents", "enroll", name).strip().splitlines()[-1]
    key = env.generate_private_key("ed25519")
    with collector.client() as client:
        response = client.post(
            "/api/v1/enroll",
            json={
                "token": token,
                "name": name,
                "alg": "ed25519",
                "public_key": env.public_key_pem(key, "ed25519"),
            },
        )
    response.raise_for_status()
    return Fleet(name, response.json()["api_token"], key)


def push_fleet(collector: Collector, template: dict[str, Any]) -> list[str]:
    """Reports of the fleet's hosts, made from the real run's report, sealed and pushed."""
    fleet = enrol_fleet(collector, "fleet-dc")
    now = datetime.now(UTC)
    pushed = []
    with collector.client(fleet.token) as client:
        for host, site, statuses in FLEET + tuple((h, "dc1", {}) for h in STALE):
            doc = json.loads(json.dumps(template))
            doc["inventory"]["site"] = site
            if host == SCRIPT_HOST:
                for result in doc["results"]:
                    result["message"] = SCRIPT_MESSAGE
                    result["message_zh"] = SCRIPT_MESSAGE
            when = now - timedelta(hours=3) if host in STALE else now
            body = make_report(doc, host=host, generated_at=when, statuses=statuses)
            response = client.post(
                "/api/v1/reports",
                content=env.seal(body, fleet.name, fleet.key, "ed25519"),
                headers={"Content-Type": "application/json"},
            )
            if response.status_code != 201:
                raise RuntimeError(f"report of {host!r}: HTTP {response.status_code}")
            pushed.append(host)
    for name in SILENT:
        enrol_fleet(collector, name)
    return pushed


def lab_zones_file(lab: Lab, folder: Path) -> Path:
    """The lab's zones file (tests/collector/lab_zones.py) over its listed ports: seconds, not
    the top 1,000 ports' quarter minute."""
    path = write_lab_zones(lab, folder)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["scan"]["ports"] = "listed"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def scan_lab(collector: Collector) -> None:
    """`medsec scan --store`: the lab's zones scanned, the results stored by the collector."""
    assert collector.lab_zones is not None
    collector.medsec(
        "scan", "--zones", str(collector.lab_zones), "--format", "json", "--store",
        "--confine", CONFINE, timeout=300,
    )  # fmt: skip


def inventory_lab_router(collector: Collector, lab: Lab) -> None:
    """The lab's router over SNMPv3 authPriv from the management zone, stored."""
    secrets_ = json.loads(lab.snmp_file.read_text(encoding="utf-8"))
    folder = collector.folder / "snmp"
    folder.mkdir(mode=0o700)
    for name, value in (
        ("auth.key", secrets_["v3"]["auth_password"]),
        ("priv.key", secrets_["v3"]["priv_password"]),
    ):
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
    targets = folder / "targets.yaml"
    targets.write_text(
        yaml.safe_dump(
            {
                "defaults": {"timeout": 1, "retries": 1},
                "devices": [
                    {
                        "address": secrets_["address"],
                        "port": secrets_["port"],
                        "version": 3,
                        "user": secrets_["v3"]["user"],
                        "auth": {
                            "protocol": secrets_["v3"]["auth_protocol"].lower(),
                            "key_file": "auth.key",
                        },
                        "priv": {
                            "protocol": secrets_["v3"]["priv_protocol"].lower(),
                            "key_file": "priv.key",
                        },
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    targets.chmod(0o600)
    run(
        "ip", "netns", "exec", lab.netns("mgmt"), MEDSEC, "inventory", "snmp",
        "--targets", str(targets), "--zones", str(lab.zones_file), "--format", "json",
        "--store", "--config", str(collector.config),
    )  # fmt: skip


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
