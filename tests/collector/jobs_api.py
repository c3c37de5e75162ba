"""Helpers for the probe API tests: the collector served as `fixtures_api.start_server` serves it,
with short probe leases; a probe enrolled through the API; a job result sealed as a probe seals
it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import uvicorn

from checks import envelope as env
from collector.api import create_app
from collector.settings import CollectorSettings, ProbeSettings, SnapshotSettings, TlsSettings
from collector.store import Store
from collector.tls import uvicorn_config
from tests.collector.fixtures_api import Clock, Creds, Server, TlsFiles, free_port


def start_probe_server(
    store: Store, tls: TlsFiles, *, lease_seconds: int = 2, max_claim: int = 8
) -> Server:
    """The collector on `store` over TLS, its probes' leases `lease_seconds` long."""
    clock = Clock()
    settings = CollectorSettings(
        tls=TlsSettings(cert_file=str(tls.cert), key_file=str(tls.key)),
        database="sqlite:///unused-by-the-app.db",  # the app uses the store it is given
        listen=f"127.0.0.1:{free_port()}",
        probes=ProbeSettings(lease_seconds=lease_seconds, max_claim=max_claim),
        snapshots=SnapshotSettings(
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


def enrol_probe(server: Server, name: str, zone: str | None, alg: env.Alg = "ed25519") -> Creds:
    """Enrol `name` through the API as `medsec agents enroll NAME --probe-zone ZONE` would (an
    ordinary agent when `zone` is None)."""
    token = server.store.create_enrollment(
        name, timedelta(minutes=60), server.clock(), probe_zone=zone
    )
    key = env.generate_private_key(alg)
    answer = server.client().post(
        "/api/v1/enroll",
        json={"token": token, "name": name, "alg": alg, "public_key": env.public_key_pem(key, alg)},
    )
    assert answer.status_code == 201, answer.text
    return Creds(name, answer.json()["api_token"], key, alg)


def result_envelope(
    creds: Creds,
    job_id: str,
    claim_id: str,
    *,
    status: str = "done",
    result: dict[str, Any] | None = None,
    error: str | None = None,
    as_agent: str | None = None,
    **extra: Any,
) -> bytes:
    """A `medsec.job-result/v1` payload sealed with the probe's key, as the probe posts it."""
    payload = {
        "schema": "medsec.job-result/v1",
        "job_id": job_id,
        "claim_id": claim_id,
        "status": status,
        "result": result,
        "error": error,
        **extra,
    }
    return creds.seal(json.dumps(payload).encode("utf-8"), as_agent=as_agent)
