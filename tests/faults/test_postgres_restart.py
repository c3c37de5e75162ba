"""PostgreSQL restarted under the collector while agents send reports: `pg_ctl restart -m fast`,
`-m immediate`, and a stop long enough to be seen. The collector (`medsec serve`, never
restarted) answers 503 with its JSON error while the database is gone — never 500 — and stores
again as soon as it is back; the agents keep what was refused meanwhile in their spools, and in
the end every report is stored exactly once and the audit log verifies.

The cluster is the private one of conftest.py (its own folder and loopback port, run as the
`postgres` user): the shared server on 5432 is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.credential import load_credential
from checks.envelope import seal
from tests.faults.rig import AgentHost, Burst, Collector, assert_each_stored_once, finish_delivery
from tests.pg import TempPostgres


def test_postgres_restarts_under_load_cost_no_report(
    tmp_path: Path,
    private_pg: TempPostgres,
    new_pg_database: Callable[[], str],
    template: dict[str, Any],
    new_collector: Callable[[str], Collector],
) -> None:
    collector = new_collector(new_pg_database())
    collector.start()
    assert collector.process is not None
    pid = collector.process.pid
    agents = [AgentHost(tmp_path / f"a{n}", collector, f"lab-{n}") for n in range(3)]
    for agent in agents:
        agent.enrol()
    probe = agents[0]
    cred = load_credential(probe.credential)
    with Burst(agents, template, pause=0.05) as burst:
        time.sleep(0.8)
        private_pg._ctl("-m", "fast", "restart")
        time.sleep(0.8)
        private_pg._ctl("-m", "immediate", "restart")
        time.sleep(0.8)
        private_pg._ctl("-m", "immediate", "stop")
        try:
            time.sleep(1.0)  # the agents keep sending to a collector without a database
            with collector.client(cred.api_token) as client:
                health = client.get("/healthz")
                _, body = probe.report(template)
                posted = client.post(
                    "/api/v1/reports",
                    content=seal(body, cred.agent, cred.private_key_pem, cred.alg),
                    headers={"Content-Type": "application/json"},
                )
        finally:
            private_pg.start()
        time.sleep(0.8)
    for answer in (health, posted):
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {
            "error": "database_unavailable",
            "message": "the database is unreachable",
        }
    answered = burst.answered()
    print(f"the agents were answered {dict(answered)} while the database was away")
    assert "500" not in answered, [line for line in burst.lines if "answered 500" in line]
    assert answered["503"] > 0  # the stop was long enough to be met
    assert set(answered) == {"503"}, answered
    assert set(burst.codes) == {0}  # spooled, not lost: no person needs to act

    # Recovered by itself: the same process stores again.
    assert collector.process.poll() is None
    assert (collector.process.pid, collector.starts) == (pid, 1)
    with collector.client() as client:
        assert client.get("/healthz").status_code == 200
    finish_delivery(agents, template)
    outcomes = assert_each_stored_once(collector, agents)
    print(f"{sum(len(a.made) for a in agents)} reports; audit outcomes {dict(outcomes)}")
    refused = {o for o in outcomes if o not in {"201", "200"}}
    assert all(o.startswith("503 ") for o in refused), outcomes
    print(collector.assert_sound())
