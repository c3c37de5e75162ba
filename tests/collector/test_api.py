"""The collector's HTTP API against a real uvicorn over TLS, on SQLite and on PostgreSQL: enrolment,
the ingest pipeline's every refusal with its stable code, reads with pagination, roles, JSON
errors, one audit entry per request with the right outcome, metrics, health, TLS floor.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest

from checks import envelope as env
from checks.catalog import builtin_catalogs
from collector.models import AuditEntry, Role
from collector.store import Store, StoreError
from tests.collector.fixtures_api import (
    Server,
    TlsFiles,
    agent_report,
    enrol,
    make_report,
    make_server_tls,
    serving,
)


@pytest.fixture(scope="session")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def agent_report_template() -> dict[str, Any]:
    return agent_report()


@pytest.fixture
def api_server(store: Store, server_tls: TlsFiles) -> Iterator[Server]:
    """The collector on the `store` fixture's database (SQLite and PostgreSQL)."""
    with serving(store, server_tls) as server:
        yield server


def last_audit(store: Store) -> AuditEntry:
    page = store.audit_entries(1, 0)
    return store.audit_entries(1, page.total - 1).items[0]


def audit_of(store: Store, n: int) -> list[tuple[str, str, str, str, str]]:
    """The last `n` audit entries as (actor, role, action, source, outcome)."""
    total = store.audit_entries(1, 0).total
    items = store.audit_entries(n, max(0, total - n)).items
    return [(e.actor, e.role, e.action, e.source, e.outcome) for e in items]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]


def metric(server: Server, token: str, line_start: str) -> float:
    text = server.client(token).get("/metrics").text
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------- enrolment


def test_enrol_then_the_token_is_spent(api_server: Server) -> None:
    server = api_server
    mse = server.store.create_enrollment("his-db-01", timedelta(minutes=60), server.clock())
    key = env.generate_private_key("ed25519")
    body = {
        "token": mse,
        "name": "his-db-01",
        "alg": "ed25519",
        "public_key": env.public_key_pem(key, "ed25519"),
    }
    client = server.client()
    first = client.post("/api/v1/enroll", json=body)
    assert first.status_code == 201, first.text
    doc = first.json()
    assert doc["agent"] == "his-db-01"
    assert doc["alg"] == "ed25519"
    assert doc["api_token"].startswith("msa_")
    assert first.headers["cache-control"] == "no-store"
    assert audit_of(server.store, 1) == [
        ("his-db-01", "agent", "POST /api/v1/enroll", "127.0.0.1", "201")
    ]

    again = client.post("/api/v1/enroll", json=body)
    assert_error(again, 401, "enrollment_token_invalid")
    assert audit_of(server.store, 1) == [
        ("-", "-", "POST /api/v1/enroll", "127.0.0.1", "401 enrollment_token_invalid")
    ]
    assert mse not in again.text


def test_enrolment_token_expires(api_server: Server) -> None:
    server = api_server
    mse = server.store.create_enrollment("his-db-01", timedelta(minutes=60), server.clock())
    server.clock.advance(timedelta(minutes=61))
    key = env.generate_private_key("ed25519")
    response = server.client().post(
        "/api/v1/enroll",
        json={
            "token": mse,
            "name": "his-db-01",
            "alg": "ed25519",
            "public_key": env.public_key_pem(key, "ed25519"),
        },
    )
    assert_error(response, 401, "enrollment_token_invalid")
    assert "expired" in response.json()["message"]


