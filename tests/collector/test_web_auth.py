"""Dashboard sign-in against a real collector: uvicorn over TLS on loopback serving `create_app`
with the dashboard mounted, on SQLite and on PostgreSQL, driven by httpx as a browser would be
(cookies kept by the client, redirects looked at one by one).

Besides the sign-in routes, the app gets three small routes guarded by the real dependencies
(`page_user`, `csrf_checked`) that answer who the dependency let in: the pages' own tests
(test_web_pages, test_web_network) exercise the same dependencies through the real pages.
"""

# No `from __future__ import annotations`: FastAPI reads the probe routes' annotations at runtime.

import functools
import hashlib
import html
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, Depends
from starlette.routing import NoMatchFound

from checks.catalog import builtin_catalogs
from collector.api import create_app
from collector.models import Role
from collector.scans import ScanLauncher
from collector.settings import (
    CollectorSettings,
    DashboardSettings,
    SnapshotSettings,
    TlsSettings,
)
from collector.store import Store
from collector.tls import uvicorn_config
from collector.web import mount
from collector.web.auth import COOKIE, PRELOGIN_COOKIE, csrf_checked, page_user
from collector.web.context import WebContext, WebUser
from tests.collector.fixtures_api import Clock, Server, TlsFiles, free_port, make_server_tls

PASSWORD = "correct horse battery staple"  # noqa: S105 — a test user's password
WRONG = "incorrect pony battery staple"
MEDSEC = str(Path(sys.executable).parent / "medsec")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_server_tls(tmp_path_factory.mktemp("tls"))


def _probe_routes(ctx: WebContext) -> APIRouter:
    """Routes that say which user the real dependencies let in (and that user's CSRF token)."""
    routes = APIRouter()

    def shown(user: WebUser) -> dict[str, str]:
        return {
            "name": user.name,
            "role": user.role.value,
            "locale": user.locale,
            "csrf": user.csrf,
        }

    @routes.get("/probe/auditor")
    async def auditor(
        user: Annotated[WebUser, Depends(page_user(ctx, Role.AUDITOR))],
    ) -> dict[str, str]:
        return shown(user)

    @routes.get("/probe/admin")
    async def admin(
        user: Annotated[WebUser, Depends(page_user(ctx, Role.ADMIN))],
    ) -> dict[str, str]:
        return shown(user)

    @routes.post("/probe/operator")
    async def operator(
        user: Annotated[WebUser, Depends(csrf_checked(ctx, Role.OPERATOR))],
    ) -> dict[str, str]:
        return shown(user)

    return routes


def start_web(store: Store, tls: TlsFiles, dashboard: DashboardSettings) -> Server:
    """The collector with its dashboard, as `medsec serve` runs it. Until `create_app` mounts the
    dashboard itself, it is mounted here exactly as create_app is asked to (`mount`)."""
    clock = Clock()
    settings = CollectorSettings(
        tls=TlsSettings(cert_file=str(tls.cert), key_file=str(tls.key)),
        database="sqlite:///unused-by-the-app.db",
        listen=f"127.0.0.1:{free_port()}",
        dashboard=dashboard,
        snapshots=SnapshotSettings(
            dir=str(tls.cert.parent / f"snapshots-{uuid.uuid4().hex[:8]}"),
            key_file=str(tls.cert.parent / "snapshot.key"),
        ),
    )
    app = create_app(settings, store, clock=clock)
    ctx = WebContext(
        settings, store, builtin_catalogs(), clock, ScanLauncher(settings.scans, store, clock)
    )
    try:
        app.url_path_for("web_login")
    except NoMatchFound:
        mount(app, ctx)
    app.include_router(_probe_routes(ctx))
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
    return Server(f"https://127.0.0.1:{settings.port}", store, clock, settings, tls, server, thread)


