"""Helpers for the probe API tests: the collector served as `fixtures_api.start_server` serves it,
with short probe leases; a probe enrolled through the API; a job result sealed as a probe seals
it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from checks import envelope as env
from collector.settings import ProbeSettings
from collector.store import Store
from tests.collector.fixtures_api import Clock, Creds, Server, TlsFiles, start_server


def start_probe_server(
    store: Store, tls: TlsFiles, *, lease_seconds: int = 2, max_claim: int = 8
) -> Server:
    """The collector on `store` over TLS, its probes' leases `lease_seconds` long."""
    probes = ProbeSettings(lease_seconds=lease_seconds, max_claim=max_claim)
    return start_server(store, tls, clock=Clock(), probes=probes)


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