def test_enrolment_refuses_a_bad_key_without_spending_the_token(api_server: Server) -> None:
    server = api_server
    mse = server.store.create_enrollment("his-db-01", timedelta(minutes=60), server.clock())
    client = server.client()
    sm2_key = env.public_key_pem(env.generate_private_key("sm2-sm3"), "sm2-sm3")
    for public_key in ("not a key", sm2_key):
        response = client.post(
            "/api/v1/enroll",
            json={"token": mse, "name": "his-db-01", "alg": "ed25519", "public_key": public_key},
        )
        assert_error(response, 400, "invalid_public_key")
    wrong_name = client.post(
        "/api/v1/enroll",
        json={"token": mse, "name": "pacs-01", "alg": "sm2-sm3", "public_key": sm2_key},
    )
    assert_error(wrong_name, 401, "enrollment_token_invalid")
    ok = client.post(
        "/api/v1/enroll",
        json={"token": mse, "name": "his-db-01", "alg": "sm2-sm3", "public_key": sm2_key},
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": "mse_x", "name": "a b", "alg": "ed25519", "public_key": "k"},
        {"token": "mse_x", "name": "a", "alg": "rsa", "public_key": "k"},
        {"token": "mse_x", "name": "a", "alg": "ed25519", "public_key": "k", "extra": 1},
    ],
)
def test_enrolment_body_is_validated(api_server: Server, body: dict[str, Any]) -> None:
    response = api_server.client().post("/api/v1/enroll", json=body)
    assert_error(response, 422, "invalid_request")
    assert "mse_x" not in response.text


# --------------------------------------------------------------------------- ingest