@pytest.fixture
def web(store: Store, tls: TlsFiles) -> Iterator[Server]:
    server = start_web(
        store,
        tls,
        DashboardSettings(session_minutes=60, idle_minutes=30, failure_delay_ms=150),
    )
    try:
        yield server
    finally:
        server.stop()


def add_user(server: Server, name: str, role: Role, password: str = PASSWORD) -> str:
    """A user with an API token (returned) and a dashboard password."""
    _, token = server.store.add_user(name, role, server.clock())
    server.store.set_password(name, password)
    return token


def login_form(client: httpx.Client, **query: str) -> str:
    """Open the sign-in form; the pre-login token it carries (the same as its cookie)."""
    page = client.get("/login", params=query)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    assert client.cookies.get(PRELOGIN_COOKIE) == found.group(1)
    return found.group(1)


def sign_in(
    client: httpx.Client, name: str, password: str = PASSWORD, **query: str
) -> httpx.Response:
    token = login_form(client, **query)
    return client.post(
        "/login", params=query, data={"csrf": token, "name": name, "password": password}
    )


def refusal(page: httpx.Response) -> str:
    """The refusal the sign-in page shows."""
    found = re.search(r'class="form-error"[^>]*>([^<]*)<', page.text)
    assert found is not None, page.text
    return html.unescape(found.group(1))


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            parts = [p.strip() for p in header.split(";")]
            attributes = {"value": parts[0].split("=", 1)[1]}
            for part in parts[1:]:
                key, _, value = part.partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def audit_lines(store: Store) -> list[tuple[str, str, str, str]]:
    return [(e.actor, e.role, e.action, e.outcome) for e in store.audit_entries(10_000, 0).items]


def no_password_in_audit(store: Store, *passwords: str) -> None:
    for entry in store.audit_entries(10_000, 0).items:
        text = " ".join((entry.actor, entry.role, entry.action, entry.source, entry.outcome))
        for password in passwords:
            assert password not in text, entry


# --------------------------------------------------------------------------- tests


