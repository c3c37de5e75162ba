"""The collector killed (SIGKILL, no handler runs) at random moments while several agents send a
burst of reports, then started again: once the agents have retried from their spools, every
report is stored exactly once, the audit log verifies and the database is sound — on SQLite and
on PostgreSQL (a private cluster).

The agents are the agent's own push code (`agent.push.deliver`: spool first, then send what
waits, oldest first), one thread each, each with its credential and spool; the collector is
`medsec serve` in its own process. The kill moments come from a seeded generator; the seed is
printed, and `MEDSEC_FAULT_SEED` replays a run.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.faults.rig import AgentHost, Burst, Collector, assert_each_stored_once, finish_delivery

AGENTS = 4
KILLS = 3


def test_killed_mid_burst_every_report_is_stored_once(
    tmp_path: Path,
    database: str,
    template: dict[str, Any],
    new_collector: Callable[[str], Collector],
) -> None:
    seed = int(os.environ.get("MEDSEC_FAULT_SEED", random.randrange(1 << 32)))  # noqa: S311
    print(f"MEDSEC_FAULT_SEED={seed}")
    rng = random.Random(seed)  # noqa: S311 - kill moments, not secrets
    collector = new_collector(database)
    collector.start()
    agents = [AgentHost(tmp_path / f"a{n}", collector, f"ward-{n}") for n in range(AGENTS)]
    for agent in agents:
        agent.enrol()
    started = time.monotonic()
    with Burst(agents, template, pause=0.02) as burst:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.2))  # the burst runs against a live collector
            collector.kill()
            time.sleep(rng.uniform(0.0, 0.4))  # agents meet a dead port meanwhile
            collector.start()
        time.sleep(rng.uniform(0.3, 1.0))
    seconds = time.monotonic() - started
    finish_delivery(agents, template)
    outcomes = assert_each_stored_once(collector, agents)
    spooled = sum("report spooled" in line for line in burst.lines)
    print(
        f"{sum(len(a.made) for a in agents)} reports in {seconds:.1f} s, {KILLS} kills; "
        f"{spooled} spooled while the collector was down; audit outcomes {dict(outcomes)}"
    )
    # Nothing but 201 and, for a report whose answer died with the collector, 200.
    assert set(outcomes) <= {"201", "200"}, outcomes
    # The fault was met: agents found the collector gone, kept their reports, said so in one
    # line, and exited 0 (the spool will deliver; the findings decide the exit code).
    assert spooled > 0
    assert set(burst.codes) == {0}
    assert all(
        line.startswith("medsec-agent: collector unreachable: report spooled (")
        for line in burst.lines
    ), burst.lines
    print(collector.assert_sound())
