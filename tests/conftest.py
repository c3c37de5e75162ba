"""Shared fixtures: real components the tests run against (see DESIGN.md, "Testing against the
real thing"). Each skips, with the reason, only when its program is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
