"""The authorisation matrix: every route in the app's route table × every kind of caller — none,
a garbage token, an agent, another agent, a revoked agent, an auditor, an operator, an admin, a
removed user — against the real collector (uvicorn over TLS) on SQLite and on PostgreSQL.

The expected answer of every cell comes from one table, `MATRIX` (route → who may call it), and
`expected()`. A route the app serves that has no row fails the test, so a new route cannot
slip in unreviewed; a row for a route the app no longer serves fails it too. Path parameters
are real ids (a host with a stored report, a scan, a snapshot, an agent) and bodies are valid
for an authorised caller, so a 404 or a 422 never hides a missing check: each cell is the
authorisation's answer or the route's success (for making a snapshot, see its row). Every refused
request answers the JSON error body with the expected code, and every request (liveness
excepted) leaves exactly one audit entry naming the route, the caller as far as it is known
(actor and role), and the outcome.
"""

from __future__ import annotations

import enum
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from checks import envelope as env
from collector.api.middleware import UNAUDITED_PATHS
from collector.models import Role
from collector.settings import ScanSettings, SnapshotSettings
from collector.store import Store
from tests.collector.fixtures_api import (
    REPO,
    Creds,
    Server,
    TlsFiles,
    enrol,
    make_report,
    make_server_tls,
    serving,
)


class Who(enum.Enum):
    """Who a route is for: anyone, an enrolled agent only, or users from a role up."""

    PUBLIC = "public"
    AGENT = "agent"
    AUDITOR = Role.AUDITOR.value
    OPERATOR = Role.OPERATOR.value
    ADMIN = Role.ADMIN.value
    PROBE = "probe"
    """An agent enrolled as a probe (`--probe-zone`). The matrix's agents are not probes, so
    every caller here is refused; tests/collector/test_probe_api.py has a probe's own answers."""
    PAGE = "dashboard page"
    """Takes the dashboard's login cookie only: to every bearer caller (all callers here) it is
    signed out, so a GET is sent to the login page (303) and a POST refused (401), as HTML. Who
    may use a page once signed in is tested with real logins in tests/collector/test_web_*.py."""


@dataclass(frozen=True)
class Row:
    who: Who
    success: int
    """The status an allowed caller gets with the request this test sends."""
    code: str | None = None
    """The error code of that answer, where the route itself refuses what it was sent."""


MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/openapi.json"): Row(Who.PUBLIC, 200),
    ("GET", "/healthz"): Row(Who.PUBLIC, 200),
    ("POST", "/api/v1/enroll"): Row(Who.PUBLIC, 201),  # the one-time token in the body is the key
    ("POST", "/api/v1/reports"): Row(Who.AGENT, 201),
    ("GET", "/api/v1/hosts"): Row(Who.AUDITOR, 200),
    ("GET", "/api/v1/hosts/{host_id}"): Row(Who.AUDITOR, 200),
    ("GET", "/api/v1/hosts/{host_id}/reports"): Row(Who.AUDITOR, 200),
    ("GET", "/api/v1/results"): Row(Who.AUDITOR, 200),
    ("GET", "/api/v1/audit"): Row(Who.AUDITOR, 200),
    ("POST", "/api/v1/scans"): Row(Who.OPERATOR, 202),
    ("GET", "/api/v1/scans"): Row(Who.AUDITOR, 200),
    ("GET", "/api/v1/scans/{scan_id}"): Row(Who.AUDITOR, 200),
    # Sent without the two scans to compare: only a caller past the role check is told so.
    ("GET", "/api/v1/scans/diff"): Row(Who.AUDITOR, 422, "invalid_request"),
    ("GET", "/api/v1/compliance"): Row(Who.AUDITOR, 200),
    ("POST", "/api/v1/attestations"): Row(Who.AUDITOR, 201),
    ("GET", "/api/v1/attestations"): Row(Who.AUDITOR, 200),
    # Making a snapshot renders two PDFs: 5-15 s on a busy CI machine, even of no host. An
    # allowed caller names a host there is not: only a caller past the role check gets the
    # route's own refusal. The setup makes one real snapshot, which the download cells fetch;
    # tests/compliance/test_compliance_api.py makes, downloads and verifies them.
    ("POST", "/api/v1/snapshots"): Row(Who.AUDITOR, 400, "invalid_scope"),
    ("GET", "/api/v1/snapshots"): Row(Who.AUDITOR, 200),
    ("GET", "/api/v1/snapshots/{snapshot_id}"): Row(Who.AUDITOR, 200),
    ("GET", "/api/v1/agents"): Row(Who.ADMIN, 200),
    ("POST", "/api/v1/agents/{name}/revoke"): Row(Who.ADMIN, 200),
    ("GET", "/api/v1/users"): Row(Who.ADMIN, 200),
    ("GET", "/metrics"): Row(Who.AUDITOR, 200),
    ("POST", "/api/v1/probe/claim"): Row(Who.PROBE, 200),
    ("POST", "/api/v1/probe/leases"): Row(Who.PROBE, 200),
    ("POST", "/api/v1/probe/jobs/{job_id}/result"): Row(Who.PROBE, 200),
    # Schedules. The setup makes none and sends no body: a caller past the role check gets the
    # route's own refusal (no body; no schedule named matrix-target), the same for every one of
    # them; tests/collector/test_schedules_api.py has the routes' successes.
    ("GET", "/api/v1/schedules"): Row(Who.AUDITOR, 200),
    ("POST", "/api/v1/schedules"): Row(Who.OPERATOR, 422, "invalid_request"),
    ("POST", "/api/v1/schedules/{name}/pause"): Row(Who.OPERATOR, 404, "not_found"),
    ("POST", "/api/v1/schedules/{name}/resume"): Row(Who.OPERATOR, 404, "not_found"),
    ("DELETE", "/api/v1/schedules/{name}"): Row(Who.OPERATOR, 404, "not_found"),
    # No alert in the setup; tests/collector/test_alerts_list.py lists real ones.
    ("GET", "/api/v1/alerts"): Row(Who.AUDITOR, 200),
    # The dashboard. Signing in is public; a POST without the form's pre-login cookie is refused
    # before any password is looked at.
    ("GET", "/login"): Row(Who.PUBLIC, 200),
    ("POST", "/login"): Row(Who.PUBLIC, 403),
    ("GET", "/static/{file}"): Row(Who.PUBLIC, 200),
    ("POST", "/logout"): Row(Who.PAGE, 303),  # any role
    ("POST", "/ui/locale"): Row(Who.PAGE, 303),  # any role
    ("GET", "/"): Row(Who.PAGE, 200),  # auditor
    ("GET", "/clauses/{standard}/{clause_id}"): Row(Who.PAGE, 200),  # auditor
    ("GET", "/hosts"): Row(Who.PAGE, 200),  # auditor
    ("GET", "/hosts/{host_id}"): Row(Who.PAGE, 200),  # auditor
    ("GET", "/network"): Row(Who.PAGE, 200),  # auditor
    ("POST", "/scans"): Row(Who.PAGE, 303),  # operator
    ("GET", "/scans/{scan_id}"): Row(Who.PAGE, 200),  # auditor
    ("GET", "/snapshots"): Row(Who.PAGE, 200),  # auditor
    ("POST", "/snapshots"): Row(Who.PAGE, 303),  # auditor
    ("GET", "/snapshots/{snapshot_id}/download"): Row(Who.PAGE, 200),  # auditor
    ("GET", "/reports/{file_name}"): Row(Who.PAGE, 200),  # auditor
}


class Caller(enum.Enum):
    NONE = "no token"
    GARBAGE = "garbage token"
    AGENT = "agent"
    OTHER_AGENT = "other agent"
    REVOKED_AGENT = "revoked agent"
    AUDITOR = "auditor"
    OPERATOR = "operator"
    ADMIN = "admin"
    REMOVED_USER = "removed user"


USER_ROLES = {
    Caller.AUDITOR: Role.AUDITOR,
    Caller.OPERATOR: Role.OPERATOR,
    Caller.ADMIN: Role.ADMIN,
}
AGENTS = {
    Caller.AGENT: "matrix-agent",
    Caller.OTHER_AGENT: "matrix-other",
    Caller.REVOKED_AGENT: "matrix-revoked",
}


