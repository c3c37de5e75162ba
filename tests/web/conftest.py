"""The dashboard's tests share the collector tests' databases (a new SQLite file or the shared
PostgreSQL per test, `store`) and their lab, and one real agent run for the reports they store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.collector.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    lab,
    pg_upgraded,
    pg_url,
    store,
    store_url,
)
from tests.collector.fixtures_api import agent_report


@pytest.fixture(scope="session")
def agent_template() -> dict[str, Any]:
    """One real agent run's report (`medsec-agent run --no-push`), the template of every host's."""
    return agent_report()
