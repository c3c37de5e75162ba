"""Issue 15, holes 4 and 5, against a real uvicorn over TLS on SQLite and PostgreSQL.

4. A request path carrying control characters is stored as asked but escaped, once, before it
   is hashed: a line-based export of the log shows one line per entry, the escapes cannot be
   forged, the chain verifies, and the server's own log lines stay one line each.
5. No answer without its audit entry: with the chain's end altered (plain SHA-256 chain, or the
   keyed chain's head MAC), reads are answered 503 with the JSON error body and no entry, a
   request that would change something is refused before it runs, the server log says why in
   one line, `/healthz` is unhealthy with the reason, and all of it recovers once the head is
   put back.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from collector.models import AuditKey, Role
from collector.store import Store
from collector.store.audit import escape_text, unescape_text
from tests.collector.fixtures_api import (
    Server,
    TlsFiles,
    agent_report,
    enrol,
    make_report,
    make_server_tls,
    serving,
)

BIDI = {
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
}


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def raw(store_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(store_url)
    yield engine
    engine.dispose()


def entries(engine: sa.Engine) -> list[tuple[str, str, str, str, str]]:
    """Every stored entry as (actor, role, action, source, outcome), read behind the store."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT actor, role, action, source, outcome FROM audit_log ORDER BY seq")
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, str] = response.json()
    assert body["error"] == code, body
    assert body["message"]
    return body


# --------------------------------------------------------------------------- hole 4


def test_escaping_is_reversible_visible_and_leaves_nothing_that_breaks_a_line() -> None:
    every = "".join(map(chr, range(0x3000)))  # C0, DEL, C1, Latin, ..., the separators, CJK start
    escaped = escape_text(every)
    assert unescape_text(escaped) == every
    left = {c for c in escaped if unicodedata.category(c) in {"Cc", "Zl", "Zp"} or c in BIDI}
    assert left == set()
    assert len(escaped.splitlines()) == 1
    assert escape_text("GET /a\nb") == "GET /a\\x0ab"
    assert escape_text("\x85\u2028\u202e") == "\\x85\\u2028\\u202e"
    assert escape_text("张三 /hosts?x=1") == "张三 /hosts?x=1"  # printable text as asked
    # A client cannot send an escape: its backslash is escaped, so the two stay apart.
    assert escape_text("/a\\x0ab") == "/a\\\\x0ab"
    assert escape_text("/a\\x0ab") != escape_text("/a\nb")
    for text in ("\\", "\\\\x0a", "a\\u2028\u2028", "\x00\\x00"):
        assert unescape_text(escape_text(text)) == text


@pytest.fixture
def api_server(store: Store, server_tls: TlsFiles) -> Iterator[Server]:
    with serving(store, server_tls) as server:
        yield server


def test_a_forged_line_in_a_path_is_stored_escaped_and_the_chain_verifies(
    api_server: Server, raw: sa.Engine
) -> None:
    server = api_server
    auditor = server.client(server.user(Role.AUDITOR, "alice"))
    asked = {
        "/api/v1/nosuch%0aFORGED%20entry": "/api/v1/nosuch\\x0aFORGED entry",
        "/api/v1/x%0d%0a2026-01-01%20admin": "/api/v1/x\\x0d\\x0a2026-01-01 admin",
        "/api/v1/%E2%80%A8%C2%85%1B[31m": "/api/v1/\\u2028\\x85\\x1b[31m",
        "/api/v1/%E2%80%AEtxt.exe": "/api/v1/\\u202etxt.exe",
        "/api/v1/fake%5Cx0aescape": "/api/v1/fake\\\\x0aescape",  # a literal backslash
    }
    for path in asked:
        assert_error(auditor.get(path), 404, "not_found")
    stored = [
        e for e in entries(raw) if e[2].startswith("GET /api/v1/") and e[4] == "404 not_found"
    ]
    assert [e[2] for e in stored] == [f"GET {escaped}" for escaped in asked.values()]
    assert unescape_text(stored[0][2]) == "GET /api/v1/nosuch\nFORGED entry"
    assert unescape_text(stored[4][2]) == "GET /api/v1/fake\\x0aescape"

    # A line-based export of the API's listing: one line per entry, none of them forged.
    listing = auditor.get("/api/v1/audit", params={"limit": 500}).json()
    fields = ("seq", "at", "actor", "role", "action", "source", "outcome")
    export = "".join("\t".join(str(e[f]) for f in fields) + "\n" for e in listing["items"])
    lines = export.splitlines()  # splits at \r, \x1c-\x1e, \x85, \u2028, \u2029 too
    assert len(lines) == listing["total"] == len(listing["items"])
    assert all(line.split("\t")[0].isdigit() for line in lines)
    assert not any(line.startswith(("FORGED", "2026-01-01")) for line in lines)

    verdict = server.store.verify_audit()
    assert verdict.ok, verdict


# --------------------------------------------------------------------------- hole 5