def expected(  # noqa: PLR0911 — the rules
    row: Row, caller: Caller, method: str = "GET"
) -> tuple[int, str | None]:
    """The answer `caller` gets from a route of `row`: (status, error code or None)."""
    if row.who is Who.PUBLIC:
        return row.success, row.code
    if row.who is Who.PAGE:
        return (303 if method == "GET" else 401), None
    if caller in (Caller.NONE, Caller.GARBAGE, Caller.REMOVED_USER):
        return 401, "unauthenticated"
    if caller is Caller.REVOKED_AGENT:
        return 401, "agent_revoked"
    if row.who is Who.PROBE:
        return 403, "not_a_probe" if caller in AGENTS else "forbidden"
    if row.who is Who.AGENT:
        if caller is Caller.AGENT:
            return row.success, row.code
        if caller is Caller.OTHER_AGENT:  # its token with the first agent's signed report
            return 403, "agent_mismatch"
        return 401, "unauthenticated"  # a user token is no agent token
    if caller in (Caller.AGENT, Caller.OTHER_AGENT):
        return 403, "forbidden"
    if USER_ROLES[caller].allows(Role(row.who.value)):
        return row.success, row.code
    return 403, "forbidden"


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves; HEAD where Starlette adds it to a GET
    is left out. FastAPI ≥ 0.16x keeps included routers whole in `app.routes`."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        routes: list[Any] = list(app.routes)
    else:
        routes = list(iter_route_contexts(app.routes))
    table: set[tuple[str, str]] = set()
    for route in routes:
        mounted = getattr(route, "route", route)
        if isinstance(mounted, Mount) and isinstance(mounted.app, StaticFiles):
            table.add(("GET", f"{mounted.path}/{{file}}"))  # the dashboard's own CSS
            continue
        methods, path = getattr(route, "methods", None), getattr(route, "path", None)
        assert methods, f"a route the matrix cannot test: {route!r}"
        assert path, f"a route the matrix cannot test: {route!r}"
        implicit_head = {"HEAD"} if "GET" in methods else set()
        table.update((method, path) for method in set(methods) - implicit_head)
    return table


# --------------------------------------------------------------------------- the collector


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """A report as the agent renders it (the renderer's golden file)."""
    doc: dict[str, Any] = json.loads(
        (REPO / "tests" / "checks" / "golden" / "report.json").read_text("utf-8")
    )
    return doc


# A scan an allowed caller starts probes one listed port of 127.0.0.1 (and nothing, where nmap is
# not installed: the scan is then recorded as failed; the API has answered 202 either way).
ZONES = """\
zones:
  - {name: servers, cidrs: ["127.0.0.1/32"], vantage: {kind: local}}
scan: {ports: listed, extra_ports: ["tcp/9"], timing: 5}
"""


