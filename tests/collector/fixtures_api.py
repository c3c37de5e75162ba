"""Fixtures for the collector's API tests: a real uvicorn server on 127.0.0.1 (free port) serving
`create_app` over TLS with a trustme certificate, exactly as `medsec serve` configures it
(`collector.tls.uvicorn_config`), on the `store` fixture's SQLite or PostgreSQL database; httpx
clients verifying against the trustme CA; reports built from a real agent run and sealed with
`checks.envelope`.

Plain functions, not fixtures: each test module wraps the few it needs in its own fixtures (an
imported fixture would shadow its parameters, which linters rightly flag).
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trustme
import uvicorn

from checks import envelope as env
from collector.api import create_app
from collector.models import Role
from collector.settings import (
    CollectorSettings,
    LimitSettings,
    ProbeSettings,
    ScanSettings,
    SnapshotSettings,
    TlsSettings,
)
from collector.store import Store
from collector.tls import uvicorn_config

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


@dataclass
class Clock:
    """The app's "now", which a test may move."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path


def make_server_tls(folder: Path) -> TlsFiles:
    """A trustme CA and a server certificate for 127.0.0.1 and localhost (key file 0600)."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(folder / "cert.pem", folder / "key.pem", folder / "ca.pem")
    leaf.cert_chain_pems[0].write_to_path(str(files.cert))
    leaf.private_key_pem.write_to_path(str(files.key))
    files.key.chmod(0o600)
    ca.cert_pem.write_to_path(str(files.ca))
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    store: Store
    clock: Clock
    settings: CollectorSettings
    tls: TlsFiles
    uvicorn: uvicorn.Server
    thread: threading.Thread
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = ssl.create_default_context(cafile=str(self.tls.ca))
        client = httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def user(self, role: Role, name: str | None = None) -> str:
        """A new user's API token."""
        _, token = self.store.add_user(
            name or f"{role.value}-{uuid.uuid4().hex[:8]}", role, self.clock()
        )
        return token

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.uvicorn.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def start_server(
    store: Store,
    tls: TlsFiles,
    *,
    clock: Clock | None = None,
    scans: ScanSettings | None = None,
    snapshots: SnapshotSettings | None = None,
    probes: ProbeSettings | None = None,
    **limits: int,
) -> Server:
    clock = clock or Clock()
    settings = CollectorSettings(
        tls=TlsSettings(cert_file=str(tls.cert), key_file=str(tls.key)),
        database="sqlite:///unused-by-the-app.db",  # the app uses the store it is given
        listen=f"127.0.0.1:{free_port()}",
        limits=LimitSettings(**limits),
        scans=scans or ScanSettings(),
        probes=probes or ProbeSettings(),
        # Never the working folder: snapshots (and their key) go where the test says, by default
        # to a folder of their own beside the TLS files.
        snapshots=snapshots
        or SnapshotSettings(
            dir=str(tls.cert.parent / f"snapshots-{uuid.uuid4().hex[:8]}"),
            key_file=str(tls.cert.parent / "snapshot.key"),
        ),
    )
    app = create_app(settings, store, clock=clock)
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
    return Server(
        url=f"https://127.0.0.1:{settings.port}",
        store=store,
        clock=clock,
        settings=settings,
        tls=tls,
        uvicorn=server,
        thread=thread,
    )


@contextmanager
def serving(
    store: Store,
    tls: TlsFiles,
    *,
    scans: ScanSettings | None = None,
    snapshots: SnapshotSettings | None = None,
    **limits: int,
) -> Iterator[Server]:
    """The collector on `store`, stopped (clients closed first) when the block ends."""
    server = start_server(store, tls, scans=scans, snapshots=snapshots, **limits)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- agents and reports


def agent_report() -> dict[str, Any]:
    """A report exactly as the real agent renders it (`medsec-agent run --format json`)."""
    done = subprocess.run(
        [
            str(VENV_BIN / "medsec-agent"),
            "run",
            "--config",
            str(REPO / "examples" / "agent.yaml"),
            "--format",
            "json",
            "--no-push",
        ],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert done.returncode in (0, 1), done.stderr.decode(errors="replace")
    doc: dict[str, Any] = json.loads(done.stdout)
    assert doc["schema"] == "medsec.report/v1"
    assert doc["results"], "the agent produced no results"
    return doc


def make_report(
    template: dict[str, Any],
    *,
    host: str = "his-db-01",
    generated_at: datetime | None = None,
    report_id: str | None = None,
    statuses: dict[str, str] | None = None,
) -> bytes:
    """The template as another host's report: its own id, host identity and time."""
    doc = copy.deepcopy(template)
    doc["report_id"] = report_id or str(uuid.uuid4())
    doc["host"] = {"id": "sha256:" + uuid.uuid5(uuid.NAMESPACE_DNS, host).hex * 2, "hostname": host}
    moment = generated_at or datetime.now(UTC)
    doc["generated_at"] = (
        moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    for result in doc["results"]:
        if statuses and result["check_id"] in statuses:
            result["status"] = statuses[result["check_id"]]
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Creds:
    name: str
    token: str
    private_key: str
    alg: env.Alg

    def seal(self, report: bytes, *, as_agent: str | None = None) -> bytes:
        return env.seal(report, as_agent or self.name, self.private_key, self.alg)


def enrol(server: Server, name: str, alg: env.Alg = "ed25519") -> Creds:
    """Enrol an agent through the API with a token from the store, as `medsec agents enroll`."""
    mse = server.store.create_enrollment(name, timedelta(minutes=60), server.clock())
    key = env.generate_private_key(alg)
    response = server.client().post(
        "/api/v1/enroll",
        json={"token": mse, "name": name, "alg": alg, "public_key": env.public_key_pem(key, alg)},
    )
    assert response.status_code == 201, response.text
    return Creds(name, response.json()["api_token"], key, alg)
