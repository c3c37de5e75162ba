"""The probe API (`/api/v1/probe/...`) served over TLS by the real collector on SQLite and on
PostgreSQL: claiming a zone's jobs (and waiting for them), renewing leases, posting signed results
once, a lapsed lease's result refused, zones kept apart, and every caller that is not a probe
refused — each request audited under its caller.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from collector.models import Role
from collector.store import Store
from collector.store.jobs import JobSpec
from tests.collector.fixtures_api import Creds, Server, TlsFiles, make_server_tls
from tests.collector.jobs_api import enrol_probe, result_envelope, start_probe_server

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(store: Store, server_tls: TlsFiles) -> Iterator[Server]:
    running = start_probe_server(store, server_tls, lease_seconds=2, max_claim=8)
    try:
        yield running
    finally:
        running.stop()


def queue(server: Server, zone: str = "his", count: int = 1, **request: Any) -> list[str]:
    deadline = server.clock() + HOUR
    specs = [JobSpec(zone, "noop", {"n": n, **request}, deadline) for n in range(count)]
    return server.store.enqueue_jobs(specs, server.clock())


def claim(server: Server, probe: Creds, **body: Any) -> dict[str, Any]:
    answer = server.client(probe.token).post("/api/v1/probe/claim", json=body or {"max": 8})
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def post_result(server: Server, probe: Creds, job_id: str, envelope: bytes) -> Any:
    return server.client(probe.token).post(f"/api/v1/probe/jobs/{job_id}/result", content=envelope)


def last_audit(server: Server) -> tuple[str, str, str, str]:
    page = server.store.audit_entries(1, 0)
    entry = server.store.audit_entries(1, page.total - 1).items[0]
    return entry.actor, entry.role, entry.action, entry.outcome


def test_a_probe_claims_its_zones_job_and_its_result_is_stored_once(server: Server) -> None:
    probe = enrol_probe(server, "probe-his", "his")
    (job_id,) = queue(server, target="198.18.0.10")
    got = claim(server, probe, max=5)
    assert (got["zone"], got["lease_seconds"]) == ("his", 2)
    (job,) = got["jobs"]
    assert (job["id"], job["kind"], job["attempts"]) == (job_id, "noop", 1)
    assert job["request"] == {"n": 0, "target": "198.18.0.10"}
    assert job["scan_id"] is None
    assert job["lease_until"].endswith("Z")
    assert last_audit(server) == ("probe-his", "agent", "POST /api/v1/probe/claim", "200")

    sealed = result_envelope(probe, job_id, job["claim_id"], result={"stdout": "ok"})
    first = post_result(server, probe, job_id, sealed)
    assert (first.status_code, first.json()) == (200, {"stored": True, "duplicate": False})
    action = f"POST /api/v1/probe/jobs/{job_id}/result"
    assert last_audit(server) == ("probe-his", "agent", action, "200")
    again = post_result(server, probe, job_id, sealed)
    assert (again.status_code, again.json()) == (200, {"stored": False, "duplicate": True})
    (stored,) = server.store.get_jobs([job_id])
    assert (stored.state, stored.result, stored.finished_by) == (
        "done",
        {"stdout": "ok"},
        "probe-his",
    )
    assert claim(server, probe)["jobs"] == []


def test_a_failed_job_keeps_the_probes_reason(server: Server) -> None:
    probe = enrol_probe(server, "probe-his", "his")
    (job_id,) = queue(server)
    (job,) = claim(server, probe)["jobs"]
    sealed = result_envelope(
        probe, job_id, job["claim_id"], status="failed", error="target outside the zone"
    )
    assert post_result(server, probe, job_id, sealed).json()["stored"] is True
    (stored,) = server.store.get_jobs([job_id])
    assert (stored.state, stored.error) == ("failed", "target outside the zone")


def test_a_lapsed_lease_goes_to_the_next_claim_and_the_old_result_is_refused(
    server: Server,
) -> None:
    slow, other = enrol_probe(server, "probe-slow", "his"), enrol_probe(server, "probe-b", "his")
    (job_id,) = queue(server)
    (old,) = claim(server, slow)["jobs"]
    assert claim(server, other)["jobs"] == []  # leased to the slow probe
    server.clock.advance(timedelta(seconds=3))  # past the 2 s lease, never renewed
    (new,) = claim(server, other)["jobs"]
    assert (new["id"], new["attempts"]) == (job_id, 2)
    assert new["claim_id"] != old["claim_id"]

    late = post_result(server, slow, job_id, result_envelope(slow, job_id, old["claim_id"]))
    assert (late.status_code, late.json()["error"]) == (409, "lease_lost")
    action = f"POST /api/v1/probe/jobs/{job_id}/result"
    assert last_audit(server) == ("probe-slow", "agent", action, "409 lease_lost")
    renewed = server.client(slow.token).post(
        "/api/v1/probe/leases", json={"claims": [{"id": job_id, "claim_id": old["claim_id"]}]}
    )
    assert renewed.json() == {"leases": {job_id: None}}

    sealed = result_envelope(other, job_id, new["claim_id"], result={"by": "b"})
    assert post_result(server, other, job_id, sealed).json() == {"stored": True, "duplicate": False}
    (stored,) = server.store.get_jobs([job_id])
    assert (stored.state, stored.result, stored.attempts) == ("done", {"by": "b"}, 2)


def test_renewed_leases_keep_the_job(server: Server) -> None:
    probe, other = enrol_probe(server, "probe-a", "his"), enrol_probe(server, "probe-b", "his")
    ids = queue(server, count=2)
    jobs = claim(server, probe)["jobs"]
    for _ in range(3):
        server.clock.advance(timedelta(seconds=1.5))
        answer = server.client(probe.token).post(
            "/api/v1/probe/leases",
            json={"claims": [{"id": j["id"], "claim_id": j["claim_id"]} for j in jobs]},
        )
        assert answer.status_code == 200, answer.text
        leases = answer.json()["leases"]
        assert sorted(leases) == sorted(ids)
        assert all(until is not None for until in leases.values())
        assert claim(server, other)["jobs"] == []


def test_a_probe_sees_only_its_own_zone(server: Server) -> None:
    his, office = (
        enrol_probe(server, "probe-his", "his"),
        enrol_probe(server, "probe-off", "office"),
    )
    (office_job,) = queue(server, "office")
    assert claim(server, his)["jobs"] == []
    (job,) = claim(server, office)["jobs"]
    # Even with the claim id, the his probe cannot touch the office job: it does not exist for it.
    sealed = result_envelope(his, office_job, job["claim_id"])
    answer = post_result(server, his, office_job, sealed)
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
    renewed = server.client(his.token).post(
        "/api/v1/probe/leases", json={"claims": [{"id": office_job, "claim_id": job["claim_id"]}]}
    )
    assert renewed.json() == {"leases": {office_job: None}}
    assert server.store.get_jobs([office_job])[0].state == "claimed"


def test_a_claim_hands_out_at_most_max_claim(server: Server) -> None:
    probe = enrol_probe(server, "probe-his", "his")
    queue(server, count=12)
    assert len(claim(server, probe, max=100)["jobs"]) == 8  # probes.max_claim
    assert len(claim(server, probe, max=3)["jobs"]) == 3
    assert len(claim(server, probe, max=100)["jobs"]) == 1


def test_a_claim_waits_for_a_job_queued_meanwhile(server: Server) -> None:
    probe = enrol_probe(server, "probe-his", "his")
    started = time.monotonic()
    assert claim(server, probe, max=1, wait_seconds=0.6)["jobs"] == []
    assert time.monotonic() - started >= 0.6

    queued: list[str] = []
    later = threading.Timer(0.8, lambda: queued.extend(queue(server)))
    started = time.monotonic()
    later.start()
    try:
        got = claim(server, probe, max=1, wait_seconds=10)
    finally:
        later.join()
    waited = time.monotonic() - started
    assert [job["id"] for job in got["jobs"]] == queued
    assert 0.8 <= waited < 3, waited


def test_callers_that_are_not_probes_are_refused(server: Server) -> None:
    agent = enrol_probe(server, "plain-agent", None)
    revoked = enrol_probe(server, "probe-gone", "his")
    server.store.revoke_agent("probe-gone", server.clock())
    (job_id,) = queue(server)
    routes = [
        ("/api/v1/probe/claim", {"json": {"max": 1}}),
        ("/api/v1/probe/leases", {"json": {"claims": []}}),
        (f"/api/v1/probe/jobs/{job_id}/result", {"content": result_envelope(agent, job_id, "x")}),
    ]
    callers = {
        "plain-agent": (agent.token, 403, "not_a_probe"),
        "probe-gone": (revoked.token, 401, "agent_revoked"),
        "auditor": (server.user(Role.AUDITOR, "auditor"), 403, "forbidden"),
        "admin": (server.user(Role.ADMIN, "admin"), 403, "forbidden"),
        "-": (None, 401, "unauthenticated"),
    }
    for path, body in routes:
        for name, (token, status, code) in callers.items():
            answer = server.client(token).post(path, **body)
            assert (answer.status_code, answer.json()["error"]) == (status, code), (path, name)
            role = {"plain-agent": "agent", "probe-gone": "agent", "-": "-"}.get(name, name)
            assert last_audit(server) == (name, role, f"POST {path}", f"{status} {code}")
    assert server.store.get_jobs([job_id])[0].state == "queued"


def test_a_probe_revoked_while_it_works_claims_renews_and_stores_nothing(server: Server) -> None:
    """Its token was just looked up (the API may reuse that for a few seconds): the queue's own
    check, in each write, stops it at once."""
    probe = enrol_probe(server, "probe-his", "his")
    (held_id,) = queue(server)
    (held,) = claim(server, probe)["jobs"]
    (waiting_id,) = queue(server)
    server.store.revoke_agent("probe-his", server.clock())

    # Within the lookup's few seconds the answers are still 200, but empty: no job, no lease.
    answer = server.client(probe.token).post("/api/v1/probe/claim", json={"max": 8})
    assert (answer.status_code, answer.json()["jobs"]) == (200, [])
    renewed = server.client(probe.token).post(
        "/api/v1/probe/leases", json={"claims": [{"id": held_id, "claim_id": held["claim_id"]}]}
    )
    assert (renewed.status_code, renewed.json()) == (200, {"leases": {held_id: None}})
    posted = post_result(server, probe, held_id, result_envelope(probe, held_id, held["claim_id"]))
    assert (posted.status_code, posted.json()["error"]) == (401, "agent_revoked")
    states = {job.id: job.state for job in server.store.get_jobs([held_id, waiting_id])}
    assert states == {held_id: "claimed", waiting_id: "queued"}


def test_malformed_or_forged_results_are_refused(server: Server) -> None:
    probe, other = enrol_probe(server, "probe-his", "his"), enrol_probe(server, "probe-2", "his")
    first, second = queue(server, count=2)
    jobs = {job["id"]: job for job in claim(server, probe)["jobs"]}
    claim_id = jobs[first]["claim_id"]
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(500):  # within msgspec's limits, beyond what the store keeps
        deep = {"a": deep}
    cases = [
        (b"not json", 400, "invalid_envelope"),
        # Signed by another probe's key while naming this one: the signature does not verify.
        (result_envelope(other, first, claim_id, as_agent="probe-his"), 403, "bad_signature"),
        # The other probe's own envelope on this probe's token.
        (result_envelope(other, first, claim_id), 403, "agent_mismatch"),
        (result_envelope(probe, second, jobs[second]["claim_id"]), 400, "invalid_result"),
        (result_envelope(probe, first, claim_id, status="maybe"), 400, "invalid_result"),
        (result_envelope(probe, first, claim_id, error="x"), 400, "invalid_result"),
        (result_envelope(probe, first, claim_id, result=[1]), 400, "invalid_result"),  # type: ignore[arg-type]
        (result_envelope(probe, first, claim_id, extra=1), 400, "invalid_result"),
        (probe.seal(b'{"schema": "medsec.job-result/v1"'), 400, "invalid_result"),
        (result_envelope(probe, first, claim_id, result=deep), 400, "invalid_result"),
    ]
    for body, status, code in cases:
        answer = post_result(server, probe, first, body)
        assert (answer.status_code, answer.json()["error"]) == (status, code), body[:80]
    assert server.store.get_jobs([first])[0].state == "claimed"
    missing = "00000000-0000-4000-8000-000000000000"
    answer = post_result(server, probe, missing, result_envelope(probe, missing, claim_id))
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
    answer = post_result(server, probe, "not-a-uuid", result_envelope(probe, "not-a-uuid", "x"))
    assert answer.status_code == 422
    for bad in ({"max": 0}, {"max": 101}, {"wait_seconds": 26}, {"max": 1, "more": 1}):
        answer = server.client(probe.token).post("/api/v1/probe/claim", json=bad)
        assert (answer.status_code, answer.json()["error"]) == (422, "invalid_request"), bad


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_from_schema_driven_probe_requests(
    server: Server, mode: GenerationMode
) -> None:
    """schemathesis drives the probe routes from the OpenAPI schema with a probe's token, so
    its requests reach the handlers (the general fuzz test calls them as an admin)."""
    probe = enrol_probe(server, "probe-fuzz", "his")
    queue(server, count=1500)  # claims find jobs at once instead of waiting (long poll)
    document = server.client().get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document).include(path_regex="^/api/v1/probe/")
    session = requests.Session()
    seen: set[tuple[str, int]] = set()

    @settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=schema.as_strategy(mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(
            base_url=server.url,
            session=session,
            headers={"Authorization": f"Bearer {probe.token}"},
            verify=str(server.tls.ca),
            timeout=60,
        )
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        seen.add((case.path, response.status_code))
        if response.status_code >= 400:
            body = json.loads(response.content)
            assert isinstance(body["error"], str), body

    try:
        run()
    finally:
        session.close()
    assert seen, "no request was made"
    assert server.store.verify_audit().ok
