"""Evidence for the dashboard's tests, stored through the collector's own ingest: reports made
from one real agent run (`medsec-agent run`, as tests/collector/fixtures_api.py builds them),
each as another host's, from agents enrolled in the store."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from checks.envelope import generate_private_key, public_key_pem
from checks.report import parse_report
from collector.models import Agent, IngestOutcome
from collector.store import Store
from tests.collector.fixtures_api import make_report


def enrolled(store: Store, name: str, now: datetime) -> Agent:
    """An agent enrolled directly in the store (its key is never used: reports stored here are
    not sent over the network)."""
    token = store.create_enrollment(name, timedelta(hours=1), now)
    key = public_key_pem(generate_private_key("ed25519"), "ed25519")
    return store.redeem_enrollment(token, name, "ed25519", key, now)[0]


def store_report(
    store: Store,
    agent: Agent,
    template: dict[str, Any],
    host: str,
    now: datetime,
    *,
    generated_at: datetime | None = None,
    statuses: dict[str, str] | None = None,
    site: str | None = None,
) -> IngestOutcome:
    """The template as `host`'s report, stored as received at `now`."""
    if site is not None:
        template = {**template, "inventory": {**template.get("inventory", {}), "site": site}}
    body = make_report(template, host=host, generated_at=generated_at or now, statuses=statuses)
    return store.ingest(agent, parse_report(body), body, now)
