"""The SNMP targets file as users write it: what loads (defaults filled in, credentials taken
as a group, relative secret files read at load) and what is refused — each refusal one line
naming the file and the key, never echoing a secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from inventory.network.targets import (
    MAX_SWEEP_ADDRESSES,
    Secret,
    TargetsError,
    load_targets,
)
from tests.inventory.snmp_agents import write_private

ISSUE_EXAMPLE = """\
defaults: {port: 161, version: 2c, community_file: snmp.community, timeout: 2, retries: 1}
devices:
  - {address: 198.18.4.1, name: border-fw, borders: ["dmz<->his"]}
  - {address: 127.0.0.1, port: 1161, community: fortigate}
  - {address: 198.18.4.2, version: 3, user: medsec, auth: {protocol: sha, key_file: a},
     priv: {protocol: aes, key_file: p}}
sweep: [198.18.4.0/28]
"""

COMMUNITY = "Hosp1tal-Comm-7731"
AUTH_KEY = "auth-key-4471-xyz"
PRIV_KEY = "priv-key-9902-abc"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_private(tmp_path / "snmp.community", COMMUNITY + "\n")
    write_private(tmp_path / "a", AUTH_KEY + "\n")
    write_private(tmp_path / "p", PRIV_KEY + "\n")
    return tmp_path


def refused(folder: Path, text: str, mode: int = 0o600) -> str:
    path = write_private(folder / "targets.yaml", text)
    path.chmod(mode)
    with pytest.raises(TargetsError) as caught:
        load_targets(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for secret in (COMMUNITY, AUTH_KEY, PRIV_KEY):
        assert secret not in message
    return message.removeprefix(f"{path}: ")


def test_the_issue_example_loads_with_defaults_filled_in(folder: Path) -> None:
    targets = load_targets(write_private(folder / "targets.yaml", ISSUE_EXAMPLE))
    first, second, third = targets.devices
    assert (first.address, first.port, first.credentials.version) == ("198.18.4.1", 161, "2c")
    assert first.credentials.community == Secret(COMMUNITY)  # read from the relative file
    assert (first.name, first.borders, first.timeout, first.retries) == (
        "border-fw",
        ("dmz<->his",),
        2.0,
        1,
    )
    assert (second.port, second.credentials.community) == (1161, Secret("fortigate"))
    v3 = third.credentials
    assert (v3.version, v3.user, v3.security_level) == ("3", "medsec", "authPriv")
    assert (v3.auth_protocol, v3.priv_protocol) == ("sha", "aes")
    assert (v3.auth_key, v3.priv_key) == (Secret(AUTH_KEY), Secret(PRIV_KEY))
    assert targets.sweep == ("198.18.4.0/28",)
    assert len(targets.sweep_addresses()) == 14  # network and broadcast addresses left out
    assert targets.sweep_settings is not None
    assert targets.sweep_settings.credentials.community == Secret(COMMUNITY)
    assert (targets.concurrency, targets.well_known_communities, targets.zones) == (64, True, None)
    assert targets.path == str(folder / "targets.yaml")


def test_no_secret_in_any_repr_or_str(folder: Path) -> None:
    targets = load_targets(write_private(folder / "targets.yaml", ISSUE_EXAMPLE))
    for text in (repr(targets), str(targets), *(repr(d) for d in targets.devices)):
        for secret in (COMMUNITY, AUTH_KEY, PRIV_KEY, "fortigate"):
            assert secret not in text


def test_security_level_follows_what_is_given(folder: Path) -> None:
    text = """\
devices:
  - {address: 10.0.0.1, version: 3, user: watcher}
  - {address: 10.0.0.2, version: 3, user: watcher, auth: {protocol: SHA256, key: abcdefgh12}}
"""
    plain, signed = load_targets(write_private(folder / "targets.yaml", text)).devices
    assert plain.credentials.security_level == "noAuthNoPriv"
    assert signed.credentials.security_level == "authNoPriv"
    assert signed.credentials.auth_protocol == "sha256"


def test_cisco_key_stretching_is_named_apart_but_is_the_same_cipher(folder: Path) -> None:
    text = """\
devices:
  - {address: 10.0.0.1, version: 3, user: u, auth: {protocol: sha, key: abcdefgh12},
     priv: {protocol: AES256C, key: abcdefgh12}}
"""
    (device,) = load_targets(write_private(folder / "targets.yaml", text)).devices
    assert device.credentials.priv_protocol == "aes256c"
    assert device.credentials.cipher == "aes256"
    assert device.credentials.security_level == "authPriv"


def test_a_device_giving_part_of_its_credentials_takes_none_from_defaults(folder: Path) -> None:
    text = """\
defaults: {version: 3, user: medsec, auth: {protocol: sha, key_file: a},
           priv: {protocol: aes, key_file: p}}
devices:
  - {address: 10.0.0.1}
  - {address: 10.0.0.2, user: other}
