"""The SNMP inventory against real net-snmp agents on loopback: one run of a targets file that
names a well-run agent (v2c, v1 and an SHA/AES v3 user), a careless one that also answers
`public`, the well-run agent again with a wrong community, wrong v3 keys and an unknown user, a
port that never answers, and the well-run agent behind a link that fails after the first answer.
Each test asserts what a user of the inventory would read in that run's facts."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from checks.facts.devices import NetworkDevice
from inventory.network.snmp import WELL_KNOWN_COMMUNITIES, SnmpRun, collect_devices
from inventory.network.targets import load_targets
from tests.inventory.snmp_agents import (
    HILLSTONE,
    IP,
    Snmpd,
    first_answer_only,
    run_snmpd,
    silent_port,
    write_private,
)


@dataclass(frozen=True)
class Inventory:
    run: SnmpRun
    strict: Snmpd
    careless: Snmpd
    names: tuple[str, ...]
    wall: float

    def device(self, name: str) -> NetworkDevice:
        return self.run.devices[self.names.index(name)]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    base = tmp_path_factory.mktemp("snmp-inventory")
    with (
        run_snmpd(base / "strict") as strict,
        run_snmpd(
            base / "careless", public=True, persona=("1.3.6.1.4.1.9.1.1041", "Cisco IOS")
        ) as careless,
        silent_port() as silent,
        first_answer_only((strict.address, strict.port)) as flaky,
    ):
        folder = base / "targets"
        folder.mkdir()
        write_private(folder / "community", strict.community + "\n")
        write_private(folder / "auth.key", strict.auth_key + "\n")
        write_private(folder / "priv.key", strict.priv_key + "\n")
        write_private(folder / "wrong.key", "not-the-key-123\n")
        v3 = "version: 3, user: medsec, auth: {protocol: sha, key_file: auth.key}"
        devices = {
            "v2c": f"{{address: 127.0.0.1, port: {strict.port}, community_file: community}}",
            "v3": f"{{address: 127.0.0.1, port: {strict.port}, {v3}, "
            "priv: {protocol: aes, key_file: priv.key}}",
            "v1": f"{{address: 127.0.0.1, port: {strict.port}, version: 1, "
            "community_file: community}",
            "v3-aes256": f"{{address: 127.0.0.1, port: {strict.port}, version: 3, "
            "user: medsec256, auth: {protocol: sha, key_file: auth.key}, "
            "priv: {protocol: aes256, key_file: priv.key}}",
            "v3-aes256c": f"{{address: 127.0.0.1, port: {strict.port}, version: 3, "
            "user: medsec256, auth: {protocol: sha, key_file: auth.key}, "
            "priv: {protocol: aes256c, key_file: priv.key}}",
            "careless": f"{{address: 127.0.0.1, port: {careless.port}, "
            f"community: {careless.community}}}",
            "careless-public": f"{{address: 127.0.0.1, port: {careless.port}, community: public}}",
            "wrong-community": f"{{address: 127.0.0.1, port: {strict.port}, "
            "community: wrong-community-1}",
            "wrong-auth": f"{{address: 127.0.0.1, port: {strict.port}, version: 3, user: medsec, "
            "auth: {protocol: sha, key_file: wrong.key}, "
            "priv: {protocol: aes, key_file: priv.key}}",
            "wrong-priv": f"{{address: 127.0.0.1, port: {strict.port}, {v3}, "
            "priv: {protocol: aes, key_file: wrong.key}}",
            "unknown-user": f"{{address: 127.0.0.1, port: {strict.port}, version: 3, "
            "user: stranger, auth: {protocol: sha, key_file: auth.key}}",
            "silent": f"{{address: 127.0.0.1, port: {silent}, community_file: community, "
            "retries: 2}",
            "flaky": f"{{address: 127.0.0.1, port: {flaky}, community_file: community}}",
        }
        text = "defaults: {timeout: 1, retries: 1}\ndevices:\n" + "".join(
            f"  - {spec}\n" for spec in devices.values()
        )
        path = write_private(folder / "targets.yaml", text)
        started = time.monotonic()
        run = collect_devices(load_targets(path))
        wall = time.monotonic() - started
        yield Inventory(run, strict, careless, tuple(devices), wall)


def test_every_target_is_kept_in_order(inventory: Inventory) -> None:
    run = inventory.run
    assert len(run.devices) == len(inventory.names)
    assert [d.source for d in run.devices] == ["target"] * len(inventory.names)
    ports = [d.port for d in run.devices]
    assert ports[0] == ports[1] == inventory.strict.port
    assert (run.swept, run.addresses_swept) == ((), 0)


def test_the_system_group_is_the_agents_own(inventory: Inventory) -> None:
    device, agent = inventory.device("v2c"), inventory.strict
    assert device.error is None
    assert (device.sys_object_id, device.sys_descr) == HILLSTONE
    assert (device.sys_name, device.sys_location, device.sys_contact) == (
        agent.sys_name,
        agent.sys_location,
        agent.sys_contact,
    )
    assert device.sys_services == agent.sys_services
    assert device.sys_uptime_seconds is not None
    assert 0 <= device.sys_uptime_seconds < 600
    assert device.classification.role == "firewall"
    assert device.entities == ()  # net-snmp has no ENTITY-MIB


def _host_addresses() -> dict[str, set[str]]:
    """The kernel's own view (`ip -4 addr`): interface name -> `address/len` set."""
    output = subprocess.run(
        [IP, "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    found: dict[str, set[str]] = {}
    for line in output.splitlines():
        fields = line.split()
        found.setdefault(fields[1].split("@")[0], set()).add(fields[3])
    return found


def test_interfaces_and_addresses_are_the_hosts(inventory: Inventory) -> None:
    device = inventory.device("v2c")
    by_name = {i.name: i for i in device.interfaces}
    assert "127.0.0.1/8" in by_name["lo"].addresses
    assert by_name["lo"].description == "lo"
    assert "127.0.0.1" in device.addresses
    if not os.path.exists(IP):
        return
    for name, addresses in _host_addresses().items():
        assert set(by_name[name].addresses) == addresses, name


def test_snmpv1_reads_the_same_as_v2c(inventory: Inventory) -> None:
    v1, v2c = inventory.device("v1"), inventory.device("v2c")
    assert v1.error is None
    assert v1.access.version == "1"
    assert (v1.sys_object_id, v1.sys_descr, v1.sys_name) == (
        v2c.sys_object_id,
        v2c.sys_descr,
        v2c.sys_name,
    )
    assert [(i.index, i.name, i.addresses) for i in v1.interfaces] == [
        (i.index, i.name, i.addresses) for i in v2c.interfaces
    ]


def test_v3_auth_priv_reads_the_identity(inventory: Inventory) -> None:
    device = inventory.device("v3")
    assert device.error is None
    assert (device.sys_object_id, device.sys_descr) == HILLSTONE
    access = device.access
    assert (access.version, access.security_level) == ("3", "authPriv")
    assert (access.auth_protocol, access.priv_protocol) == ("sha", "aes")
    assert access.v3_supported is True
    assert access.community_guessable is None
    assert len(device.interfaces) == len(inventory.device("v2c").interfaces)


def test_aes256_stretches_a_sha1_key_as_net_snmp_does(inventory: Inventory) -> None:
    device = inventory.device("v3-aes256")
    assert device.error is None
    assert (device.sys_object_id, device.sys_descr) == HILLSTONE
    assert (device.access.auth_protocol, device.access.priv_protocol) == ("sha", "aes256")
    # Cisco's stretching (aes256c) gives another key: net-snmp cannot decrypt, so stays silent.
    cisco = inventory.device("v3-aes256c")
    assert cisco.error is not None
    assert cisco.error.startswith("timeout")
    assert cisco.access.priv_protocol == "aes256"


def test_a_wrong_auth_key_is_an_authentication_error(inventory: Inventory) -> None:
    device = inventory.device("wrong-auth")
    assert device.error == (
        "SNMPv3 authentication failed: wrong digest (wrong auth key or protocol for user 'medsec')"
    )
    assert device.sys_object_id == ""
    assert device.classification.confidence == 0
    assert device.access.v3_supported is True  # it answered with a report


def test_an_unknown_user_is_named(inventory: Inventory) -> None:
    device = inventory.device("unknown-user")
    assert device.error == "SNMPv3 authentication failed: the agent does not know user 'stranger'"


def test_a_wrong_privacy_key_gets_silence(inventory: Inventory) -> None:
    device = inventory.device("wrong-priv")
    assert device.error is not None
    assert device.error.startswith("timeout: no answer after 2 s (2 tries of 1 s)")
    assert "wrong privacy key" in device.error


def test_a_wrong_community_is_a_timeout(inventory: Inventory) -> None:
    device = inventory.device("wrong-community")
    assert device.error == (
        "timeout: no answer after 2 s (2 tries of 1 s): the device is down or filtered, or a "
        "wrong community (an agent ignores a community it does not know)"
    )
    assert device.access.v3_supported is True  # the discovery still got its report


def test_public_is_recorded_only_where_the_agent_answers_it(inventory: Inventory) -> None:
    careless, strict = inventory.device("careless"), inventory.device("v2c")
    assert careless.error is None
    assert careless.access.answered_well_known == ("public",)
    assert strict.access.answered_well_known == ()
    for device in (careless, strict):
        assert device.access.well_known_tried == WELL_KNOWN_COMMUNITIES


def test_a_guessable_community_is_flagged_never_shown(inventory: Inventory) -> None:
    assert inventory.device("careless-public").access.community_guessable is True
    assert inventory.device("careless").access.community_guessable is False
    assert inventory.device("v2c").access.community_guessable is False


def test_a_v2c_device_that_speaks_v3_is_noticed(inventory: Inventory) -> None:
    assert inventory.device("v2c").access.v3_supported is True
    assert inventory.device("careless").access.v3_supported is True


def test_a_device_that_never_answers_is_kept_with_the_reason(inventory: Inventory) -> None:
    device = inventory.device("silent")
    assert device.error == (
        "timeout: no answer after 3 s (3 tries of 1 s): the device is down or filtered, or a "
        "wrong community (an agent ignores a community it does not know)"
    )
    assert device.sys_object_id == ""
    assert device.interfaces == ()
    assert device.access.v3_supported is None  # silence everywhere says nothing about v3
    assert device.access.answered_well_known == ()
    assert device.seconds < 6
    # The others did not wait for it, and the run is bounded by its slowest device.
    assert inventory.device("v2c").seconds < device.seconds
    assert inventory.run.seconds < 8
    assert inventory.wall < 10


def test_a_partial_answer_keeps_what_came_and_says_what_is_missing(
    inventory: Inventory,
) -> None:
    device = inventory.device("flaky")
    assert (device.sys_object_id, device.sys_descr) == HILLSTONE
    assert device.error is not None
    assert device.error.startswith("partial answer: ")
    assert "IF-MIB ifDescr/ifName" in device.error
    assert "not complete: timeout" in device.error
    # The first answer carried the first row of each table, nothing after it.
    assert len(device.interfaces) <= 1 < len(inventory.device("v2c").interfaces)


def test_no_secret_reaches_the_facts(inventory: Inventory) -> None:
    text = repr(inventory.run)
    for agent in (inventory.strict, inventory.careless):
        for secret in (agent.community, agent.auth_key, agent.priv_key):
            assert secret not in text
