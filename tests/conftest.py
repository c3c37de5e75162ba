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
