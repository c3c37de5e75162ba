"""An agent whose clock is far ahead or far behind the collector's (libfaketime, Debian package
faketime, around the installed `medsec-agent`; its delivering half inherits the fake clock).

What the collector does, and what is asserted: a report whose `generated_at` lies more than
`limits.max_future_skew_seconds` (300 s) ahead of the collector's clock is refused (400
`report_from_future`, the reason printed by the agent, the report kept in `rejected/` beside its
reason, exit 1); one a little ahead, within the skew, is stored. A report from the past is
stored — no rule refuses old reports, they arrive late from spools all the time — but it does not
replace the host's newest report. An agent so far behind that the collector's certificate is
not valid yet on its clock cannot even connect: the report waits in the spool, the agent says
why, and it is delivered once the clock is right.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.faults.rig import AgentHost, Collector

pytestmark = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="needs faketime (Debian packages faketime)"
)


def generated(done_stdout: str) -> datetime:
    return datetime.fromisoformat(json.loads(done_stdout)["generated_at"].replace("Z", "+00:00"))


def test_agent_clock_ahead_or_behind(
    tmp_path: Path, new_collector: Callable[[str], Collector]
) -> None:
    collector = new_collector(f"sqlite:///{tmp_path / 'medsec.db'}")
    collector.start()
    agent = AgentHost(tmp_path / "agent", collector, "pacs-1")
    agent.enrol()
    now = agent.run()
    assert (now.returncode, now.stderr) == (0, "")
    newest = generated(now.stdout)

    ahead = agent.run(faketime="+2d")
    assert ahead.returncode == 1
    assert generated(ahead.stdout) - newest > timedelta(days=1, hours=23)
    rid = agent.made[-1]
    [line] = ahead.stderr.splitlines()
    assert line.startswith(
        f"medsec-agent: collector rejected report {rid}: 400 report_from_future: "
        "generated_at is more than 300 s ahead of the collector's clock; kept in "
    ), line
    assert line.endswith(", not retried")
    [(name, reason)] = agent.rejected().items()
    assert rid in name
    assert reason.startswith("400 report_from_future: generated_at is more than 300 s ahead")
    assert agent.waiting() == []

    within = agent.run(faketime="+2m")  # a clock a little fast: within the skew
    assert (within.returncode, within.stderr) == (0, "")

    behind = agent.run(faketime="-2d")
    assert behind.stderr == ""  # delivered
    assert newest - generated(behind.stdout) > timedelta(days=1, hours=23)
    # Its own report says the clock is wrong: the backup it checks lies in its future.
    assert behind.returncode == 1
    [result] = json.loads(behind.stdout)["results"]
    assert result["status"] == "error"
    assert "in the future: a clock is wrong" in result["message"]
    assert agent.rejected().keys() == {name}  # only the report from the future

    stored = collector.stored()
    assert set(stored) == set(agent.made) - {rid}
    assert set(stored.values()) == {1}
    store = collector.open_store()
    try:
        [host] = store.list_hosts(10, 0).items
    finally:
        store.close()
    # The late report is stored, but the host's newest stays the newest.
    within_id = agent.made[-2]
    assert host.last_report_id == within_id
    print(collector.assert_sound())


def test_agent_behind_the_collectors_certificate_keeps_its_report(
    tmp_path: Path, new_collector: Callable[[str], Collector]
) -> None:
    collector = new_collector(f"sqlite:///{tmp_path / 'medsec.db'}")
    collector.use_own_certificate()  # as `medsec init` makes it: valid from 5 minutes ago
    collector.start()
    agent = AgentHost(tmp_path / "agent", collector, "pacs-2")
    agent.enrol()
    behind = agent.run(faketime="-2d")
    print(f"agent 2 days behind: {behind.stderr!r}")
    assert behind.returncode == 1  # its report's own verdict: the backup is in its future
    [line] = behind.stderr.splitlines()  # nothing lost: it waits in the spool
    assert line.startswith("medsec-agent: collector unreachable: report spooled (1 waiting)")
    assert "certificate is not yet valid" in line
    assert "this host's clock" in line
    assert len(agent.waiting()) == 1
    assert collector.stored() == {}

    right = agent.run()  # the clock put right: the late report goes first, then this one
    assert (right.returncode, right.stderr) == (0, "")
    assert agent.waiting() == []
    assert set(collector.stored()) == set(agent.made)
    print(collector.assert_sound())
