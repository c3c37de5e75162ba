"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against a
real collector (`medsec serve`) filled by a real agent run, a fleet of pushed reports, a lab scan
and an SNMP inventory of the lab's router (tests/web/served.py). What a person would do: an
auditor signs in, sees both heat maps, follows a failing clause to its evidence and to the host's
disk table, makes a snapshot, downloads it and verifies it; is offered no operator action and is
refused one made from the page anyway; an operator starts a scan of the lab and watches it end;
signing out ends the login for the old cookie too; five wrong passwords lock the account for the
configured time; HTML in a hostname and a message is shown as text; unknown hosts and clauses are
404 pages. Every page is photographed at 1366×768 and 1920×1080 in Chinese and English and
checked for layout breakage (a horizontal scroll, text overflowing its table cell).

The collector's certificate is `medsec init`'s self-signed one, which the browser is told to
accept (`ignore_https_errors`): the cookie is still a Secure one over TLS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from collector.compliance.snapshot_verify import verify_snapshot
from tests.web.served import (
    LOCKOUT_MINUTES,
    LONG_HOST,
    SCRIPT_HOST,
    SCRIPT_MESSAGE,
    Collector,
    User,
)

# One worker runs these one after another (tests/conftest.py WORKER_GROUPS): one browser.
"""With the lab's tests, on one worker: the `collector` fixture builds the lab where it can (asked
for at run time, so tests/conftest.py's grouping cannot see it in the fixture list)."""
SIZES = ((1366, 768), (1920, 1080))
GBT = "gbt22239-2019-l3"
LAYOUT = r"""() => {
  const problems = [];
  const doc = document.scrollingElement;
  const ruler = document.createElement('canvas').getContext('2d');
  for (const cell of document.querySelectorAll('td, th')) {
    if (cell.offsetParent === null) continue;  // not shown (a closed <details>, display: none)
    const style = getComputedStyle(cell);
    if (cell.scrollWidth > cell.clientWidth + 1 && style.textOverflow !== 'ellipsis') {
      problems.push(`cell <${cell.tagName.toLowerCase()}> ${cell.scrollWidth}px in ` +
                    `${cell.clientWidth}px: ${cell.innerText.trim().slice(0, 60)}`);
    }
    if (cell.tagName === 'TH') {
      const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
      const room = cell.clientWidth - padding;
      ruler.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      for (const word of cell.innerText.split(/\s+/)) {
        if (/^[\x21-\x7e]+$/.test(word) && ruler.measureText(word).width > room + 1) {
          problems.push(`heading word broken: "${word}" in ${Math.round(room)}px`);
        }
      }
    }
  }
  return {scrollWidth: doc.scrollWidth, innerWidth: window.innerWidth, cells: problems};
}"""
"""What a person would see as broken: the page wider than the window, a table cell whose content
runs past its edge (clipped with an ellipsis is fine: the full text is its title), or a column
heading with a word broken in two because its column is too narrow (Latin words only: Chinese
wraps between any two characters, and long values in data cells, hashes and paths, may break)."""

Opener = Callable[..., Page]


