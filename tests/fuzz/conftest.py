"""Shares the fuzz folder's time budget out between the properties collected, and says in the
summary which ones ran out of time (their remaining examples were skipped, not failed)."""

from __future__ import annotations

import pytest

from tests.fuzz.budget import BUDGET


def _in_folder(item: pytest.Item) -> bool:
    return "/tests/fuzz/" in str(item.path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    BUDGET.collected(sum(1 for item in items if _in_folder(item)))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _in_folder(item):
        BUDGET.starting()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BUDGET.skipped:
        terminalreporter.write_sep("-", "fuzz: time budget spent")
        for test, skipped in sorted(BUDGET.skipped.items()):
            terminalreporter.write_line(f"{test}: {skipped} examples skipped")
