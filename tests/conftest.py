"""Shared fixtures: real components the tests run against (see DESIGN.md, "Testing against the
real thing"). Each skips, with the reason, only when its program is not installed.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from collector.lab import Lab, LabUnavailable
from tests.collector.lab_build import (
    assert_nothing_left,
    cannot_build,
    lab_folder,
    namespace_ids,
    root_links,
)
from tests.swtpm import provision_ek_certificate, start_swtpm, swtpm_binary

WORKER_GROUPS = {
    # The Ansible modules share the bundle and host caches, and each converge test builds on the
    # site the one before left: one worker, in order.
    "tests/ansible/": "ansible",
    # One browser at a time (Playwright's event loop would meet asyncio.run elsewhere).
    "tests/web/test_browser.py": "browser",
    # A module fixture of collectors, probes and lab scans that the tests build on.
    "tests/collector/test_periodic_lab.py": "periodic-lab",
    "tests/collector/test_scan_diff_lab.py": "scan-diff-lab",
}
"""Tests that must run on one worker, one after another, by path. pytest-xdist's own
`xdist_group` marks do nothing with pytest 9 (xdist 3.8 renames `item._nodeid`, which pytest 9
no longer reads), so the scheduler groups by path here; any other test goes to any worker."""


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With `--dist loadgroup`: the groups of `WORKER_GROUPS`, every other test on its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PathGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            group = next((g for p, g in WORKER_GROUPS.items() if nodeid.startswith(p)), None)
            return nodeid if group is None else f"group:{group}"

    return PathGroups(config, log)


def _need_swtpm() -> None:
    if swtpm_binary() is None:
        pytest.skip("swtpm is not installed (Debian packages swtpm and swtpm-tools)")


@pytest.fixture(scope="session")
def swtpm_ek(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TCTI of a swtpm manufactured by swtpm_setup: RSA + ECC EK certificates in NV, sha256 bank.

    Shared by the whole session: tests must not change its state.
    """
    _need_swtpm()
    work = tmp_path_factory.mktemp("swtpm-ek")
    provision_ek_certificate(work / "state", work)
    tpm = start_swtpm(work / "state")
    try:
        yield tpm.tcti
    finally:
        tpm.stop()


@pytest.fixture
def swtpm_fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TCTI of a brand-new swtpm (no EK certificate, every PCR bank), for destructive tests."""
    _need_swtpm()
    tpm = start_swtpm(tmp_path_factory.mktemp("swtpm-fresh") / "state")
    try:
        yield tpm.tcti
    finally:
        tpm.stop()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab with its own namespace prefix (a developer's running lab is left alone),
    built once for the session: building takes root and seconds. Tests may switch faults but
    must switch them back. Skips with the reason where no lab can be built; at the end it is
    torn down and checked to have left nothing behind."""
    reason = cannot_build()
    if reason:
        pytest.skip(reason)
    the_lab = Lab(lab_folder(), f"t{os.getpid() % 100000}-")
    links = root_links()
    started = time.monotonic()
    try:
        the_lab.up()
    except LabUnavailable as exc:
        shutil.rmtree(the_lab.directory, ignore_errors=True)
        pytest.skip(f"the lab cannot be built here: {exc}")
    print(f"lab up in {time.monotonic() - started:.2f} s")
    ids = namespace_ids(the_lab)
    try:
        yield the_lab
    finally:
        the_lab.down()
    assert_nothing_left(the_lab, ids, links)
