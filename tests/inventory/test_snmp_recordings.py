"""The SNMP inventory against snmpsim serving the 32 shared recordings of real devices (one
community per recording): every device's system group, ENTITY-MIB entries and interface names
come back equal to what the recording holds, decoded as the device meant them (hex values, NUL
padding), and the live run classifies each device as the recording alone is classified."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.device.roles import classify
from inventory.network.snmp import ENTITY_COLUMNS, SnmpRun, collect_devices
from inventory.network.targets import load_targets
from tests.checks.snmprec import identity, read_snmprec
from tests.inventory.snmp_agents import RECORDINGS, recordings, run_snmpsim, write_private

NAMES = [p.stem for p in recordings()] if RECORDINGS.is_dir() else []
ENT = "1.3.6.1.2.1.47.1.1.1.1."
IF_DESCR = "1.3.6.1.2.1.2.2.1.2."
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1."


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpRun]:
    if not NAMES:
        pytest.skip(f"the shared SNMP recordings are absent ({RECORDINGS})")
    base = tmp_path_factory.mktemp("snmpsim")
    with run_snmpsim(base / "cache") as simulator:
        text = "well_known_communities: false\ndefaults: {timeout: 2, retries: 1}\ndevices:\n"
        text += "".join(
            f"  - {{address: 127.0.0.1, port: {simulator.port}, community: '{name}'}}\n"
            for name in NAMES
        )
        yield collect_devices(load_targets(write_private(base / "targets.yaml", text)))


def _columns(records: dict[str, Any], prefix: str) -> dict[tuple[int, int], Any]:
    """(column, index) -> value for the recorded rows of a table entry."""
    found = {}
    for oid, value in records.items():
        if oid.startswith(prefix):
            column, _, index = oid[len(prefix) :].partition(".")
            if column.isdigit() and index.isdigit():
                found[int(column), int(index)] = value
    return found


def _rows(records: dict[str, Any], prefix: str) -> dict[int, Any]:
    return {
        int(oid[len(prefix) :]): value
        for oid, value in records.items()
        if oid.startswith(prefix) and oid[len(prefix) :].isdigit()
    }


def test_every_recording_is_a_device(served: SnmpRun) -> None:
    assert len(served.devices) == len(NAMES) == 32
    assert [d.error for d in served.devices] == [None] * len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_device_reads_as_recorded(served: SnmpRun, name: str) -> None:
    records = read_snmprec(Path(RECORDINGS) / f"{name}.snmprec")
    device = served.devices[NAMES.index(name)]
    assert device.sys_object_id == records["1.3.6.1.2.1.1.2.0"]
    assert device.sys_descr == records.get("1.3.6.1.2.1.1.1.0", "")
    assert device.sys_name == records.get("1.3.6.1.2.1.1.5.0", "")
    assert device.sys_location == records.get("1.3.6.1.2.1.1.6.0", "")
    assert device.sys_contact == records.get("1.3.6.1.2.1.1.4.0", "")
    uptime = records.get("1.3.6.1.2.1.1.3.0")
    assert device.sys_uptime_seconds == (uptime / 100 if isinstance(uptime, int) else None)

    recorded = _columns(records, ENT)
    expected = {
        index: {
            attribute: recorded.get((column, index), "")
            for column, attribute in ENTITY_COLUMNS.items()
            if attribute != "physical_class"
        }
        for _, index in recorded
    }
    got = {
        e.index: {a: getattr(e, a) for a in ENTITY_COLUMNS.values() if a != "physical_class"}
        for e in device.entities
    }
    assert got == expected
    model = next((row["model"] for row in expected.values() if row["model"]), "")
    serial = next((row["serial"] for row in expected.values() if row["serial"]), "")
    assert (device.model, device.serial) == (model, serial)

    descr, names = _rows(records, IF_DESCR), _rows(records, IF_NAME)
    assert {i.index: i.description for i in device.interfaces} == {
        index: descr.get(index, "") for index in {*descr, *names}
    }
    assert {i.index: i.name for i in device.interfaces} == {
        index: names.get(index) or descr.get(index, "") for index in {*descr, *names}
    }


def test_nul_padded_hex_interface_names_read_as_text(served: SnmpRun) -> None:
    device = served.devices[NAMES.index("deltaups")]
    assert [i.name for i in device.interfaces] == ["lo", "eth0", "tunl0", "gre0", "sit0"]


@pytest.mark.parametrize("name", NAMES)
def test_the_live_run_classifies_as_the_recording_does(served: SnmpRun, name: str) -> None:
    ident = identity(read_snmprec(Path(RECORDINGS) / f"{name}.snmprec"))
    offline = classify(
        ident.sys_object_id,
        ident.sys_descr,
        sys_name=ident.sys_name,
        models=ident.models,
        sys_services=ident.sys_services,
    )
    live = served.devices[NAMES.index(name)].classification
    assert (live.role, live.vendor, live.rule) == (offline.role, offline.vendor, offline.rule)