def test_login_sets_a_strict_server_side_cookie_and_pages_get_the_user(
    web: Server, store_url: str
) -> None:
    add_user(web, "alice", Role.AUDITOR)
    browser = web.client()

    # Signed out: a page sends the browser to the sign-in form, remembering where it was.
    page = browser.get("/probe/auditor", params={"x": "1"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/probe/auditor%3Fx%3D1"
    form = browser.get("/login", params={"next": "/probe/auditor"})
    prelogin = cookie_attributes(form, PRELOGIN_COOKIE)
    assert {"secure", "httponly", "path"} <= prelogin.keys()
    assert prelogin["samesite"].lower() == "strict"
    assert prelogin["path"] == "/"
    assert "domain" not in prelogin  # the __Host- prefix demands it

    done = sign_in(browser, "alice", next="/probe/auditor")
    assert done.status_code == 303
    assert done.headers["location"] == "/probe/auditor"
    cookie = cookie_attributes(done, COOKIE)
    assert {"secure", "httponly"} <= cookie.keys()
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == str(60 * 60)  # session_minutes

    # The server keeps the cookie's hash, never the cookie.
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT id, csrf FROM web_logins")).all()
    finally:
        engine.dispose()
    assert [row.id for row in stored] == [hashlib.sha256(cookie["value"].encode()).hexdigest()]

    me = browser.get("/probe/auditor")
    assert me.status_code == 200
    assert me.json() | {"csrf": ""} == {
        "name": "alice",
        "role": "auditor",
        "locale": "zh",
        "csrf": "",
    }
    assert me.json()["csrf"] == stored[0].csrf
    # Signed in already: the form sends the browser on.
    again = browser.get("/login", params={"next": "/probe/auditor"})
    assert (again.status_code, again.headers["location"]) == (303, "/probe/auditor")
    # A role too low is the 403 page, in the user's language.
    admin = browser.get("/probe/admin")
    assert admin.status_code == 403
    assert "text/html" in admin.headers["content-type"]
    assert "管理员" in admin.text

    lines = audit_lines(web.store)
    assert ("alice", "auditor", "dashboard login", "303") in lines
    assert ("alice", "auditor", "GET /probe/auditor", "200") in lines  # the request's own entry
    assert ("alice", "auditor", "GET /probe/admin", "403") in lines
    no_password_in_audit(web.store, PASSWORD)


def test_next_never_leaves_the_collector(web: Server) -> None:
    add_user(web, "alice", Role.AUDITOR)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "/logout"):
        browser = web.client()
        done = sign_in(browser, "alice", next=target)
        assert (done.status_code, done.headers["location"]) == (303, "/"), target


def test_five_wrong_passwords_lock_the_account_until_the_lockout_ends(web: Server) -> None:
    add_user(web, "alice", Role.OPERATOR)
    browser = web.client()
    delay = web.settings.dashboard.failure_delay_ms / 1000

    started = time.monotonic()
    unknown = sign_in(browser, "mallory", WRONG)
    assert time.monotonic() - started >= delay
    assert unknown.status_code == 401
    assert COOKIE not in unknown.cookies
    for attempt in range(1, 5):
        started = time.monotonic()
        wrong = sign_in(browser, "alice", WRONG)
        assert time.monotonic() - started >= delay
        assert wrong.status_code == 401, attempt
        # An unknown user and a wrong password are told the same.
        assert refusal(wrong) == refusal(unknown) == "用户名或密码错误。"
    fifth = sign_in(browser, "alice", WRONG, lang="en")
    assert fifth.status_code == 423
    assert "locked" in refusal(fifth)
    assert web.clock().strftime("%Y-%m-%d") in refusal(fifth)

    # The right password is refused while the account is locked, saying until when.
    right = sign_in(browser, "alice", PASSWORD, lang="en")
    assert right.status_code == 423
    until = (web.clock() + timedelta(minutes=15)).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert refusal(right) == f"This account is locked after repeated failed sign-ins until {until}."
    assert COOKIE not in right.cookies
    web.clock.advance(timedelta(minutes=14, seconds=59))
    assert sign_in(browser, "alice", PASSWORD).status_code == 423
    web.clock.advance(timedelta(seconds=1))
    done = sign_in(browser, "alice", PASSWORD)
    assert done.status_code == 303
    assert browser.get("/probe/auditor").json()["name"] == "alice"

    lines = audit_lines(web.store)
    assert ("mallory", "-", "dashboard login", "401 unknown_user") in lines
    assert lines.count(("alice", "-", "dashboard login", "401 wrong_password")) == 5
    lockouts = [line for line in lines if line[2] == "dashboard lockout"]
    stamp = until.replace(" UTC", "Z").replace(" ", "T")
    assert lockouts == [
        ("alice", "-", "dashboard lockout", f"locked until {stamp} after 5 failed logins")
    ]
    assert lines.count(("alice", "-", "dashboard login", f"423 locked until {stamp}")) == 2
    assert ("alice", "operator", "dashboard login", "303") in lines
    no_password_in_audit(web.store, PASSWORD, WRONG)


def test_a_failed_login_waits_without_holding_up_other_requests(
    store: Store, tls: TlsFiles
) -> None:
    server = start_web(store, tls, DashboardSettings(failure_delay_ms=1500))
    try:
        add_user(server, "alice", Role.AUDITOR)
        attacker, other = server.client(), server.client()
        token = login_form(attacker)
        answered: list[float] = []

        def fail() -> None:
            started = time.monotonic()
            page = attacker.post("/login", data={"csrf": token, "name": "alice", "password": WRONG})
            assert page.status_code == 401
            answered.append(time.monotonic() - started)

        failing = threading.Thread(target=fail)
        failing.start()
        # The failure's audit entry is written just before its wait begins.
        deadline = time.monotonic() + 20
        while ("alice", "-", "dashboard login", "401 wrong_password") not in audit_lines(store):
            assert time.monotonic() < deadline, "the failure was never audited"
            time.sleep(0.02)
        started = time.monotonic()
        assert other.get("/login").status_code == 200
        elsewhere = time.monotonic() - started
        failing.join(timeout=30)
        assert answered, "the failed login was not answered"
        assert answered[0] >= 1.5
        # Served during the failure's 1.5 s wait, not after it: the wait holds up no one else.
        assert elsewhere < 0.75, f"a page took {elsewhere:.2f} s while a failure waited"
    finally:
        server.stop()


def test_logout_ends_the_login_and_the_old_cookie_is_refused(web: Server) -> None:
    add_user(web, "alice", Role.OPERATOR)
    browser = web.client()
    assert sign_in(browser, "alice").status_code == 303
    old = browser.cookies[COOKIE]
    csrf = browser.get("/probe/auditor").json()["csrf"]

    # Logging out is a form like any other: without the login's token it is refused.
    assert browser.post("/logout").status_code == 403
    assert browser.post("/logout", data={"csrf": "x" * 43}).status_code == 403
    assert browser.get("/probe/auditor").status_code == 200
    out = browser.post("/logout", data={"csrf": csrf})
    assert (out.status_code, out.headers["location"]) == (303, "/login")
    assert cookie_attributes(out, COOKIE)["max-age"] == "0"

    replay = web.client()
    replay.cookies.set(COOKIE, old)
    gone = replay.get("/probe/auditor")
    assert gone.status_code == 303
    assert gone.headers["location"].startswith("/login?next=")
    assert replay.post("/probe/operator", data={"csrf": csrf}).status_code == 401
    assert replay.post("/logout", data={"csrf": csrf}).status_code == 401
    assert ("alice", "operator", "dashboard logout", "303") in audit_lines(web.store)

    # A user removed while signed in is signed out with them.
    assert sign_in(browser, "alice").status_code == 303
    assert browser.get("/probe/auditor").status_code == 200
    web.store.remove_user("alice")
    assert browser.get("/probe/auditor").status_code == 303


def test_a_login_ends_when_idle_and_at_its_absolute_end(web: Server) -> None:
    add_user(web, "alice", Role.AUDITOR)
    idle = web.client()
    assert sign_in(idle, "alice").status_code == 303
    busy = web.client()
    assert sign_in(busy, "alice").status_code == 303

    # idle_minutes 30: used after 29 minutes it lives on; after 30 more unused it is gone.
    web.clock.advance(timedelta(minutes=29))
    assert idle.get("/probe/auditor").status_code == 200
    assert busy.get("/probe/auditor").status_code == 200
    web.clock.advance(timedelta(minutes=29))
    assert busy.get("/probe/auditor").status_code == 200  # 58 minutes in, used every 29
    web.clock.advance(timedelta(minutes=1))
    assert idle.get("/probe/auditor").status_code == 303  # 30 minutes unused

    # session_minutes 60: however busy, the login ends 60 minutes after it began.
    assert busy.get("/probe/auditor").status_code == 200  # 59 minutes in
    web.clock.advance(timedelta(minutes=1))
    assert busy.get("/probe/auditor").status_code == 303


def test_every_post_needs_the_login_csrf_token_and_the_login_form_its_own(web: Server) -> None:
    add_user(web, "olga", Role.OPERATOR)
    add_user(web, "anna", Role.AUDITOR)
    operator = web.client()
    assert sign_in(operator, "olga").status_code == 303
    csrf = operator.get("/probe/auditor").json()["csrf"]
    assert operator.post("/probe/operator").status_code == 403
    assert operator.post("/probe/operator", data={"csrf": ""}).status_code == 403
    assert operator.post("/probe/operator", data={"csrf": csrf[:-1] + "x"}).status_code == 403
    assert operator.post("/probe/operator", json={"csrf": csrf}).status_code == 415
    assert operator.post("/probe/operator", data={"csrf": csrf}).json()["name"] == "olga"

    # An auditor's own token does not make an operator of them.
    auditor = web.client()
    assert sign_in(auditor, "anna").status_code == 303
    anna_csrf = auditor.get("/probe/auditor").json()["csrf"]
    assert anna_csrf != csrf
    assert auditor.post("/probe/operator", data={"csrf": anna_csrf}).status_code == 403
    assert auditor.post("/probe/operator", data={"csrf": csrf}).status_code == 403

    # The sign-in form: a POST without the pre-login cookie (another site's form) is refused
    # before the password is looked at, and counts as no failure.
    forged = web.client()
    posted = forged.post("/login", data={"csrf": "a" * 43, "name": "olga", "password": PASSWORD})
    assert posted.status_code == 403
    assert COOKIE not in posted.cookies
    mismatched = web.client()
    login_form(mismatched)
    posted = mismatched.post(
        "/login", data={"csrf": "b" * 43, "name": "olga", "password": PASSWORD}
    )
    assert posted.status_code == 403
    assert COOKIE not in posted.cookies
    assert not any(
        line[2] == "dashboard login" and line[0] == "olga" and line[3] != "303"
        for line in audit_lines(web.store)
    )


def test_the_login_cookie_is_no_api_token_and_an_api_token_signs_no_one_in(web: Server) -> None:
    token = add_user(web, "alice", Role.ADMIN)
    browser = web.client()
    assert sign_in(browser, "alice").status_code == 303
    assert browser.get("/probe/admin").status_code == 200
    refused = browser.get("/api/v1/hosts")
    assert refused.status_code == 401
    assert refused.json()["error"] == "unauthenticated"

    api = web.client(token)
    assert api.get("/api/v1/hosts").status_code == 200
    page = api.get("/probe/auditor")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    # A form posted with the token only (and a guessed CSRF field) is refused too.
    assert api.post("/probe/operator", data={"csrf": "x"}).status_code == 401


def test_the_language_switch_is_remembered_with_the_user(web: Server) -> None:
    add_user(web, "alice", Role.AUDITOR)
    browser = web.client()
    assert sign_in(browser, "alice").status_code == 303
    csrf = browser.get("/probe/auditor").json()["csrf"]
    assert browser.post("/ui/locale", data={"csrf": csrf, "locale": "fr"}).status_code == 400
    assert browser.post("/ui/locale", data={"locale": "en"}).status_code == 403
    switched = browser.post(
        "/ui/locale", data={"csrf": csrf, "locale": "en", "next": "/probe/auditor?x=1"}
    )
    assert (switched.status_code, switched.headers["location"]) == (303, "/probe/auditor?x=1")
    elsewhere = browser.post(
        "/ui/locale", data={"csrf": csrf, "locale": "en", "next": "https://evil.example/"}
    )
    assert elsewhere.headers["location"] == "/"
    assert browser.get("/probe/auditor").json()["locale"] == "en"
    # Remembered with the user, not the browser: another browser signs in to English.
    other = web.client()
    assert sign_in(other, "alice").status_code == 303
    assert other.get("/probe/auditor").json()["locale"] == "en"
    assert "Not allowed" in other.get("/probe/admin").text


# --------------------------------------------------------------------------- medsec users passwd

_UNWIRED = """
import sys
from collector import cli
from collector.web.cli import add_passwd_parser, passwd_command

# The hook collector/cli.py is to carry (notes/requests-D1.md), applied in-process.
def wired():
    import argparse
    p = argparse.ArgumentParser(prog="medsec")
    sub = p.add_subparsers(dest="command", required=True)
    users = sub.add_parser("users").add_subparsers(dest="action", required=True)
    add_passwd_parser(users, cli._config_arg)
    return p
cli._parser = wired
cli._COMMANDS["users"] = passwd_command
sys.exit(cli.main(sys.argv[1:]))
"""


@functools.cache
def _passwd_command() -> list[str]:
    """`medsec users passwd`, or, until collector/cli.py is hooked, the same through its hook."""
    probe = subprocess.run(
        [MEDSEC, "users", "passwd", "--help"], capture_output=True, timeout=60, check=False
    )
    return [MEDSEC] if probe.returncode == 0 else [sys.executable, "-c", _UNWIRED]


def passwd(command: list[str], config: Path, name: str, stdin: bytes) -> tuple[int, str, str]:
    done = subprocess.run(
        [*command, "users", "passwd", name, "--config", str(config)],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def write_config(folder: Path, tls: TlsFiles, store_url: str) -> Path:
    config = folder / "collector.yaml"
    config.write_text(
        f'tls: {{cert_file: "{tls.cert}", key_file: "{tls.key}"}}\ndatabase: "{store_url}"\n',
        encoding="utf-8",
    )
    return config


def test_passwd_reads_stdin_sets_the_password_and_ends_the_users_logins(
    web: Server, store_url: str, tmp_path: Path
) -> None:
    add_user(web, "alice", Role.AUDITOR)
    add_user(web, "bob", Role.AUDITOR)
    config = write_config(tmp_path, web.tls, store_url)
    alice = web.client()
    assert sign_in(alice, "alice").status_code == 303
    bob = web.client()
    assert sign_in(bob, "bob").status_code == 303
    command = _passwd_command()
    new = "a new passphrase, long enough"

    code, out, err = passwd(command, config, "alice", f"{new}\n".encode())
    assert code == 0, err
    assert out.strip() == "dashboard password of user alice set; 1 dashboard login ended"
    assert new not in out + err
    assert alice.get("/probe/auditor").status_code == 303  # her login ended
    assert bob.get("/probe/auditor").status_code == 200  # his did not
    assert sign_in(web.client(), "alice", PASSWORD).status_code == 401
    assert sign_in(web.client(), "alice", new).status_code == 303

    code, _, err = passwd(command, config, "alice", b"short\n")
    assert (code, err.strip()) == (2, "medsec: the password must have at least 12 characters")
    code, _, err = passwd(command, config, "nobody", f"{new}\n".encode())
    assert (code, err.strip()) == (2, "medsec: no user named 'nobody'")
    assert sign_in(web.client(), "alice", new).status_code == 303  # nothing was changed

    lines = audit_lines(web.store)
    cli_lines = [(action, outcome) for _, role, action, outcome in lines if role == "cli"]
    assert ("cli users passwd alice", "0") in cli_lines
    assert ("cli users passwd alice", "2 password_refused") in cli_lines
    assert ("cli users passwd nobody", "2 not_found") in cli_lines
    no_password_in_audit(web.store, PASSWORD, new, "short")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # input checks: no database's
def test_passwd_takes_exactly_one_line_of_utf8_that_the_rules_accept(
    store: Store, store_url: str, tls: TlsFiles, tmp_path: Path
) -> None:
    store.add_user("alice", Role.AUDITOR, datetime.now(UTC))
    config = write_config(tmp_path, tls, store_url)
    for stdin, said in (
        (b"my name is Alice, ok?\n", "the password must not contain the user name"),
        (b"a fine passphrase\nsecond line\n", "on one line, and nothing else"),
        (b"", "no password on standard input"),
        (b"\xff\xfe not utf-8 at all\n", "the password on standard input is not UTF-8"),
    ):
        code, out, err = passwd(_passwd_command(), config, "alice", stdin)
        assert code == 2, (stdin, err)
        assert said in err
        assert err.count("\n") == 1
        assert "Traceback" not in err
        assert out == ""
    outcomes = [e.outcome for e in store.audit_entries(100, 0).items]
    assert outcomes == [
        "2 password_refused",
        "2 invalid_password_input",
        "2 invalid_password_input",
        "2 invalid_password_input",
    ]
    assert "my name is" not in " ".join(e.action for e in store.audit_entries(100, 0).items)
