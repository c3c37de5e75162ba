"""Disk-encryption checks on recorded facts: the shared cases (tests/checks/cases_disk.py), one
result per mount, swap area and volume with the device path as target, the parameters, and
volumes part-way through re-encryption judged range by range."""

from __future__ import annotations

from dataclasses import replace

import pytest

from checks.facts import HostFacts
from checks.facts.disk import Cipher, Mount
from checks.host import disk as disk_checks
from checks.model import Result, Status, Unavailable
from checks.registry import Registry
from checks.runner import ParameterError, evaluate, run_check
from tests.checks.cases_disk import (
    AES_256,
    DISK,
    LUKS_MAPPING,
    NEW_KEY_RANGE,
    OLD_KEY_RANGE,
    REENCRYPTING,
    ROOT_IN_CLEAR,
    ROOT_ON_LUKS,
    SWAP_IN_CLEAR,
    UNDECIDED,
    UNREAD_DISK,
    VOLUME,
    ZRAM,
)

REGISTRY = Registry.from_modules([disk_checks])


def run(check_id: str, facts: HostFacts, **params: object) -> list[Result]:
    return run_check(REGISTRY.get(check_id), facts, params)


def test_ids_needs_and_defaults_are_stable():
    assert REGISTRY.ids() == [
        "disk.cipher_strength",
        "disk.encrypted_mounts",
        "disk.key_sealed_by_tpm",
        "disk.swap_encrypted",
    ]
    assert REGISTRY.needs() == {"disk"}
    assert REGISTRY.get("disk.cipher_strength").params == {"min_strength": "aes-256"}
    assert REGISTRY.get("disk.encrypted_mounts").params == {"required_mounts": []}


def _mount(mountpoint: str, base: Mount, device: str) -> Mount:
    return replace(base, mountpoint=mountpoint, source=device, device=device)


def test_one_result_per_file_system_with_the_device_as_target():
    var = _mount("/var", ROOT_ON_LUKS, "/dev/mapper/vg0-var")
    pgsql = _mount("/var/lib/pgsql", ROOT_IN_CLEAR, "/dev/sda1")
    tmp = replace(_mount("/tmp", ROOT_IN_CLEAR, "/dev/sdc1"))  # not a data mount: not checked
    facts = HostFacts(
        disk=replace(DISK, mounts=(ROOT_ON_LUKS, var, pgsql, tmp), data_dirs=("/var/lib/pgsql",))
    )
    got = {(r.target, r.status) for r in run("disk.encrypted_mounts", facts)}
    assert got == {
        ("/dev/mapper/vg0-root", Status.PASS),
        ("/dev/mapper/vg0-var", Status.PASS),
        ("/dev/sda1", Status.FAIL),
    }
    failing = next(r for r in run("disk.encrypted_mounts", facts) if r.status == Status.FAIL)
    assert failing.evidence["mountpoint"] == "/var/lib/pgsql"
    assert failing.evidence["layers"] == ["/dev/sda2", "/dev/sda"]


def test_required_path_that_is_not_a_mount_is_judged_by_the_file_system_holding_it():
    """/srv/pacs was meant to be its own encrypted volume; it did not unlock, so PACS writes went
    into /srv on the unencrypted root: that fails. Had / been encrypted it would pass."""
    facts = HostFacts(disk=replace(DISK, mounts=(ROOT_IN_CLEAR,)))
    [result] = run("disk.encrypted_mounts", facts, required_mounts=["/srv/pacs"])
    assert result.status == Status.FAIL
    assert result.target == "/dev/sda2"
    assert "/srv/pacs" in result.message
    assert "not separate mounts" in result.message
    assert result.message_zh == (
        "/dev/sda2 上的 /（承载 /srv/pacs，其并非独立挂载点）未加密，不符合："
        "其与磁盘之间无 dm-crypt 加密层（/dev/sda2 → /dev/sda）"
    )
    [ok] = run("disk.encrypted_mounts", HostFacts(disk=DISK), required_mounts=["/srv/pacs"])
    assert ok.status == Status.PASS


def test_required_mounts_must_be_a_list():
    with pytest.raises(ParameterError, match="required_mounts"):
        run("disk.encrypted_mounts", HostFacts(disk=DISK), required_mounts="/data")


@pytest.mark.parametrize(
    ("cipher", "min_strength", "status"),
    [
        (AES_256, "aes-256", Status.PASS),
        (AES_256, "sm4", Status.FAIL),
        (Cipher("sm4-xts-plain64", 256, "sm4", "xts", 128), "sm4", Status.PASS),
        (Cipher("aes-xts-plain64", 256, "aes", "xts", 128), "aes-128", Status.PASS),
        (Cipher("aes-xts-plain64", 384, "aes", "xts", 192), "aes-256", Status.FAIL),
        (Cipher("aes-ecb", 256, "aes", "ecb", 256), "aes-256", Status.FAIL),
        (Cipher("aes:64-cbc-lmk", 8192, "aes", "cbc", None), "aes-256", Status.ERROR),
        (AES_256, "des-56", Status.ERROR),  # a bad parameter value is the check's error
    ],
)
def test_min_strength(cipher, min_strength, status):
    facts = HostFacts(disk=replace(DISK, volumes=(replace(VOLUME, cipher=cipher),)))
    [result] = run("disk.cipher_strength", facts, min_strength=min_strength)
    assert result.status == status, result.message
    if status != Status.ERROR:
        assert result.target == "/dev/nvme0n1p3"
        assert result.evidence["key_bits"] == cipher.key_bits


