"""A check cannot be forgotten: a module dropped into a check package is registered without any
list naming it, and the meta-tests then refuse it until it has a clause and recorded cases."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from checks.catalog import builtin_catalogs
from checks.model import Severity, passed
from checks.registry import RegistryError, builtin_registry, check, discover
from tests.checks.all_cases import ALL_CASES
from tests.checks.meta import unmapped, without_cases

NEW_CHECK = """
from checks.model import Msg, Severity, passed
from checks.registry import check


@check("demo.forgotten", title_en="new", title_zh="新", severity=Severity.LOW, needs=("tpm",))
def forgotten(facts):
    yield passed(Msg("fine", "正常"))
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A throw-away check package `medsec_demo_checks` with one nested module."""
    root = tmp_path / "medsec_demo_checks"
    (root / "extra").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "extra" / "__init__.py").write_text("")
    (root / "extra" / "forgotten.py").write_text(textwrap.dedent(NEW_CHECK))
    # Re-exporting a check elsewhere must not register it twice.
    (root / "reexport.py").write_text("from medsec_demo_checks.extra.forgotten import forgotten\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "medsec_demo_checks"
    for name in [m for m in sys.modules if m.startswith("medsec_demo_checks")]:
        del sys.modules[name]


def test_a_new_module_is_found_by_walking_the_package(package: str) -> None:
    registry = discover(package)
    assert registry.ids() == ["demo.forgotten"]


def test_the_meta_tests_refuse_a_check_without_clause_or_cases(package: str) -> None:
    registry = discover(package)
    assert unmapped(registry, builtin_catalogs()) == ["demo.forgotten"]
    assert without_cases(registry, ALL_CASES) == ["demo.forgotten"]


def test_the_shipped_registry_is_found_the_same_way() -> None:
    # Every host check module under checks/host is found with no hand-kept list.
    modules = {c.func.__module__ for c in builtin_registry()}
    on_disk = {
        f"checks.host.{p.stem}"
        for p in (Path(__file__).parents[2] / "checks" / "host").glob("*.py")
        if p.stem != "__init__"
    }
    assert modules == on_disk


def test_a_parameter_the_function_does_not_take_is_refused() -> None:
    with pytest.raises(RegistryError, match="takes no parameter 'limt'"):
        check("demo.typo", title_en="t", title_zh="t", severity=Severity.LOW, params={"limt": 3})(
            lambda facts, limit=1: [passed("ok")]
        )


def test_a_parameter_the_function_needs_but_nobody_declared_is_refused() -> None:
    with pytest.raises(RegistryError, match=r"'limit'.*not declared"):
        check("demo.undeclared", title_en="t", title_zh="t", severity=Severity.LOW)(
            lambda facts, limit: [passed("ok")]
        )