@pytest.fixture
def open_page(chromium: Browser, collector: Collector) -> Iterator[Opener]:
    """New pages, each in a browser context of its own (its own cookies), closed after."""
    contexts = []

    def opened(size: tuple[int, int] = SIZES[0]) -> Page:
        context = chromium.new_context(
            base_url=collector.url,
            ignore_https_errors=True,
            viewport={"width": size[0], "height": size[1]},
            accept_downloads=True,
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        return page

    yield opened
    for context in contexts:
        context.close()


def sign_in(page: Page, user: User, password: str | None = None) -> None:
    page.goto("/login")
    page.fill("#login-name", user.name)
    page.fill("#login-password", user.password if password is None else password)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()


def signed_in(open_page: Opener, collector: Collector, name: str, **kw: Any) -> Page:
    page = open_page(**kw)
    sign_in(page, collector.users[name])
    expect(page).not_to_have_url(re.compile(r"/login"))
    return page


def csrf_of(page: Page) -> str:
    """The login's CSRF token, as every form of the page carries it."""
    return str(page.locator("form[action='/logout'] input[name=csrf]").get_attribute("value"))


# --------------------------------------------------------------------------- an auditor


def test_auditor_follows_a_failing_clause_to_its_evidence_and_the_host_disks(
    open_page: Opener, collector: Collector
) -> None:
    page = signed_in(open_page, collector, "audit-li")
    expect(page).to_have_url(re.compile(r"/$"))
    for standard in (GBT, "mnds"):
        expect(page.locator(f"#heat-{standard} svg.heat")).to_be_visible()
    # The heat map's cell of failing clauses in 8.1.4 (computing environment: host checks).
    page.locator(f"#heat-{GBT} svg.heat a[href*='status=fail'][href*='8.1.4']").first.click()
    expect(page).to_have_url(re.compile(r"status=fail"))
    page.locator(f"#clauses a[href^='/clauses/{GBT}/']").first.click()
    expect(page).to_have_url(re.compile(rf"/clauses/{GBT}/8\.1\.4"))
    expect(page.locator("h1 .badge.st-fail")).to_be_visible()

    failing = page.locator("#objects tr.obj").filter(has=page.locator(".badge.st-fail")).first
    evidence = failing.locator(".evidence").first
    expect(evidence.locator("code")).to_have_text(re.compile(r"^[a-z]+\.[a-z_]+$"))
    evidence.locator("summary").click()
    expect(evidence.locator("pre")).to_be_visible()
    assert evidence.locator("pre").inner_text().strip().startswith("{")

    host = failing.locator("a[href^='/hosts/']")
    hostname = host.inner_text()
    host.click()
    expect(page.locator("h1")).to_contain_text(hostname[:20])
    disks = page.locator("#disks table.disks")
    expect(disks).to_be_visible()
    assert disks.locator("tbody tr").count() >= 1
    assert disks.locator("thead th").count() >= 4


def test_auditor_makes_a_snapshot_downloads_it_and_it_verifies(
    open_page: Opener, collector: Collector, tmp_path: Path
) -> None:
    page = signed_in(open_page, collector, "audit-li")
    page.goto("/snapshots")
    with page.expect_navigation(timeout=180_000):  # a snapshot renders both PDFs: seconds
        page.click("#create-snapshot button[type=submit]", no_wait_after=True)
    made = page.locator("#snapshots tr.made")
    expect(made).to_be_visible()
    fingerprint = made.locator("td.mono .clip.muted").get_attribute("title")
    assert fingerprint
    with page.expect_download() as started:
        made.locator("a[href$='/download']").click()
    path = tmp_path / started.value.suggested_filename
    started.value.save_as(path)
    verdict = verify_snapshot(path, expect_key=fingerprint)
    assert verdict.intact, verdict.findings or verdict.problem
    assert verdict.hosts == len(collector.hosts)
    assert verdict.created_by == "audit-li"

    with page.expect_download() as report:
        page.locator(f"#reports a[href='/reports/{GBT}.json']").click()
    body = Path(report.value.path()).read_text(encoding="utf-8")
    assert '"schema":"medsec.compliance/v1"' in body.replace(" ", "")


def test_auditor_is_offered_no_operator_action_and_is_refused_one(
    open_page: Opener, collector: Collector
) -> None:
    page = signed_in(open_page, collector, "audit-li")
    page.goto("/network")
    expect(page.locator("#scans")).to_be_visible()
    expect(page.locator("form[action='/scans']")).to_have_count(0)
    with collector.client(collector.api_token) as client:
        before = client.get("/api/v1/scans").json()["total"]
        answer = page.evaluate(
            """async ([csrf]) => {
                const body = new URLSearchParams({csrf, zones: 'lab'});
                const r = await fetch('/scans', {method: 'POST', body, redirect: 'manual'});
                return {status: r.status, text: await r.text()};
            }""",
            [csrf_of(page)],
        )
        after = client.get("/api/v1/scans").json()["total"]
    assert answer["status"] == 403
    assert "<html" in answer["text"].lower(), "the refusal is the 403 page, not a bare error"
    assert after == before, "the refused POST started no scan"


def test_operator_starts_a_scan_of_the_lab_and_watches_it_end(
    open_page: Opener, collector: Collector
) -> None:
    if collector.lab_zones is None:
        pytest.skip("no lab could be built here: nothing to scan")
    page = signed_in(open_page, collector, "ops-wang")
    page.goto("/network")
    page.select_option("#start-scan select[name=zones]", "lab")
    page.click("#start-scan button[type=submit]")
    expect(page).to_have_url(re.compile(r"/scans/[0-9a-f-]{36}$"))
    state = page.locator("#scan-state")
    if state.get_attribute("data-state") == "running":
        assert page.locator("meta[http-equiv=refresh]").count() == 1, (
            "a running scan's page reloads"
        )
    # The page reloads itself until the scan ends; `expect` reads it again after each reload.
    expect(state).to_have_attribute("data-state", re.compile("passed|findings"), timeout=240_000)
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
    scan_url = page.url
    page.goto("/network")
    row = page.locator(f"#scans a[href='{scan_url.removeprefix(collector.url)}']")
    expect(row).to_have_count(1)
    expect(page.locator("#scans tbody")).to_contain_text("ops-wang")


# --------------------------------------------------------------------------- logins


def test_signing_out_ends_the_login_for_the_old_cookie_too(
    open_page: Opener, collector: Collector
) -> None:
    page = signed_in(open_page, collector, "audit-sun")
    cookies = page.context.cookies()
    assert any(c["httpOnly"] and c["secure"] and c["sameSite"] == "Strict" for c in cookies)
    page.click("form[action='/logout'] button")
    expect(page).to_have_url(re.compile(r"/login"))

    replay = open_page()
    replay.context.add_cookies(cookies)  # type: ignore[arg-type]
    replay.goto("/hosts")
    expect(replay).to_have_url(re.compile(r"/login\?next=/hosts"))
    expect(replay.locator("#login-name")).to_be_visible()


def test_five_wrong_passwords_lock_the_account_for_the_configured_time(
    open_page: Opener, collector: Collector
) -> None:
    user = collector.users["audit-zhao"]
    page = open_page()
    for attempt in range(1, 6):
        sign_in(page, user, password=f"not-the-password-{attempt}")
        expect(page.locator(".form-error")).to_be_visible()
    locked_at = datetime.now(UTC)
    message = page.locator(".form-error").inner_text()
    shown = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", message)
    assert shown, message
    until = datetime.strptime(shown.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs(until - (locked_at + timedelta(minutes=LOCKOUT_MINUTES))) < timedelta(seconds=30)

    sign_in(page, user)  # the right password, while locked
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.locator(".form-error")).to_contain_text(shown.group(1))
    assert page.locator("#login-password").input_value() == ""


# --------------------------------------------------------------------------- bad input


def test_html_in_a_hostname_and_a_message_is_shown_as_text(
    open_page: Opener, collector: Collector
) -> None:
    page = signed_in(open_page, collector, "audit-li")
    page.goto("/hosts?q=pacs-03")
    link = page.locator("a[href^='/hosts/']", has_text="pacs-03")
    expect(link).to_have_text(SCRIPT_HOST)
    link.click()
    expect(page.locator("h1")).to_contain_text(SCRIPT_HOST)
    expect(page.locator("#results")).to_contain_text(SCRIPT_MESSAGE)
    assert page.evaluate("() => window.__medsec_pwned") is None
    assert page.locator("#results b").count() == 0
    page.goto("/")
    expect(page.locator("#worst")).to_contain_text(SCRIPT_HOST)
    assert page.evaluate("() => window.__medsec_pwned") is None


def test_an_unknown_host_or_clause_is_a_404_page(open_page: Opener, collector: Collector) -> None:
    page = signed_in(open_page, collector, "audit-li")
    for path in (
        "/hosts/sha256:" + "0" * 64,
        f"/clauses/{GBT}/9.9.9 z",
        "/clauses/iso27001/A.5.1",
        "/scans/00000000-0000-0000-0000-000000000000",
    ):
        response = page.goto(path)
        assert response is not None
        assert response.status == 404, path
        expect(page.locator("nav.main-nav")).to_be_visible()
        assert "Traceback" not in page.content()


# --------------------------------------------------------------------------- every page


def _pages(page: Page, collector: Collector) -> list[tuple[str, str]]:
    """(name, path) of every page a person reaches, found by following the dashboard's links."""
    page.goto(f"/?standard={GBT}&status=fail#clauses")
    clause = page.locator(f"#clauses a[href^='/clauses/{GBT}/']").first.get_attribute("href")
    page.goto(f"/hosts?q={LONG_HOST[:24]}")
    long_host = page.locator("a[href^='/hosts/']", has_text=LONG_HOST[:24]).first
    long_host_path = long_host.get_attribute("href")
    page.goto(f"/hosts?q={collector.hosts[0]}")
    agent_host = page.locator("a[href^='/hosts/']", has_text=collector.hosts[0]).first
    agent_host_path = agent_host.get_attribute("href")
    found = [
        ("overview", "/"),
        ("clause", str(clause)),
        ("hosts", "/hosts"),
        ("hosts-failing", "/hosts?status=fail&sort=-fail"),
        ("host-agent", str(agent_host_path)),
        ("host-long-name", str(long_host_path)),
        ("network", "/network"),
        ("snapshots", "/snapshots"),
        ("not-found", "/hosts/unknown-host"),
    ]
    page.goto("/network")
    scan = page.locator("#scans a[href^='/scans/']").first
    if scan.count():
        found.append(("scan", str(scan.get_attribute("href"))))
    return found


def test_every_page_lays_out_at_both_sizes_in_both_languages(
    open_page: Opener, collector: Collector, artefacts: Path
) -> None:
    problems: list[str] = []
    shots = 0

    def check(page: Page, name: str) -> None:
        nonlocal shots
        page.screenshot(path=str(artefacts / f"{name}.png"), full_page=True)
        shots += 1
        found = page.evaluate(LAYOUT)
        if found["scrollWidth"] > found["innerWidth"]:
            problems.append(
                f"{name}: scrolls sideways ({found['scrollWidth']}px in {found['innerWidth']}px)"
            )
        problems.extend(f"{name}: {cell}" for cell in found["cells"])

    page = signed_in(open_page, collector, "viewer-chen")
    pages = _pages(page, collector)
    for locale in ("zh", "en"):
        if locale == "en":
            page.goto("/")
            page.click("form[action='/ui/locale'] button")
            expect(page.locator("html")).to_have_attribute("lang", "en")
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            for name, path in pages:
                page.goto(path)
                expect(page.locator("html")).to_have_attribute(
                    "lang", "en" if locale == "en" else "zh-CN"
                )
                check(page, f"{locale}-{width}x{height}-{name}")
            signed_out = open_page((width, height))
            signed_out.goto(f"/login?lang={locale}")
            check(signed_out, f"{locale}-{width}x{height}-login")
    assert shots == 2 * len(SIZES) * (len(pages) + 1)
    assert not problems, f"screenshots in {artefacts}:\n" + "\n".join(problems)
