"""Shared fixtures: real components the tests run against (see DESIGN.md, "Testing against the
real thing"). Each skips, with the reason, only when its program is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.swtpm import provision_ek_certificate, start_swtpm, swtpm_binary

_HOST_WIDE = ("netns", "unshare")
"""What marks a test module as changing the machine's network: namespaces, a lab. Under
`pytest -n` (pytest-xdist, `--dist loadgroup`) such modules run on one worker, one after another,
as they always did, and the Ansible hosts (debootstrapped roots in namespaces of their own, on
subnets no other test uses) on another; everything else shares the cores."""


@cache
def _group(path: Path) -> str | None:
    if "/tests/ansible/" in str(path):
        return "ansible-hosts"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    return "host-wide" if any(word in text for word in _HOST_WIDE) else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = _group(item.path)
        if group is None and "lab" in getattr(item, "fixturenames", ()):
            group = "host-wide"
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


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
