"""A full disk under the agent's spool, and under the collector's SQLite database: each on a small
tmpfs the test mounts on a temporary folder and unmounts at the end.

The agent (`medsec-agent run`, the installed script) refuses a report it cannot keep in one line
and a non-zero exit, leaves what was already spooled as it was, and delivers all of it once there
is room. The collector (`medsec serve`) answers 503 with its JSON error while SQLite cannot write,
never corrupts the database, and stores again once space is freed, without a restart.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.credential import load_credential
from checks.envelope import seal
from tests.faults.rig import (
    AgentHost,
    Burst,
    Collector,
    MountUnavailable,
    Tmpfs,
    assert_each_stored_once,
    finish_delivery,
    sweep_tmpfs,
)

pytestmark = pytest.mark.root


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, int], Tmpfs]]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    sweep_tmpfs()
    made: list[Tmpfs] = []

    def mount(name: str, size: int) -> Tmpfs:
        try:
            made.append(Tmpfs(tmp_path / name, size))
        except MountUnavailable as exc:
            pytest.skip(f"no tmpfs can be mounted here: {exc}")
        return made[-1]

    yield mount
    for fs in made:
        fs.close()


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.msr")}


def test_agent_spool_on_a_full_disk(
    tmp_path: Path,
    tmpfs: Callable[[str, int], Tmpfs],
    new_collector: Callable[[str], Collector],
) -> None:
    collector = new_collector(f"sqlite:///{tmp_path / 'medsec.db'}")
    collector.start()
    agent = AgentHost(tmp_path / "agent", collector, "ward-7")
    agent.enrol()
    collector.stop()
    # The spool moves onto a 256 KiB file system (enrolment left nothing in the old one).
    fs = tmpfs("spoolfs", 256 * 1024)
    agent.spool_dir = fs.mountpoint / "spool"
    agent.write_config()
    for waiting in (1, 2):
        done = agent.run()
        assert done.returncode == 0, done.stderr
        assert f"collector unreachable: report spooled ({waiting} waiting)" in done.stderr
    kept = digests(agent.spool)
    assert len(kept) == 2

    fs.fill()
    done = agent.run()
    refused = agent.made[-1]
    print(f"disk full, collector down: exit {done.returncode}: {done.stderr!r}")
    assert done.returncode == 1
    [line] = done.stderr.splitlines()  # one line, naming the problem and the report
    assert line.startswith("medsec-agent: spool unusable ("), line
    assert "No space left on device" in line
    assert f"report {refused} NOT kept" in line
    assert digests(agent.spool) == kept  # what waited is untouched
    assert [p.name for p in agent.spool.iterdir() if p.name.startswith(".tmp-")] == []

    # The collector back, the disk still full: the new report goes straight to it, and so
    # does what waited (sending frees space; nothing needs to be written for it).
    collector.start()
    done = agent.run()
    print(f"disk full, collector up: exit {done.returncode}: {done.stderr!r}")
    assert done.returncode == 1  # a person must free the disk
    [line] = done.stderr.splitlines()
    assert "delivered without the spool" in line
    assert "No space left on device" in line
    assert agent.waiting() == []
    assert set(collector.stored()) == set(agent.made) - {refused}

    fs.free()
    done = agent.run()
    assert (done.returncode, done.stderr) == (0, "")
    stored = collector.stored()
    assert set(stored) == set(agent.made) - {refused}
    assert set(stored.values()) == {1}
    assert agent.waiting() == []
    assert agent.rejected() == {}
    print(collector.assert_sound())


def test_collector_sqlite_on_a_full_disk(
    tmp_path: Path,
    tmpfs: Callable[[str, int], Tmpfs],
    template: dict[str, Any],
    new_collector: Callable[[str], Collector],
) -> None:
    fs = tmpfs("dbfs", 8 * 2**20)
    collector = new_collector(f"sqlite:///{fs.mountpoint / 'medsec.db'}")
    collector.start()
    assert collector.process is not None
    pid = collector.process.pid
    agents = [AgentHost(tmp_path / f"a{n}", collector, f"icu-{n}") for n in range(3)]
    for agent in agents:
        agent.enrol()
    cred = load_credential(agents[0].credential)
    with Burst(agents, template, pause=0.05) as burst:
        time.sleep(0.5)
        fs.fill()
        deadline = time.monotonic() + 30
        while not burst.answered() and time.monotonic() < deadline:
            time.sleep(0.1)  # until SQLite needs a page the disk does not have
        with collector.client(cred.api_token) as client:
            _, body = agents[0].report(template)
            posted = client.post(
                "/api/v1/reports",
                content=seal(body, cred.agent, cred.private_key_pem, cred.alg),
                headers={"Content-Type": "application/json"},
            )
        time.sleep(0.5)
        fs.free()
        time.sleep(0.8)
    answered = burst.answered()
    print(f"disk full: the agents were answered {dict(answered)}; a report: {posted.text}")
    assert answered, "the collector never ran out of space"
    assert set(answered) == {"503"}, [line for line in burst.lines if "answered 5" in line]
    assert posted.status_code == 503
    assert posted.headers["content-type"] == "application/json"
    assert posted.json()["error"] == "database_unavailable"
    assert set(burst.codes) == {0}

    assert collector.process.poll() is None
    assert (collector.process.pid, collector.starts) == (pid, 1)
    finish_delivery(agents, template)
    outcomes = assert_each_stored_once(collector, agents)
    print(f"{sum(len(a.made) for a in agents)} reports; audit outcomes {dict(outcomes)}")
    print(collector.assert_sound())