@pytest.mark.parametrize("alg", ["ed25519", "sm2-sm3"])
def test_ingest_new_duplicate_and_replay(
    api_server: Server, agent_report_template: dict[str, Any], alg: env.Alg
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01", alg)
    client = server.client(agent.token)
    report = make_report(agent_report_template, host="his-db-01")
    sealed = agent.seal(report)
    first = client.post(
        "/api/v1/reports", content=sealed, headers={"Content-Type": "application/json"}
    )
    assert first.status_code == 201, first.text
    doc = first.json()
    assert doc["duplicate"] is False
    assert doc["report_id"] == json.loads(report)["report_id"]
    assert doc["host_id"] == json.loads(report)["host"]["id"]
    assert audit_of(server.store, 1) == [
        ("his-db-01", "agent", "POST /api/v1/reports", "127.0.0.1", "201")
    ]

    again = client.post("/api/v1/reports", content=sealed)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert audit_of(server.store, 1)[0][4] == "200"

    # Same report id, other bytes: a replay, even correctly signed.
    altered = report.replace(b'"hostname": "his-db-01"', b'"hostname": "his-db-02"')
    assert altered != report
    replay = client.post("/api/v1/reports", content=agent.seal(altered))
    assert_error(replay, 409, "replayed_report")
    assert audit_of(server.store, 1)[0][4] == "409 replayed_report"


def test_the_same_report_id_from_another_agent_is_a_replay(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    a, b = enrol(server, "his-db-01"), enrol(server, "pacs-01")
    report = make_report(agent_report_template)
    assert server.client(a.token).post("/api/v1/reports", content=a.seal(report)).status_code == 201
    # Even once B may report A's host (A revoked), A's report id is not B's to send.
    server.store.revoke_agent("his-db-01", server.clock())
    response = server.client(b.token).post("/api/v1/reports", content=b.seal(report))
    assert_error(response, 409, "replayed_report")


def test_an_agent_cannot_report_as_the_collectors_scans(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    doc = json.loads(make_report(agent_report_template))
    doc["host"]["id"] = "scan:" + "0" * 32  # a guessable id of a scan's history
    response = server.client(agent.token).post(
        "/api/v1/reports", content=agent.seal(json.dumps(doc).encode())
    )
    assert_error(response, 403, "host_claimed")
    assert server.store.list_hosts(10, 0).total == 0


def test_an_agent_cannot_report_for_another_agents_host(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    a, b = enrol(server, "his-db-01"), enrol(server, "pacs-01")
    fail = {result["check_id"]: "fail" for result in agent_report_template["results"]}
    honest = make_report(agent_report_template, statuses=fail)
    assert server.client(a.token).post("/api/v1/reports", content=a.seal(honest)).status_code == 201
    everything_passes = dict.fromkeys(fail, "pass")
    forged = make_report(agent_report_template, statuses=everything_passes)
    response = server.client(b.token).post("/api/v1/reports", content=b.seal(forged))
    assert_error(response, 403, "host_claimed")
    assert audit_of(server.store, 1) == [
        ("pacs-01", "agent", "POST /api/v1/reports", "127.0.0.1", "403 host_claimed")
    ]
    auditor = server.client(server.user(Role.AUDITOR))
    host_id = json.loads(honest)["host"]["id"]
    shown = auditor.get(f"/api/v1/hosts/{host_id}").json()
    assert shown["host"]["agent"] == "his-db-01"
    assert {result["status"] for result in shown["results"]} == {"fail"}


def test_another_agents_signature_is_refused(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    a, b = enrol(server, "his-db-01"), enrol(server, "pacs-01")
    report = make_report(agent_report_template)
    # A's token and A's name in the envelope, but B's key signed it.
    forged = env.seal(report, a.name, b.private_key, b.alg)
    response = server.client(a.token).post("/api/v1/reports", content=forged)
    assert_error(response, 403, "bad_signature")
    assert audit_of(server.store, 1) == [
        ("his-db-01", "agent", "POST /api/v1/reports", "127.0.0.1", "403 bad_signature")
    ]


def test_an_envelope_naming_another_agent_or_alg_is_refused(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    a, b = enrol(server, "his-db-01"), enrol(server, "pacs-01")
    report = make_report(agent_report_template)
    client = server.client(a.token)
    response = client.post("/api/v1/reports", content=b.seal(report))
    assert_error(response, 403, "agent_mismatch")
    assert audit_of(server.store, 1)[0][4] == "403 agent_mismatch"
    sm_key = env.generate_private_key("sm2-sm3")
    other_alg = env.seal(report, a.name, sm_key, "sm2-sm3")
    assert_error(client.post("/api/v1/reports", content=other_alg), 403, "agent_mismatch")


def test_a_report_from_the_future_is_refused(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    client = server.client(agent.token)
    too_far = make_report(
        agent_report_template, generated_at=server.clock() + timedelta(seconds=301)
    )
    response = client.post("/api/v1/reports", content=agent.seal(too_far))
    assert_error(response, 400, "report_from_future")
    assert audit_of(server.store, 1)[0][4] == "400 report_from_future"
    skewed = make_report(
        agent_report_template, generated_at=server.clock() + timedelta(seconds=299)
    )
    assert client.post("/api/v1/reports", content=agent.seal(skewed)).status_code == 201


def test_an_oversized_body_is_refused_before_the_token_is_looked_at(api_server: Server) -> None:
    server = api_server
    client = server.client("msa_not-a-real-token")
    big = b"x" * (2 * 1024 * 1024)
    response = client.post("/api/v1/reports", content=big)
    assert_error(response, 413, "too_large")
    assert audit_of(server.store, 1) == [
        ("-", "-", "POST /api/v1/reports", "127.0.0.1", "413 too_large")
    ]

    def chunks() -> Any:  # no Content-Length: the limit holds while the body streams in
        for _ in range(64):
            yield b"y" * 32768

    streamed = client.post("/api/v1/reports", content=chunks())
    assert_error(streamed, 413, "too_large")


def test_exactly_the_limit_is_read_and_judged(
    server_tls: TlsFiles, store: Store, agent_report_template: dict[str, Any]
) -> None:
    with serving(store, server_tls, max_report_bytes=4096) as server:
        agent = enrol(server, "his-db-01")
        client = server.client(agent.token)
        assert_error(client.post("/api/v1/reports", content=b"{" * 4096), 400, "invalid_envelope")
        assert_error(client.post("/api/v1/reports", content=b"{" * 4097), 413, "too_large")
        sealed = agent.seal(make_report(agent_report_template))
        assert len(sealed) > 4096
        assert_error(client.post("/api/v1/reports", content=sealed), 413, "too_large")


def test_revoked_agent_is_refused(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    admin = server.client(server.user(Role.ADMIN, "root"))
    revoked = admin.post("/api/v1/agents/his-db-01/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"
    assert audit_of(server.store, 1) == [
        ("root", "admin", "POST /api/v1/agents/his-db-01/revoke", "127.0.0.1", "200")
    ]
    response = server.client(agent.token).post(
        "/api/v1/reports", content=agent.seal(make_report(agent_report_template))
    )
    assert_error(response, 401, "agent_revoked")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert audit_of(server.store, 1) == [
        ("his-db-01", "agent", "POST /api/v1/reports", "127.0.0.1", "401 agent_revoked")
    ]
    assert_error(admin.post("/api/v1/agents/nobody/revoke"), 404, "not_found")


def test_revocation_and_re_enrolment_take_effect_on_an_agent_already_seen(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    """The API keeps agents' credentials after their first report; a revocation, or a new key
    and token from re-enrolment, must still refuse the very next report, and store nothing."""
    server = api_server
    agent = enrol(server, "his-db-01")
    client = server.client(agent.token)
    first = client.post("/api/v1/reports", content=agent.seal(make_report(agent_report_template)))
    assert first.status_code == 201, first.text
    admin = server.client(server.user(Role.ADMIN, "root"))
    assert admin.post("/api/v1/agents/his-db-01/revoke").status_code == 200
    refused = client.post("/api/v1/reports", content=agent.seal(make_report(agent_report_template)))
    assert_error(refused, 401, "agent_revoked")
    again = enrol(server, "his-db-01")  # a new key pair and token for the same name
    stale = client.post("/api/v1/reports", content=agent.seal(make_report(agent_report_template)))
    assert_error(stale, 401, "unauthenticated")
    hosts = admin.get("/api/v1/hosts").json()["items"]
    reports = admin.get(f"/api/v1/hosts/{hosts[0]['id']}/reports").json()
    assert [r["report_id"] for r in reports["items"]] == [first.json()["report_id"]]
    fresh = server.client(again.token).post(
        "/api/v1/reports", content=again.seal(make_report(agent_report_template))
    )
    assert fresh.status_code == 201, fresh.text
    outcomes = [e[4] for e in audit_of(server.store, 20) if e[2] == "POST /api/v1/reports"]
    assert outcomes == ["201", "401 agent_revoked", "401 unauthenticated", "201"]


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, "unauthenticated"), ("msa_unknown", "unauthenticated"), ("msu_x", "unauthenticated")],
)
def test_ingest_needs_an_agent_token(
    api_server: Server, agent_report_template: dict[str, Any], token: str | None, code: str
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    response = server.client(token).post(
        "/api/v1/reports", content=agent.seal(make_report(agent_report_template))
    )
    assert_error(response, 401, code)
    assert response.headers["www-authenticate"] == "Bearer"
    # A user's token is no agent's either.
    user = server.user(Role.ADMIN)
    response = server.client(user).post(
        "/api/v1/reports", content=agent.seal(make_report(agent_report_template))
    )
    assert_error(response, 401, "unauthenticated")


def test_malformed_envelope_and_report(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    client = server.client(agent.token)
    for body in (b"", b"not json", b"[]", b'{"schema": "medsec.envelope/v1"}'):
        assert_error(client.post("/api/v1/reports", content=body), 400, "invalid_envelope")
    bad_report = json.dumps({"schema": "medsec.report/v1", "results": "no"}).encode()
    assert_error(
        client.post("/api/v1/reports", content=agent.seal(bad_report)), 400, "invalid_report"
    )
    doc = json.loads(make_report(agent_report_template))
    doc["generated_at"] = "2026-01-01T00:00:00"  # no time zone
    naive = json.dumps(doc).encode()
    assert_error(client.post("/api/v1/reports", content=agent.seal(naive)), 400, "invalid_report")
    assert audit_of(server.store, 1)[0][4] == "400 invalid_report"
    doc["generated_at"] = "2026-01-01T00:00:00Z"
    doc["inventory"] = {"deep": "@"}
    deep = json.dumps(doc).replace('"@"', "[" * 50_000 + "]" * 50_000).encode()
    assert_error(client.post("/api/v1/reports", content=agent.seal(deep)), 400, "invalid_report")


def test_a_malformed_sm2_signature_is_a_bad_signature(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01", "sm2-sm3")
    report = make_report(agent_report_template)
    envelope = json.loads(agent.seal(report))
    client = server.client(agent.token)
    for signature in (b"", b"x" * 64, b"\x30\x02\x02\x00"):
        envelope["signature"] = base64.b64encode(signature).decode()
        response = client.post("/api/v1/reports", content=json.dumps(envelope).encode())
        assert_error(response, 403, "bad_signature")
    assert client.post("/api/v1/reports", content=agent.seal(report)).status_code == 201


# --------------------------------------------------------------------------- reading


def test_reads_with_pagination(api_server: Server, agent_report_template: dict[str, Any]) -> None:
    server = api_server
    agent = enrol(server, "ansible-pushed")
    client = server.client(agent.token)
    first_check = agent_report_template["results"][0]["check_id"]
    hosts = ["his-db-01", "lis-app-02", "pacs-03"]
    for i, host in enumerate(hosts):
        older = make_report(
            agent_report_template, host=host, generated_at=server.clock() - timedelta(hours=2)
        )
        newer = make_report(
            agent_report_template,
            host=host,
            generated_at=server.clock() - timedelta(hours=1),
            statuses={first_check: "fail" if i else "pass"},
        )
        for report in (older, newer):
            assert client.post("/api/v1/reports", content=agent.seal(report)).status_code == 201

    auditor = server.client(server.user(Role.AUDITOR, "alice"))
    page1 = auditor.get("/api/v1/hosts", params={"limit": 2}).json()
    assert page1["total"] == 3
    assert page1["limit"] == 2
    assert page1["offset"] == 0
    assert [h["hostname"] for h in page1["items"]] == hosts[:2]
    page2 = auditor.get("/api/v1/hosts", params={"limit": 2, "offset": 2}).json()
    assert [h["hostname"] for h in page2["items"]] == hosts[2:]
    assert audit_of(server.store, 1) == [
        ("alice", "auditor", "GET /api/v1/hosts", "127.0.0.1", "200")
    ]

    host_id = page1["items"][0]["id"]
    detail = auditor.get(f"/api/v1/hosts/{host_id}")
    assert detail.status_code == 200, detail.text
    doc = detail.json()
    assert doc["host"]["hostname"] == "his-db-01"
    assert doc["host"]["agent"] == "ansible-pushed"
    assert "hardware" in doc["inventory"]
    assert len(doc["results"]) == len(agent_report_template["results"])
    assert doc["results"][0]["status"] == "pass"

    reports = auditor.get(f"/api/v1/hosts/{host_id}/reports", params={"limit": 1}).json()
    assert reports["total"] == 2
    assert len(reports["items"]) == 1
    assert reports["items"][0]["report_id"] == doc["host"]["last_report_id"]  # newest first
    older = auditor.get(f"/api/v1/hosts/{host_id}/reports", params={"offset": 1}).json()
    assert older["items"][0]["generated_at"] < reports["items"][0]["generated_at"]

    failing = auditor.get("/api/v1/results", params={"check_id": first_check, "status": "fail"})
    assert failing.status_code == 200
    assert {r["hostname"] for r in failing.json()["items"]} == {"lis-app-02", "pacs-03"}
    assert failing.json()["total"] == 2
    paged = auditor.get("/api/v1/results", params={"limit": 5, "offset": 5}).json()
    assert paged["total"] == 3 * len(agent_report_template["results"])
    assert len(paged["items"]) == 5

    assert_error(auditor.get("/api/v1/hosts/sha256:0000/reports"), 404, "not_found")
    assert_error(auditor.get("/api/v1/hosts/nope"), 404, "not_found")
    assert audit_of(server.store, 1)[0][4] == "404 not_found"
    assert_error(auditor.get("/api/v1/hosts", params={"limit": 501}), 422, "invalid_request")
    assert_error(auditor.get("/api/v1/hosts", params={"offset": -1}), 422, "invalid_request")
    assert_error(auditor.get("/api/v1/results", params={"status": "ok"}), 422, "invalid_request")
    assert audit_of(server.store, 1)[0][4] == "422 invalid_request"

    log = auditor.get("/api/v1/audit", params={"limit": 500}).json()
    assert log["total"] >= 10
    assert [e["seq"] for e in log["items"]] == list(range(1, len(log["items"]) + 1))


def test_results_are_served_with_the_collectors_clauses_not_the_stored_ones(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    """A report from an agent whose catalogs are stale (wrong clause ids, a check its catalog
    mapped and the collector's does not) is stored as sent and served with the collector's join."""
    server = api_server
    agent = enrol(server, "old-agent")
    doc = json.loads(make_report(agent_report_template, host="stale-catalog-01"))
    stale = ["GB/T 22239-2008 7.1.1", "MNDS 0.0"]
    for result in doc["results"]:
        result["clauses"] = stale
    dropped = {**doc["results"][0], "check_id": "legacy.dropped_check", "target": None}
    doc["results"].append(dropped)
    sealed = agent.seal(json.dumps(doc).encode("utf-8"))
    assert server.client(agent.token).post("/api/v1/reports", content=sealed).status_code == 201

    host_id = doc["host"]["id"]
    found = server.store.get_host(host_id)
    assert found is not None
    assert {r.clauses for r in found[2]} == {tuple(stale)}  # the store keeps what the agent sent

    catalogs = builtin_catalogs()
    expected = {r["check_id"]: catalogs.clause_ids(r["check_id"]) for r in doc["results"]}
    assert expected["legacy.dropped_check"] == []
    assert any(expected.values())
    auditor = server.client(server.user(Role.AUDITOR))
    detail = auditor.get(f"/api/v1/hosts/{host_id}").json()["results"]
    queried = auditor.get("/api/v1/results", params={"limit": 500}).json()["items"]
    for served in (detail, queried):
        assert len(served) == len(doc["results"])
        assert [(r["check_id"], r["clauses"]) for r in served] == [
            (r["check_id"], expected[r["check_id"]]) for r in served
        ]


# --------------------------------------------------------------------------- who may do what


PROTECTED = [
    ("GET", "/api/v1/hosts"),
    ("GET", "/api/v1/hosts/x"),
    ("GET", "/api/v1/hosts/x/reports"),
    ("GET", "/api/v1/results"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/v1/scans"),
    ("GET", "/api/v1/scans"),
    ("GET", "/api/v1/scans/0b1c2d3e-0000-4000-8000-000000000000"),
    ("GET", "/api/v1/agents"),
    ("POST", "/api/v1/agents/x/revoke"),
    ("GET", "/api/v1/users"),
    ("GET", "/metrics"),
]


def test_every_protected_route_needs_a_token(api_server: Server) -> None:
    server = api_server
    for token in (None, "msu_wrong", "garbage", "x" * 5000):
        client = server.client(token)
        for method, path in PROTECTED:
            response = client.request(method, path)
            assert_error(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"] == "Bearer"
            assert audit_of(server.store, 1) == [
                ("-", "-", f"{method} {path}", "127.0.0.1", "401 unauthenticated")
            ]


@pytest.mark.parametrize("role", list(Role))
def test_roles(api_server: Server, role: Role) -> None:
    server = api_server
    client = server.client(server.user(role, f"user-{role.value}"))
    expected = {
        "GET /api/v1/hosts": 200,
        "GET /api/v1/results": 200,
        "GET /api/v1/audit": 200,
        "GET /metrics": 200,
        "GET /api/v1/scans": 200,
        # An operator may start scans: this server's settings name no zones file.
        "POST /api/v1/scans": 404 if role is not Role.AUDITOR else 403,
        "GET /api/v1/agents": 200 if role is Role.ADMIN else 403,
        "GET /api/v1/users": 200 if role is Role.ADMIN else 403,
        "POST /api/v1/agents/x/revoke": 404 if role is Role.ADMIN else 403,
    }
    for action, status in expected.items():
        method, path = action.split(" ")
        body = {"zones": "hospital"} if action == "POST /api/v1/scans" else None
        response = client.request(method, path, json=body)
        assert response.status_code == status, (action, response.text)
        if status == 403:
            assert_error(response, 403, "forbidden")
        if action == "POST /api/v1/scans" and status == 404:
            assert_error(response, 404, "unknown_zones")
        outcome = audit_of(server.store, 1)[0]
        assert outcome[:3] == (f"user-{role.value}", role.value, action)
        assert outcome[4].startswith(str(status))
        if status == 403:
            assert outcome[4] == "403 forbidden"


def test_an_agent_token_reads_nothing(api_server: Server) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    client = server.client(agent.token)
    for method, path in PROTECTED:
        assert_error(client.request(method, path), 403, "forbidden")
        assert audit_of(server.store, 1) == [
            ("his-db-01", "agent", f"{method} {path}", "127.0.0.1", "403 forbidden")
        ]


def test_admin_lists_agents_and_users(api_server: Server) -> None:
    server = api_server
    enrol(server, "his-db-01")
    server.store.create_enrollment("pacs-01", timedelta(minutes=5), server.clock())
    admin = server.client(server.user(Role.ADMIN, "root"))
    agents = admin.get("/api/v1/agents").json()
    assert [(a["name"], a["state"], a["alg"]) for a in agents] == [
        ("his-db-01", "active", "ed25519"),
        ("pacs-01", "pending", None),
    ]
    users = admin.get("/api/v1/users").json()
    assert [(u["name"], u["role"]) for u in users] == [("root", "admin")]
    assert "token" not in json.dumps(users)


# --------------------------------------------------------------------------- errors, service


def test_errors_are_json(api_server: Server) -> None:
    server = api_server
    client = server.client(server.user(Role.ADMIN))
    assert_error(client.get("/nothing/here"), 404, "not_found")
    assert audit_of(server.store, 1)[0][2:] == ("GET /nothing/here", "127.0.0.1", "404 not_found")
    assert_error(client.delete("/api/v1/hosts"), 405, "method_not_allowed")
    assert_error(
        client.post(
            "/api/v1/enroll", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        422,
        "invalid_request",
    )
    assert_error(client.post("/api/v1/enroll", content=b"x" * 70_000), 413, "too_large")
    schema = server.client().get("/openapi.json")
    assert schema.status_code == 200
    assert "/api/v1/reports" in schema.json()["paths"]


def test_healthz_and_metrics(api_server: Server, agent_report_template: dict[str, Any]) -> None:
    server = api_server
    health = server.client().get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    auditor = server.user(Role.AUDITOR)
    received = "medsec_reports_received_total"
    rejected = 'medsec_reports_rejected_total{reason="bad_signature"}'
    too_large = 'medsec_reports_rejected_total{reason="too_large"}'
    count = "medsec_ingest_seconds_count"
    before = {m: metric(server, auditor, m) for m in (received, rejected, too_large, count)}
    a, b = enrol(server, "his-db-01"), enrol(server, "pacs-01")
    client = server.client(a.token)
    report = make_report(agent_report_template)
    assert client.post("/api/v1/reports", content=a.seal(report)).status_code == 201
    assert client.post("/api/v1/reports", content=a.seal(report)).status_code == 200
    forged = env.seal(make_report(agent_report_template), a.name, b.private_key, b.alg)
    assert client.post("/api/v1/reports", content=forged).status_code == 403
    assert client.post("/api/v1/reports", content=b"x" * 2_000_000).status_code == 413
    after = {m: metric(server, auditor, m) for m in before}
    assert after[received] - before[received] == 2
    assert after[rejected] - before[rejected] == 1
    assert after[too_large] - before[too_large] == 1
    assert after[count] - before[count] == 4
    text = server.client(auditor).get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    assert "medsec_ingest_seconds_bucket" in text.text


def test_concurrent_requests_keep_the_audit_chain_whole(
    api_server: Server, agent_report_template: dict[str, Any]
) -> None:
    server = api_server
    agent = enrol(server, "his-db-01")
    auditor = server.user(Role.AUDITOR)
    reports = [agent.seal(make_report(agent_report_template, host=f"h{i}")) for i in range(12)]
    before = server.store.audit_entries(1, 0).total

    def post(body: bytes) -> int:
        with httpx.Client(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=str(server.tls.ca)),
            headers={"Authorization": f"Bearer {agent.token}"},
        ) as c:
            return c.post("/api/v1/reports", content=body).status_code

    def read(_: int) -> int:
        with httpx.Client(
            base_url=server.url,
            verify=ssl.create_default_context(cafile=str(server.tls.ca)),
            headers={"Authorization": f"Bearer {auditor}"},
        ) as c:
            return c.get("/api/v1/hosts").status_code

    with ThreadPoolExecutor(8) as pool:
        posted = list(pool.map(post, reports))
        reads = list(pool.map(read, range(12)))
    assert posted == [201] * 12
    assert reads == [200] * 12
    verdict = server.store.verify_audit()
    assert verdict.ok, verdict
    assert verdict.entries == before + 24


def test_database_down(server_tls: TlsFiles, caplog: pytest.LogCaptureFixture) -> None:
    """A store whose database cannot be reached: 503 everywhere, the audit failure logged, no
    traceback in any answer."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = Store.open(f"postgresql+psycopg://postgres@127.0.0.1:{port}/none?connect_timeout=2")
    try:
        with serving(store, server_tls) as server:
            with caplog.at_level(logging.ERROR, logger="medsec.collector"):
                health = server.client().get("/healthz")
                assert_error(health, 503, "database_unavailable")
                hosts = server.client("msu_" + "a" * 43).get("/api/v1/hosts")
                assert_error(hosts, 503, "database_unavailable")
                enrolled = server.client().post(
                    "/api/v1/enroll",
                    json={
                        "token": "mse_x",
                        "name": "a",
                        "alg": "ed25519",
                        "public_key": env.public_key_pem(
                            env.generate_private_key("ed25519"), "ed25519"
                        ),
                    },
                )
                assert_error(enrolled, 503, "database_unavailable")
            for response in (health, hosts, enrolled):
                assert "Traceback" not in response.text
                assert "127.0.0.1:" + str(port) not in response.text
            assert any("audit entry not written" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_tls_1_1_is_refused_and_1_2_works(api_server: Server) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    port = int(api_server.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionResetError)),
    ):
        old.wrap_socket(raw, server_hostname="127.0.0.1")
    tls12 = ssl.create_default_context(cafile=str(api_server.tls.ca))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=tls12) as client:
        assert client.get(f"{api_server.url}/healthz").status_code == 200
    unknown_ca = httpx.Client(verify=ssl.create_default_context())
    with unknown_ca, pytest.raises(httpx.ConnectError):
        unknown_ca.get(f"{api_server.url}/healthz")


class _FailingStore(Store):
    """The real store, with one method made to fail the way a bug or a full disk would."""

    fail_reads = False
    fail_audit = False

    def list_hosts(self, limit: int, offset: int) -> Any:
        if self.fail_reads:
            raise RuntimeError("boom: a bug in the read path /secret/path")
        return super().list_hosts(limit, offset)

    def submit_audit(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_audit:
            failed: Future[Any] = Future()
            failed.set_exception(StoreError("disk full"))
            return failed
        return super().submit_audit(*args, **kwargs)


def test_an_unexpected_error_is_a_json_500_and_still_audited(
    store_url: str, server_tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FailingStore.open(store_url)
    try:
        with serving(store, server_tls) as server:
            client = server.client(server.user(Role.AUDITOR, "alice"))
            store.fail_reads = True
            with caplog.at_level(logging.ERROR, logger="medsec.collector"):
                response = client.get("/api/v1/hosts")
            assert_error(response, 500, "internal_error")
            assert "boom" not in response.text
            assert "Traceback" not in response.text
            assert audit_of(store, 1) == [
                ("alice", "auditor", "GET /api/v1/hosts", "127.0.0.1", "500 internal_error")
            ]
            assert any("GET /api/v1/hosts failed" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_a_failed_audit_write_is_logged_and_the_answer_refused(
    store_url: str, server_tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """No answer without its audit entry (issue 15, hole 5): 503 instead, one line in the log,
    /healthz unhealthy until a write succeeds again."""
    store = _FailingStore.open(store_url)
    try:
        with serving(store, server_tls) as server:
            client = server.client(server.user(Role.AUDITOR, "alice"))
            store.fail_audit = True
            with caplog.at_level(logging.ERROR, logger="medsec.collector"):
                response = client.get("/api/v1/hosts")
            assert_error(response, 503, "audit_unavailable")
            assert "disk full" in response.json()["message"]
            assert "total" not in response.text  # the hosts were not sent
            messages = [r.getMessage() for r in caplog.records]
            assert any(
                "audit entry not written, answered 503 audit_unavailable: StoreError: disk full"
                " for GET /api/v1/hosts by alice" in m
                for m in messages
            ), messages
            assert store.audit_entries(1, 0).total == 0
            assert_error(server.client().get("/healthz"), 503, "audit_unavailable")
            store.fail_audit = False
            assert server.client().get("/healthz").status_code == 200
            assert client.get("/api/v1/hosts").status_code == 200
    finally:
        store.close()
