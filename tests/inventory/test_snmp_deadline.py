"""Every device has its own deadline: a device that answers every request, but slowly (a real
recording served by snmpsim behind a link that holds each answer back), is cut off at its
deadline with what it gave so far, and says which table it did not finish."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory.network.snmp import REQUESTS_PER_DEADLINE, collect_devices
from inventory.network.targets import load_targets
from tests.checks.snmprec import read_snmprec
from tests.inventory.snmp_agents import RECORDINGS, run_snmpsim, slow_link, write_private

DELAY = 1.3
TIMEOUT = 1.5
"""Each answer is held back DELAY of the TIMEOUT a request waits: in time with room for a busy
machine, but too slow for the whole walk to fit in the deadline."""


def test_a_slow_device_is_cut_at_its_deadline_with_what_it_gave(tmp_path: Path) -> None:
    recording = RECORDINGS / "edgeswitch.snmprec"
    if not recording.exists():
        pytest.skip(f"the shared SNMP recordings are absent ({RECORDINGS})")
    records = read_snmprec(recording)
    entities = sum(1 for oid in records if oid.startswith("1.3.6.1.2.1.47.1.1.1.1.2."))
    with (
        run_snmpsim(tmp_path / "cache") as simulator,
        slow_link(("127.0.0.1", simulator.port), DELAY) as slow,
    ):
        targets = write_private(
            tmp_path / "targets.yaml",
            "well_known_communities: false\n"
            f"defaults: {{timeout: {TIMEOUT}, retries: 0}}\n"
            "devices:\n"
            f"  - {{address: 127.0.0.1, port: {slow}, community: edgeswitch}}\n"
            f"  - {{address: 127.0.0.1, port: {simulator.port}, community: edgeswitch}}\n",
        )
        run = collect_devices(load_targets(targets))
    slow_device, direct = run.devices
    deadline = TIMEOUT * REQUESTS_PER_DEADLINE
    # Each answer comes in time (1.3 s of 1.5), but the walk needs more answers than fit.
    assert slow_device.sys_object_id == records["1.3.6.1.2.1.1.2.0"]
    assert slow_device.error == (
        "partial answer: ENTITY-MIB entPhysicalTable not complete: the device's deadline of "
        f"{deadline:g} s passed"
    )
    # What came back before the deadline is kept, row for row as the quick link reads it.
    assert 0 < len(slow_device.entities) <= entities
    assert slow_device.entities == direct.entities[: len(slow_device.entities)]
    assert deadline <= slow_device.seconds < deadline + 1
    # The same device over a quick link gives everything, and did not wait for the slow one.
    assert direct.error is None
    assert len(direct.entities) == entities
    assert direct.seconds < deadline
