"""The dashboard's tests: the collector tests' databases (`store`: a new SQLite file or the shared
PostgreSQL per test) and lab, one real agent run's report as every stored host's template, and
for the browser tests one real collector (`medsec serve`, tests/web/served.py) and one headless
Chromium shared by the whole run. Screenshots go to $MEDSEC_ARTIFACTS (or a temporary folder),
named at the end of the run's output."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.collector.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    pg_upgraded,
    pg_url,
    store,
    store_url,
)
from tests.collector.fixtures_api import agent_report
from tests.collector.lab_build import cannot_build
from tests.web.served import (
    Collector,
    inventory_lab_router,
    lab_zones_file,
    push_fleet,
    run_real_agent,
    scan_lab,
    set_up,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
_ARTEFACTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def agent_template() -> dict[str, Any]:
    """One real agent run's report (`medsec-agent run --no-push`), the template of every host's."""
    return agent_report()


@pytest.fixture(scope="session")
def artefacts(request: pytest.FixtureRequest) -> Path:
    """Where screenshots go: $MEDSEC_ARTIFACTS, or a new temporary folder (kept)."""
    named = os.environ.get("MEDSEC_ARTIFACTS")
    folder = Path(named) if named else Path(tempfile.mkdtemp(prefix="medsec-web-artefacts-"))
    folder.mkdir(parents=True, exist_ok=True)
    request.config.stash[_ARTEFACTS] = folder
    return folder


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    folder = config.stash.get(_ARTEFACTS, None)
    if folder is not None:
        count = len(list(folder.glob("*.png")))
        terminalreporter.write_line(f"dashboard screenshots ({count}): {folder}")


# Module-scoped: Playwright holds an event loop while it runs, only as long as the browser tests.
@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser of Playwright's own), with
    a HOME of its own."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("chromium-home")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=list(CHROMIUM_ARGS),
            env={**os.environ, "HOME": str(home)},
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def collector(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    agent_template: dict[str, Any],
) -> Iterator[Collector]:
    """A real collector filled with evidence (see tests/web/served.py); with the lab's scan and
    SNMP inventory where the lab can be built (its zones then listed as `lab` for scans)."""
    folder = tmp_path_factory.mktemp("collector")
    the_lab = None if cannot_build() else request.getfixturevalue("lab")
    zones = None if the_lab is None else lab_zones_file(the_lab, folder / "zones")
    served = set_up(folder, zones)
    served.start()
    try:
        served.hosts.append(run_real_agent(served))
        served.hosts += push_fleet(served, agent_template)
        if the_lab is not None:
            scan_lab(served)
            inventory_lab_router(served, the_lab)
        yield served
    finally:
        served.stop()