@pytest.fixture
def server(
    store: Store, server_tls: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    monkeypatch.setenv("MEDSEC_SCAN_CONFINE", "127.0.0.0/8")  # the scanner refuses anything else
    zones = tmp_path / "zones.yaml"
    zones.write_text(ZONES, "utf-8")
    # One zones name per caller, so an allowed scan never meets another one still running.
    scans = ScanSettings(
        zones={f"matrix-{c.name.lower().replace('_', '-')}": str(zones) for c in Caller},
        timeout_seconds=60,
    )
    snapshots = SnapshotSettings(dir=str(tmp_path / "snapshots"), key_file=str(tmp_path / "k"))
    with serving(store, server_tls, scans=scans, snapshots=snapshots) as running:
        yield running


SNAPSHOT = {"as_of": "2000-01-01T00:00:00Z"}
"""The setup's real snapshot, signed and kept: of a time before any report, which spares the
host pages of its PDFs."""


@dataclass
class World:
    """What the requests refer to, made before the matrix runs."""

    server: Server
    template: dict[str, Any]
    tokens: dict[Caller, str | None]
    names: dict[Caller, str]
    agent: Creds
    host_id: str
    scan_id: str
    snapshot_id: str


def build_world(server: Server, template: dict[str, Any]) -> World:
    store, now = server.store, server.clock()
    tokens: dict[Caller, str | None] = {
        Caller.NONE: None,
        Caller.GARBAGE: secrets.token_urlsafe(32),
    }
    names: dict[Caller, str] = {}
    creds = {caller: enrol(server, name) for caller, name in AGENTS.items()}
    for caller, name in AGENTS.items():
        tokens[caller], names[caller] = creds[caller].token, name
    for caller, role in USER_ROLES.items():
        names[caller] = f"matrix-{role.value}"
        tokens[caller] = server.user(role, names[caller])
    tokens[Caller.REMOVED_USER] = server.user(Role.ADMIN, "matrix-removed")
    store.remove_user("matrix-removed")
    enrol(server, "matrix-target")  # the agent the revoke route is asked to revoke

    agent = creds[Caller.AGENT]
    body = make_report(template, host="matrix-host")
    stored = server.client(agent.token).post("/api/v1/reports", content=agent.seal(body))
    assert stored.status_code == 201, stored.text
    store.revoke_agent(AGENTS[Caller.REVOKED_AGENT], now)
    host_id = json.loads(body)["host"]["id"]
    scan = store.start_scan("matrix-setup", "matrix-operator", now, now + timedelta(minutes=5))
    made = server.client(tokens[Caller.AUDITOR]).post("/api/v1/snapshots", json=SNAPSHOT)
    assert made.status_code == 201, made.text
    return World(server, template, tokens, names, agent, host_id, scan.id, str(made.json()["id"]))


def request_for(world: World, method: str, path: str, caller: Caller) -> dict[str, Any]:
    """The valid request an allowed caller would send: real path ids, a valid body."""
    server = world.server
    url = path.format(
        host_id=world.host_id,
        scan_id=world.scan_id,
        snapshot_id=world.snapshot_id,
        name="matrix-target",
        standard="gbt22239-2019-l3",
        clause_id="8.1.4.6",
        file_name="mnds.json",
        file="medsec.css",
        job_id=str(uuid.uuid4()),
    )
    request: dict[str, Any] = {"method": method, "url": url}
    if (method, path) == ("POST", "/api/v1/enroll"):
        name = f"enrolled-{uuid.uuid4().hex[:8]}"
        key = env.generate_private_key("ed25519")
        request["json"] = {
            "token": server.store.create_enrollment(name, timedelta(minutes=5), server.clock()),
            "name": name,
            "alg": "ed25519",
            "public_key": env.public_key_pem(key, "ed25519"),
        }
    elif (method, path) == ("POST", "/api/v1/reports"):
        report = make_report(world.template, host="matrix-host")
        request["content"] = world.agent.seal(report)  # signed by the first agent, always
    elif (method, path) == ("POST", "/api/v1/scans"):
        request["json"] = {"zones": f"matrix-{caller.name.lower().replace('_', '-')}"}
    elif (method, path) == ("POST", "/api/v1/attestations"):
        request["json"] = {
            "standard": "gbt22239-2019-l3",
            "clause": "8.1.1.2",
            "status": "pass",
            "note": f"attested by {caller.value}",
        }
    elif (method, path) == ("POST", "/api/v1/snapshots"):
        request["json"] = {"host": "no-such-host"}
    elif (method, path) == ("GET", "/api/v1/compliance"):
        request["params"] = {"standard": "gbt22239-2019-l3"}
    return request


def audit_total(store: Store) -> int:
    return store.audit_entries(1, 0).total


def check_cell(  # noqa: PLR0911 — one return per way a cell can be wrong
    world: World, clients: dict[Caller, httpx.Client], key: tuple[str, str], caller: Caller
) -> str | None:
    """One cell of the matrix; what is wrong with it, or None."""
    method, path = key
    store = world.server.store
    status, code = expected(MATRIX[key], caller, method)
    request = request_for(world, method, path, caller)
    before = audit_total(store)
    answer = clients[caller].request(**request)
    cell = f"{method} {path} as {caller.value}"
    if answer.status_code != status:
        return f"{cell}: {answer.status_code} (expected {status}) {answer.text[:200]}"
    if status == 303 and not answer.headers.get("location", "").startswith("/login?next="):
        return f"{cell}: sent to {answer.headers.get('location')!r}, not the login page"
    if code is not None:
        if not answer.headers.get("content-type", "").startswith("application/json"):
            return f"{cell}: {status} without the JSON error body"
        body = answer.json()
        if body.get("error") != code or not isinstance(body.get("message"), str):
            return f"{cell}: error body {body} (expected error {code!r})"
    if path in UNAUDITED_PATHS:
        return None if audit_total(store) == before else f"{cell}: audited"
    entries = store.audit_entries(10, before).items
    if len(entries) != 1:
        return f"{cell}: {len(entries)} audit entries"
    entry = entries[0]
    outcome = f"{status} {code}" if code else str(status)
    wanted = (
        *audited_caller(world, key, caller, code, request),
        f"{method} {request['url']}",
        outcome,
    )
    got = (entry.actor, entry.role, entry.action, entry.outcome)
    return None if got == wanted else f"{cell}: audited as {got}, not {wanted}"


def audited_caller(
    world: World, key: tuple[str, str], caller: Caller, code: str | None, request: dict[str, Any]
) -> tuple[str, str]:
    """(actor, role) the audit entry names: the caller once its token was recognised (an
    enrolment names the agent it made), "-" while it is not."""
    if key == ("POST", "/api/v1/enroll"):
        return request["json"]["name"], "agent"
    if MATRIX[key].who in (Who.PUBLIC, Who.PAGE) or code == "unauthenticated":
        return "-", "-"
    if caller in AGENTS:
        return world.names[caller], "agent"
    return world.names[caller], USER_ROLES[caller].value


def test_route_table_has_a_row_for_every_route(server: Server) -> None:
    app = server.uvicorn.config.app
    assert isinstance(app, FastAPI)
    served = route_table(app)
    assert sorted(served - set(MATRIX)) == [], "routes with no row in MATRIX: review them"
    assert sorted(set(MATRIX) - served) == [], "rows in MATRIX for routes the app no longer has"


def test_every_route_answers_every_caller_as_the_matrix_says(
    server: Server, template: dict[str, Any]
) -> None:
    world = build_world(server, template)
    clients: dict[Caller, httpx.Client] = {c: server.client(t) for c, t in world.tokens.items()}
    app = server.uvicorn.config.app
    assert isinstance(app, FastAPI)
    assert route_table(app) == set(MATRIX)

    wrong = [
        problem
        for key in MATRIX
        for caller in Caller
        if (problem := check_cell(world, clients, key, caller)) is not None
    ]
    assert wrong == [], "\n".join(wrong)
    print(f"matrix: {len(MATRIX)} routes x {len(Caller)} callers = {len(MATRIX) * len(Caller)}")

    # The cells left the world as they say: the admin revoked the target agent, and every
    # allowed caller's report, scan and attestation was kept.
    assert {a.name: a.revoked_at is not None for a in server.store.list_agents()}["matrix-target"]
    reports = server.client(world.tokens[Caller.AUDITOR]).get(
        f"/api/v1/hosts/{world.host_id}/reports"
    )
    assert reports.json()["total"] == 2  # the setup's and the agent's own cell
    verdict = server.store.verify_audit()
    assert verdict.ok, verdict


def test_another_agent_cannot_report_a_host_an_agent_reports(
    server: Server, template: dict[str, Any]
) -> None:
    """Its own signature, its own token, the first agent's host: refused, and audited."""
    first, other = enrol(server, "matrix-first"), enrol(server, "matrix-second")
    body = make_report(template, host="matrix-claimed")
    assert server.client(first.token).post("/api/v1/reports", content=first.seal(body)).is_success
    again = make_report(template, host="matrix-claimed")
    answer = server.client(other.token).post("/api/v1/reports", content=other.seal(again))
    assert (answer.status_code, answer.json()["error"]) == (403, "host_claimed")
    entry = server.store.audit_entries(1, audit_total(server.store) - 1).items[0]
    assert (entry.actor, entry.outcome) == ("matrix-second", "403 host_claimed")
