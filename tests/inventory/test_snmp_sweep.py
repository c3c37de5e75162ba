"""A sweep of a lab zone: a network namespace of this test's own holding 198.18.200.1/28 on a
veth link where nothing else answers (no route out), snmpd on 198.18.200.1:161, and the inventory
run inside the namespace sweeping 198.18.200.0/28 with the defaults' credentials. Exactly the
agent comes back, as a swept device on which no well-known community was tried; the other
addresses are counted, not listed. A larger directly attached range at a high concurrency (every
absent address holds its datagram in the kernel while ARP fails) still reads the agent whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inventory.snmp_agents import HILLSTONE, IP, namespace, run_snmpd, write_private

pytestmark = pytest.mark.root

COLLECT = """
import json, sys
from inventory.network.snmp import collect_devices
from inventory.network.targets import load_targets
run = collect_devices(load_targets(sys.argv[1]))
print(json.dumps({
    "swept": run.swept, "addresses_swept": run.addresses_swept, "seconds": run.seconds,
    "devices": [
        {"address": d.address, "port": d.port, "source": d.source, "error": d.error,
         "sys_object_id": d.sys_object_id, "sys_descr": d.sys_descr,
         "well_known_tried": d.access.well_known_tried, "v3_supported": d.access.v3_supported,
         "community_guessable": d.access.community_guessable,
         "addresses": [a for i in d.interfaces for a in i.addresses], "role": d.classification.role}
        for d in run.devices
    ],
}))
"""


def test_a_sweep_finds_exactly_the_agent(tmp_path: Path) -> None:
    with (
        namespace("198.18.200.1/28") as ns,
        run_snmpd(tmp_path / "snmpd", address="198.18.200.1", port=161, netns=ns) as agent,
    ):
        write_private(tmp_path / "community", agent.community + "\n")
        targets = write_private(
            tmp_path / "targets.yaml",
            "defaults: {community_file: community, timeout: 1, retries: 0}\n"
            "sweep: [198.18.200.0/28]\n",
        )
        done = subprocess.run(
            [IP, "netns", "exec", ns, sys.executable, "-c", COLLECT, str(targets)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
            check=False,
        )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["swept"] == ["198.18.200.0/28"]
    assert run["addresses_swept"] == 14  # .1 to .14
    (device,) = run["devices"]
    assert (device["address"], device["port"], device["source"]) == ("198.18.200.1", 161, "sweep")
    assert device["error"] is None
    assert (device["sys_object_id"], device["sys_descr"]) == HILLSTONE
    assert device["role"] == "firewall"
    assert "198.18.200.1/28" in device["addresses"]
    assert device["well_known_tried"] == []  # never guessed on a swept address
    assert device["v3_supported"] is True
    assert device["community_guessable"] is False
    assert run["seconds"] < 10
    assert agent.community not in done.stdout + done.stderr


def test_a_wide_on_link_sweep_still_reads_the_agent_whole(tmp_path: Path) -> None:
    with (
        namespace("198.18.200.1/22") as ns,
        run_snmpd(tmp_path / "snmpd", address="198.18.200.1", port=161, netns=ns) as agent,
    ):
        write_private(tmp_path / "community", agent.community + "\n")
        targets = write_private(
            tmp_path / "targets.yaml",
            "concurrency: 256\n"
            "defaults: {community_file: community, timeout: 1, retries: 0}\n"
            "sweep: [198.18.200.0/22]\n",
        )
        done = subprocess.run(
            [IP, "netns", "exec", ns, sys.executable, "-c", COLLECT, str(targets)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parents[2],
            check=False,
        )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["addresses_swept"] == 1022
    (device,) = run["devices"]
    assert device["address"] == "198.18.200.1"
    assert device["error"] is None  # no walk starved behind the knocks waiting for ARP
    assert "198.18.200.1/22" in device["addresses"]