AUDIT_KEY = AuditKey(secrets.token_bytes(32), keyed_from=1)


@pytest.fixture(params=["plain", "keyed"])
def chain_store(request: pytest.FixtureRequest, store_url: str, store: Store) -> Iterator[Store]:
    """The store with a plain SHA-256 chain, or with the collector's audit key."""
    if request.param == "plain":
        yield store
        return
    keyed = Store.open(store_url, audit_key=AUDIT_KEY)
    yield keyed
    keyed.close()


@pytest.fixture(scope="module")
def report_template() -> dict[str, object]:
    return agent_report()


def _head(engine: sa.Engine) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT hash, mac FROM audit_head")).one()
    return str(row.hash), row.mac


def _set_head(engine: sa.Engine, hash_: str, mac: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_head SET hash = :h, mac = :m"), {"h": hash_, "m": mac})


def test_nothing_is_answered_without_its_entry_while_the_head_is_altered(
    chain_store: Store,
    raw: sa.Engine,
    server_tls: TlsFiles,
    report_template: dict[str, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serving(chain_store, server_tls) as server:
        admin_token = server.user(Role.ADMIN, "root")
        admin = server.client(admin_token)
        auditor = server.client(server.user(Role.AUDITOR, "alice"))
        agent = enrol(server, "his-db-01")
        reporter = server.client(agent.token)
        assert admin.get("/api/v1/users").status_code == 200
        assert server.client().get("/healthz").status_code == 200
        saved = _head(raw)
        written = entries(raw)

        _set_head(raw, "f" * 64, saved[1])  # the head moved (and, keyed, its MAC now wrong)
        with caplog.at_level(logging.INFO, logger="medsec.collector"):
            # Changes first, before any read has seen the damage: checked before they run.
            assert_error(admin.post("/api/v1/agents/his-db-01/revoke"), 503, "audit_unavailable")
            report = agent.seal(make_report(report_template, host="ward-1"))
            assert_error(reporter.post("/api/v1/reports", content=report), 503, "audit_unavailable")
            for client, path in (
                (auditor, "/api/v1/hosts"),
                (admin, "/api/v1/users"),
                (auditor, "/api/v1/nosuch%0aFORGED%20entry"),
            ):
                body = assert_error(client.get(path), 503, "audit_unavailable")
                assert "altered" in body["message"]
            health = assert_error(server.client().get("/healthz"), 503, "audit_unavailable")
            assert "altered" in health["message"]
        assert entries(raw) == written  # nothing answered, nothing written
        assert server.store.list_agents()[0].revoked_at is None  # the change was not made
        assert server.store.list_hosts(10, 0).total == 0
        said = [
            r.getMessage() for r in caplog.records if "audit entry not written" in r.getMessage()
        ]
        assert len(said) == 5, said
        assert all("\n" not in line and "AuditAltered" in line for line in said)
        assert any("GET /api/v1/nosuch\\x0aFORGED entry by - from" in line for line in said), said
        assert not any(admin_token in line or agent.token in line for line in said)

        _set_head(raw, *saved)  # put back: the next probe writes and the collector recovers
        assert server.client().get("/healthz").status_code == 200
        assert entries(raw)[-1] == ("-", "-", "GET /healthz", "127.0.0.1", "200")
        assert auditor.get("/api/v1/hosts").status_code == 200
        assert admin.post("/api/v1/agents/his-db-01/revoke").status_code == 200
        assert entries(raw)[-2:] == [
            ("alice", "auditor", "GET /api/v1/hosts", "127.0.0.1", "200"),
            ("root", "admin", "POST /api/v1/agents/his-db-01/revoke", "127.0.0.1", "200"),
        ]
        assert any("audit log writable again" in r.getMessage() for r in caplog.records), [
            r.getMessage() for r in caplog.records
        ]
        verdict = server.store.verify_audit()
        assert verdict.ok, verdict


def test_a_deleted_last_entry_stops_the_log_until_it_is_back(
    api_server: Server, raw: sa.Engine
) -> None:
    """The head left as it was, its entry gone: nothing is appended onto a chain whose end is
    missing (checked in the statement that moves the head)."""
    server = api_server
    auditor = server.client(server.user(Role.AUDITOR, "alice"))
    assert auditor.get("/api/v1/hosts").status_code == 200
    last = "SELECT * FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)"
    with raw.begin() as conn:
        row = conn.execute(sa.text(last)).mappings().one()
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = :seq"), {"seq": row["seq"]})
    body = assert_error(auditor.get("/api/v1/hosts"), 503, "audit_unavailable")
    assert f"last entry ({row['seq']}) is missing" in body["message"]
    with raw.begin() as conn:
        conn.execute(sa.insert(sa.table("audit_log", *map(sa.column, row.keys()))), [dict(row)])
    assert auditor.get("/api/v1/hosts").status_code == 200
    assert server.store.verify_audit().ok