def test_swap_results_per_area():
    facts = HostFacts(disk=replace(DISK, swaps=(ZRAM, SWAP_IN_CLEAR)))
    got = [(r.target, r.status) for r in run("disk.swap_encrypted", facts)]
    assert got == [("/dev/zram0", Status.PASS), ("/dev/sda3", Status.FAIL)]


def test_key_sealing_skips_headerless_mappings():
    plain = replace(
        VOLUME, device="/dev/sdb", kind="plain", uuid=None, mapped_name="pacs", keys=None
    )
    facts = HostFacts(disk=replace(DISK, volumes=(VOLUME, plain)))
    got = [(r.target, r.status) for r in run("disk.key_sealed_by_tpm", facts)]
    assert got == [("/dev/nvme0n1p3", Status.PASS)]
    strength = [(r.target, r.status) for r in run("disk.cipher_strength", facts)]
    assert strength == [("/dev/nvme0n1p3", Status.PASS), ("/dev/sdb", Status.PASS)]


def test_whole_disk_fact_unavailable_is_one_error_per_check():
    facts = HostFacts(disk=Unavailable("lsblk is not installed (util-linux); /proc not mounted"))
    got = evaluate(REGISTRY, facts)
    assert [r.status for r in got] == [Status.ERROR] * 4
    assert all("lsblk is not installed" in r.message for r in got)


def test_messages_name_the_crypt_layer():
    [result] = run("disk.encrypted_mounts", HostFacts(disk=DISK))
    assert LUKS_MAPPING in result.message
    assert result.evidence["crypt_layers"] == [LUKS_MAPPING]


def test_an_unavailable_part_of_the_disk_facts_errs_only_the_checks_that_read_it():
    """lsblk failed but /proc was read: the volume checks cannot judge, the mount and swap checks
    still can; each unjudgeable check is one error naming the sub-fact, in both languages."""
    facts = HostFacts(disk=replace(DISK, volumes=Unavailable("lsblk exited 1")))
    got = {r.check_id: (r.status, r.message, r.message_zh) for r in evaluate(REGISTRY, facts)}
    assert got["disk.encrypted_mounts"][0] is Status.PASS
    assert got["disk.swap_encrypted"][0] is Status.PASS
    for check_id in ("disk.cipher_strength", "disk.key_sealed_by_tpm"):
        status, message, message_zh = got[check_id]
        assert status is Status.ERROR
        assert message == "disk.volumes unavailable: lsblk exited 1"
        assert message_zh == "无法获取 disk.volumes：lsblk exited 1"


def test_reencryption_evidence_names_every_range_and_the_operation():
    volume = replace(
        VOLUME,
        cipher=UNDECIDED,
        segments=(NEW_KEY_RANGE, OLD_KEY_RANGE),
        reencryption=REENCRYPTING,
    )
    [result] = run("disk.cipher_strength", HostFacts(disk=replace(DISK, volumes=(volume,))))
    assert result.status is Status.FAIL
    assert result.target == "/dev/nvme0n1p3"
    assert "bytes 16777216–226492415" not in result.message  # only the failing range is named
    assert result.evidence["reencryption"] == {"mode": "reencrypt", "direction": "forward"}
    assert [
        (s["segment"], s["offset"], s["length"], s["effective_bits"], s["status"])
        for s in result.evidence["segments"]
    ] == [
        ("0", 16777216, 209715200, 256, "pass"),
        ("1", 226492416, None, 128, "fail"),
    ]
    # With AES-128 accepted both ranges pass, and the message names both.
    [ok] = run(
        "disk.cipher_strength",
        HostFacts(disk=replace(DISK, volumes=(volume,))),
        min_strength="aes-128",
    )
    assert ok.status is Status.PASS
    assert "bytes 16777216–226492415: AES-256" in ok.message
    assert "bytes 226492416 to the end of the device: AES-128" in ok.message


def test_a_weak_range_fails_even_when_another_cannot_be_judged():
    volume = replace(
        VOLUME,
        cipher=UNDECIDED,
        segments=(replace(NEW_KEY_RANGE, cipher=Unavailable("unknown")), OLD_KEY_RANGE),
        reencryption=REENCRYPTING,
    )
    [result] = run("disk.cipher_strength", HostFacts(disk=replace(DISK, volumes=(volume,))))
    assert result.status is Status.FAIL
    assert [s["status"] for s in result.evidence["segments"]] == ["error", "fail"]


def test_a_device_whose_signature_went_unread_is_an_error_not_a_missing_volume():
    facts = HostFacts(disk=replace(DISK, block_devices=(UNREAD_DISK,), volumes=()))
    for check_id in ("disk.cipher_strength", "disk.key_sealed_by_tpm"):
        [result] = run(check_id, facts)
        assert (result.status, result.target) == (Status.ERROR, "/dev/vdb")
        assert "Operation not permitted" in result.message