"""
    inherited, own = load_targets(write_private(folder / "targets.yaml", text)).devices
    assert inherited.credentials.security_level == "authPriv"
    assert (own.credentials.user, own.credentials.security_level) == ("other", "noAuthNoPriv")


def test_zones_path_is_resolved_against_the_targets_folder(folder: Path) -> None:
    (folder / "zones.yaml").write_text("zones: []\n")
    text = "zones: zones.yaml\ndevices: [{address: 10.0.0.1, community: abcdefgh}]\n"
    targets = load_targets(write_private(folder / "targets.yaml", text))
    assert targets.zones == str(folder / "zones.yaml")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_others_may_read_is_refused(folder: Path, mode: int) -> None:
    message = refused(folder, ISSUE_EXAMPLE, mode)
    assert message.startswith(f"mode {mode:04o} lets group or others read it")


def test_unknown_field(folder: Path) -> None:
    text = "devices: [{address: 10.0.0.1, community: abcdefgh, comunity_file: x}]\n"
    assert refused(folder, text) == "unknown key devices[0].comunity_file (value: 'x')"


def test_bad_protocol_names_the_field(folder: Path) -> None:
    text = ISSUE_EXAMPLE.replace("{protocol: sha,", "{protocol: sha3,")
    assert refused(folder, text) == (
        "devices[2].auth.protocol: not one of md5, sha, sha224, sha256, sha384, sha512 "
        "(value: 'sha3')"
    )
    text = ISSUE_EXAMPLE.replace("{protocol: aes,", "{protocol: blowfish,")
    assert refused(folder, text).startswith("devices[2].priv.protocol: not one of des, 3des")


def test_missing_key_file(folder: Path) -> None:
    os.unlink(folder / "p")
    expected = f"devices[2].priv.key_file: {folder / 'p'} does not exist"
    assert refused(folder, ISSUE_EXAMPLE) == expected


def test_unreadable_or_empty_secret_files(folder: Path) -> None:
    write_private(folder / "a", "\n\n")
    assert refused(folder, ISSUE_EXAMPLE) == (
        f"devices[2].auth.key_file: {folder / 'a'} is empty (the secret is its first line)"
    )
    write_private(folder / "a", "short\n")
    assert refused(folder, ISSUE_EXAMPLE) == (
        "devices[2].auth.key_file: the key is shorter than 8 characters (RFC 3414)"
    )


def test_the_defaults_community_file_is_read_only_when_used(folder: Path) -> None:
    os.unlink(folder / "snmp.community")
    text = ISSUE_EXAMPLE.replace("sweep: [198.18.4.0/28]\n", "")
    message = refused(folder, text)
    assert message == f"defaults.community_file: {folder / 'snmp.community'} does not exist"
    text = (
        "defaults: {community_file: /nonexistent/community}\n"
        "devices: [{address: 10.0.0.1, community: abcdefgh}]\n"
    )
    targets = load_targets(write_private(folder / "targets.yaml", text))
    assert targets.devices[0].credentials.community == Secret("abcdefgh")


def test_sweep_too_large(folder: Path) -> None:
    text = "defaults: {community: abcdefgh}\nsweep: [10.0.0.0/20, 10.1.0.0/32]\n"
    assert refused(folder, text) == (
        f"sweep: {MAX_SWEEP_ADDRESSES + 1} addresses in total; at most {MAX_SWEEP_ADDRESSES} "
        "per run (split the CIDRs over several targets files)"
    )
    text = "defaults: {community: abcdefgh}\nsweep: [10.0.0.0/20]\n"
    assert len(load_targets(write_private(folder / "targets.yaml", text)).sweep_addresses()) == (
        MAX_SWEEP_ADDRESSES - 2
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "devices: [{address: 10.0.0.1, community: 12345678}]",
            "devices[0].community: must be a string (quote it in YAML) "
            "(value not shown: it may hold a secret)",
        ),
        (
            "devices: [{address: 10.0.0.1, version: 3, user: u, auth: {protocol: sha, key: abc}}]",
            "devices[0].auth.key: at least 8 characters (RFC 3414) "
            "(value not shown: it may hold a secret)",
        ),
        (
            "devices: [{address: 10.0.0.1, version: 3, user: u, priv: {protocol: aes, "
            "key: abcdefghij}}]",
            "devices[0].priv: SNMPv3 privacy needs auth as well",
        ),
        ("devices: [{address: 10.0.0.1, version: 4}]", "devices[0].version: not an SNMP version"),
        ("devices: [{address: host.example, community: abcdefgh}]", "devices[0].address: not an"),
        ("devices: [{community: abcdefgh}]", "missing key devices[0].address"),
        (
            "devices: [{address: 10.0.0.1, version: 3, community: abcdefgh}]",
            "devices[0].community: not used by SNMP v3",
        ),
        (
            "devices: [{address: 10.0.0.1, user: u}]",
            "devices[0].user: only SNMP v3 uses user",
        ),
        (
            "devices: [{address: 10.0.0.1}]",
            "devices[0]: SNMP v2c needs a community (community or community_file) (here or in "
            "defaults)",
        ),
        (
            "devices: [{address: 10.0.0.1, community: abcdefgh, borders: [dmz]}]",
            "devices[0].borders[0]: not ZONE<->ZONE",
        ),
        (
            "defaults: {community: abcdefgh}\nsweep: [10.0.0.1/24]",
            "sweep[0]: not a CIDR (10.0.0.1/24 has host bits set)",
        ),
        (
            "devices: [{address: 10.0.0.1, community: a}, {address: 10.0.0.1, community: a}]",
            "devices[1].address: 10.0.0.1:161 with the same credentials is devices[0] already",
        ),
        (
            "devices: [{address: 10.0.0.1, community: abcdefgh}]\nconcurrency: 0",
            "concurrency: between 1 and 1024",
        ),
        ("defaults: {community: abcdefgh}", "devices: no device and no sweep: nothing to ask"),
        ("sweep: [10.0.0.0/30]", "defaults: the sweep uses the defaults, and SNMP v2c needs"),
        ("- just a list", "the top level must be a mapping, got list"),
        ("devices: [", "invalid YAML"),
    ],
)
def test_each_problem_is_one_line_naming_the_key(folder: Path, text: str, expected: str) -> None:
    assert expected in refused(folder, text + "\n")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TargetsError, match=r"targets file not found$"):
        load_targets(tmp_path / "nope.yaml")
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(TargetsError, match="is a directory"):
        load_targets(tmp_path / "dir")
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o700
